"""The portal's only way to the data: SQL over HTTP to the sink's query endpoint with the portal's
token, which may read `public_*` views and nothing else (sinks/sql_guard.check_public). The SQL is
made here from the dataset registry only: the view and column names are declared identifiers, and a
request's filter values travel as query parameters (`param_<name>`), never inside the SQL text.

Each dataset is fetched whole (aggregates: small) and kept for the portal's cache lifetime (shorter
than any source's freshness promise); after it, the kept answer is served while one refresh runs, so
a burst of page views costs one query per dataset and no page waits for the store twice."""

from __future__ import annotations

import asyncio
import json
import time
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


class StoreError(ServiceUnavailable):
    """The query endpoint did not answer as expected."""


def _convert(value: Any, type_: str) -> Any:
    if value is None:
        return None
    inner = type_.removeprefix("Nullable(").removesuffix(")") if type_.startswith("Nullable(") else type_
    inner = inner.removeprefix("LowCardinality(").removesuffix(")") if inner.startswith("LowCardinality(") else inner
    if inner.startswith("Decimal"):
        return Decimal(str(value))
    if inner.startswith(("Int", "UInt")):
        return int(value)
    if inner.startswith("Float"):
        return float(value)
    if inner == "Bool":
        return bool(value)
    if inner == "Date" or inner == "Date32":
        return date.fromisoformat(value)
    if inner.startswith("DateTime"):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def parse_json_compact(body: bytes) -> list[dict[str, Any]]:
    """Rows of a JSONCompact answer, typed by its column types (Decimal kept exact)."""
    doc = json.loads(body, parse_float=Decimal)
    names = [(m["name"], m["type"]) for m in doc["meta"]]
    return [{n: _convert(v, t) for (n, t), v in zip(names, row, strict=True)} for row in doc["data"]]


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
        self.queries = 0  # answered by the store (not the cache): for tests and the bench

    @property
    def url(self) -> str:
        url = self._url or read_state(self.settings.run_dir).get("query_url", "")
        if not url:
            raise StoreError("no query endpoint: the sink is not running", hint="start `backbone demo` or the sink")
        return url

    async def close(self) -> None:
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
        # Parsed off the event loop: a large answer must not stall the pages being served meanwhile.
        return await asyncio.get_running_loop().run_in_executor(None, parse_json_compact, body)

    async def _cached(self, key: tuple, make: Any) -> Any:
        """The answer of `make()` under `key`: fresh from the cache; stale from the cache while one
        refresh runs in the background (a page never waits for the store once it has an answer);
        else fetched now, one query per key however many requests wait for it."""
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] <= time.monotonic() and key not in self._refreshing:
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
            await self._store(key, await make())
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
        columns = ", ".join(f"`{c}`" for c in dataset.names)
        where = " AND ".join(f"toString(`{k}`) = {{{k}:String}}" for k in filters if k in dataset.dimensions)
        order = ", ".join(f"`{c}`" for c in dataset.order_by)
        sql = f"SELECT {columns} FROM `{dataset.view}`" + (f" WHERE {where}" if where else "")
        rows = await self.query(sql + (f" ORDER BY {order}" if order else ""), filters)
        flags = [c.name for c in dataset.columns if c.kind == "bool"]  # ClickHouse answers 0/1 for a condition
        for row in rows:
            for name in flags:
                row[name] = None if row[name] is None else bool(row[name])
        return rows

    async def freshness(self) -> dict[str, dict[str, Any]]:
        """source table -> system, system_title, department_code, promise, last_change, last_stored."""
        rows = await self._cached(("freshness",), lambda: self.query(f"SELECT * FROM {FRESHNESS_VIEW}"))
        return {r["source_table"]: r for r in rows}
