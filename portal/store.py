"""The portal's only way to the data: SQL over HTTP to the sink's query endpoint with the portal's
token, which may read `public_*` views and nothing else (sinks/sql_guard.check_public). The SQL is
made here from the dataset registry only: the view and column names are declared identifiers, and a
request's filter values travel as query parameters (`param_<name>`), never inside the SQL text.

Each dataset is fetched whole (aggregates: small) and kept for the portal's cache lifetime (shorter
than any source's freshness promise). Every dataset is fetched at start, before the portal opens its
port, and refreshed in the background shortly before its lifetime ends (a dataset nobody read for a
minute only once a minute); a request finding an expired answer gets it while one refresh runs. So
once started, no page waits for the store, and a burst of page views costs no query at all. A
refresh is skipped (the answer kept for another lifetime) while public_freshness shows no new state
of the dataset's sources, for at most a minute (figures that move with the clock)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import aiohttp

from backbone.errors import ServiceUnavailable
from backbone.runstate import read_state
from backbone.settings import Settings
from portal.datasets import Dataset
from portal.suppression import suppress

FRESHNESS_VIEW = "public_freshness"
IDLE_SECONDS = 60.0  # a dataset not read for this long is refreshed once per this long only
REFRESHES = 2  # background refreshes at once: the store's cores stay free for the sink and analysts


class StoreError(ServiceUnavailable):
    """The query endpoint did not answer as expected."""


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _datetime(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def converter(type_: str) -> Callable[[Any], Any] | None:
    """How a JSONCompact value of a ClickHouse type becomes a Python one (None: as it is), chosen once
    per column: an answer of tens of thousands of rows is parsed in the time of one page."""
    inner = type_.removeprefix("Nullable(").removesuffix(")") if type_.startswith("Nullable(") else type_
    inner = inner.removeprefix("LowCardinality(").removesuffix(")") if inner.startswith("LowCardinality(") else inner
    if inner.startswith("Decimal"):
        return _decimal
    if inner.startswith(("Int", "UInt")):
        return int
    if inner.startswith("Float"):
        return float
    if inner == "Bool":
        return bool
    if inner in ("Date", "Date32"):
        return date.fromisoformat
    if inner.startswith("DateTime"):
        return _datetime
    return None


def parse_json_compact(body: bytes) -> list[dict[str, Any]]:
    """Rows of a JSONCompact answer, typed by its column types (Decimal kept exact)."""
    doc = json.loads(body, parse_float=Decimal)
    names = [m["name"] for m in doc["meta"]]
    typed = [(i, f) for i, m in enumerate(doc["meta"]) if (f := converter(m["type"])) is not None]
    rows = []
    for values in doc["data"]:
        for i, f in typed:
            if values[i] is not None:
                values[i] = f(values[i])
        rows.append(dict(zip(names, values, strict=True)))
    return rows


class PublicStore:
    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        self._url = url or settings.portal_query_url
        self.token = settings.portal_secret()
        self.ttl = settings.portal_cache_seconds
        self._cache: dict[tuple, tuple[float, Any]] = {}
        self._locks: dict[tuple, asyncio.Lock] = {}
        self._refreshing: dict[tuple, asyncio.Future] = {}
        # (dataset, filters) -> (the store's answer it was made from, the suppressed, filtered rows)
        self._derived: dict[tuple, tuple[list, list]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._makers: dict[tuple, Any] = {}  # key -> how to fetch it again (the keeper's list)
        self._read: dict[tuple, float] = {}  # key -> when a request last read it
        self._tried: dict[tuple, float] = {}  # key -> the keeper's last attempt at a missing answer
        self._slots = asyncio.Semaphore(REFRESHES)
        self._keeper: asyncio.Task | None = None
        self._answers: dict[tuple[str, str], tuple[bytes, list]] = {}  # (SQL, parameters) -> last body, rows
        self._sources: dict[tuple, tuple[str, ...]] = {}  # key -> the tables whose state it follows
        self._seen: dict[tuple, tuple[float, tuple | None]] = {}  # key -> (fetched when, its sources' stamp)
        self.fetches: dict[str, int] = {}  # dataset slug -> answers fetched from the store (tests, bench)
        self.queries = 0  # answered by the store (not the cache): for tests and the bench

    @property
    def url(self) -> str:
        url = self._url or read_state(self.settings.run_dir).get("query_url", "")
        if not url:
            raise StoreError("no query endpoint: the sink is not running", hint="start `backbone demo` or the sink")
        return url

    async def start(self, datasets: tuple[Dataset, ...], timeout: float) -> int:
        """Fetch every dataset and the provenance (within `timeout` seconds: a store not up yet is
        left to the keeper), then keep them fresh in the background; returns the answers kept."""
        for dataset in datasets:
            self._makers[(dataset.slug,)] = lambda d=dataset: self._fetch(d)
            if dataset.follows_sources:
                self._sources[(dataset.slug,)] = dataset.sources
        self._makers[("freshness",)] = self._fetch_freshness

        async def warm() -> None:  # provenance first: each dataset is stamped with its sources' state
            await asyncio.gather(self.freshness(), return_exceptions=True)
            jobs = [self._cached(key, make) for key, make in self._makers.items()]
            await asyncio.gather(*jobs, return_exceptions=True)

        try:
            await asyncio.wait_for(warm(), timeout)
        except TimeoutError:
            pass  # the keeper goes on with what is missing
        if self.ttl > 0 and self._keeper is None:
            self._keeper = asyncio.create_task(self._keep())
        return len(self._cache)

    def _due(self, key: tuple, now: float) -> bool:
        """Whether the keeper refreshes `key` now: before its lifetime ends while it is read; once
        per IDLE_SECONDS when nobody reads it; missing (the store was down): every lifetime."""
        hit = self._cache.get(key)
        if hit is None:
            return now - self._tried.get(key, 0.0) >= max(1.0, self.ttl)
        if now - self._read.get(key, 0.0) > IDLE_SECONDS:
            return now - (hit[0] - self.ttl) >= IDLE_SECONDS
        return hit[0] - now <= self.ttl / 4

    async def _keep(self) -> None:
        tick = max(0.05, self.ttl / 8)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for key, make in self._makers.items():
                if key in self._refreshing or not self._due(key, now):
                    continue
                if self._unchanged(key, now):
                    self._cache[key] = (now + self.ttl, self._cache[key][1])  # revalidated: kept
                    continue
                self._tried[key] = now
                self._refreshing[key] = asyncio.ensure_future(self._refresh(key, make))

    def _stamp(self, sources: tuple[str, ...]) -> tuple | None:
        """The last store time of each source, as the kept public_freshness answer has it."""
        hit = self._cache.get(("freshness",))
        if hit is None:
            return None
        stored = {r["source_table"]: r["last_stored"] for r in hit[1]}
        return tuple(stored.get(s) for s in sources)

    def _unchanged(self, key: tuple, now: float) -> bool:
        """Whether the kept answer of `key` is still the store's: no new state of its sources since it
        was fetched, and fetched less than a minute ago."""
        sources, seen = self._sources.get(key), self._seen.get(key)
        if sources is None or seen is None or key not in self._cache or now - seen[0] >= IDLE_SECONDS:
            return False
        return seen[1] is not None and seen[1] == self._stamp(sources)

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        for refresh in list(self._refreshing.values()):
            refresh.cancel()
        if self._session is not None:
            await self._session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def query(self, sql: str, parameters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        params = {f"param_{k}": v for k, v in (parameters or {}).items()}
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self._client().post(
                self.url, params=params, data=f"{sql} FORMAT JSONCompact".encode(), headers=headers
            ) as resp:
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StoreError(f"the query endpoint does not answer: {exc.__class__.__name__}") from None
        if resp.status != 200:
            raise StoreError(f"the query endpoint refused (HTTP {resp.status}): {body[:200].decode(errors='replace')}")
        self.queries += 1
        # The same answer as last time (most refreshes): the same rows, not parsed again, so the pages'
        # suppressed and filtered rows made from them stay valid too (kept by identity in `rows`).
        content = body[: body.rfind(b'"statistics"')]  # the meta and rows, not the query's timings
        last = self._answers.get((sql, str(params)))
        if last is not None and last[0] == content:
            return last[1]
        # Parsed off the event loop: a large answer must not stall the pages being served meanwhile.
        rows = await asyncio.get_running_loop().run_in_executor(None, parse_json_compact, body)
        self._answers[(sql, str(params))] = (content, rows)
        return rows

    async def _cached(self, key: tuple, make: Any) -> Any:
        """The answer of `make()` under `key`: fresh from the cache; stale from the cache while one
        refresh runs in the background (a page never waits for the store once it has an answer);
        else fetched now, one query per key however many requests wait for it."""
        self._makers.setdefault(key, make)
        self._read[key] = now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] <= now and key not in self._refreshing:
                self._refreshing[key] = asyncio.ensure_future(self._refresh(key, make))
            return hit[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit[1]
            return await self._store(key, await make())

    async def _refresh(self, key: tuple, make: Any) -> None:
        try:
            async with self._slots:
                value = await make()
            await self._store(key, value)
        except StoreError:
            pass  # the stale answer stays; the next request tries again
        finally:
            self._refreshing.pop(key, None)

    async def _store(self, key: tuple, value: Any) -> Any:
        self._cache[key] = (time.monotonic() + self.ttl, value)
        return value

    async def rows(self, dataset: Dataset, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The dataset's rows (suppressed when it counts persons), filtered on its dimensions only.
        The dataset is fetched whole (aggregates: small) and kept; suppression runs on all of it
        before any filter, so every page and download shows the same cells hidden."""
        filters = dict(filters or {})
        for name in filters:
            if name not in dataset.dimensions:
                raise ValueError(f"{name} is not a dimension of {dataset.slug}")
        everything = await self._cached((dataset.slug,), lambda: self._fetch(dataset))
        key = (dataset.slug, *sorted(filters.items()))
        kept = self._derived.get(key)
        if kept is not None and kept[0] is everything:  # the same answer of the store: the same rows
            return kept[1]
        rows = everything
        if dataset.counts_persons:
            rows = suppress(rows, dataset, self.settings.portal_min_cell)
        rows = [r for r in rows if all(str(r[k]) == v for k, v in filters.items())]
        if len(self._derived) > 4096:  # bounded: filters chosen by clients
            self._derived.clear()
        self._derived[key] = (everything, rows)
        return rows

    async def raw_rows(self, dataset: Dataset) -> list[dict[str, Any]]:
        """Unsuppressed rows, for totals computed here (never published as rows)."""
        return await self._cached((dataset.slug,), lambda: self._fetch(dataset))

    async def _fetch(self, dataset: Dataset, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The SQL is made from declared identifiers only; filter values go as query parameters."""
        filters = filters or {}
        seen = (time.monotonic(), self._stamp(dataset.sources))  # taken before: a change meanwhile is refetched
        columns = ", ".join(f"`{c}`" for c in dataset.names)
        where = " AND ".join(f"toString(`{k}`) = {{{k}:String}}" for k in filters if k in dataset.dimensions)
        order = ", ".join(f"`{c}`" for c in dataset.order_by)
        sql = f"SELECT {columns} FROM `{dataset.view}`" + (f" WHERE {where}" if where else "")
        rows = await self.query(sql + (f" ORDER BY {order}" if order else ""), filters)
        flags = [c.name for c in dataset.columns if c.kind == "bool"]  # ClickHouse answers 0/1 for a condition
        for row in rows:
            for name in flags:
                row[name] = None if row[name] is None else bool(row[name])
        self._seen[(dataset.slug,)] = seen
        self.fetches[dataset.slug] = self.fetches.get(dataset.slug, 0) + 1
        return rows

    async def freshness(self) -> dict[str, dict[str, Any]]:
        """source table -> system, system_title, department_code, promise, last_change, last_stored."""
        rows = await self._cached(("freshness",), self._fetch_freshness)
        return {r["source_table"]: r for r in rows}

    async def _fetch_freshness(self) -> list[dict[str, Any]]:
        return await self.query(f"SELECT * FROM {FRESHNESS_VIEW}")
