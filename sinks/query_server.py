"""Read-only SQL over HTTP, in the style of ClickHouse's HTTP interface (`?query=`, `FORMAT`),
served by the process that owns the embedded store (only one process may open a chDB folder).

Every query is checked by `sinks.sql_guard` (one read-only statement that stays inside the tables)
and runs with readonly=1 set after its limits, so the engine itself refuses writes, DDL, table
functions and any SETTINGS that would lift a limit. Error texts carry no server paths."""

from __future__ import annotations

import asyncio
import base64
import hmac
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from backbone.settings import Settings
from sinks.sql_guard import QueryRefused, check_query, public_message
from sinks.store import read_only_settings

# ClickHouse error codes worth a precise HTTP status.
_READONLY, _TIMEOUT, _SYNTAX, _UNKNOWN_TABLE = 164, 159, 62, 60
_CODE = re.compile(r"Code: (\d+)\.")
_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(\w+)\s*$", re.IGNORECASE)


def _status_for(message: str) -> int:
    match = _CODE.search(message)
    code = int(match.group(1)) if match else 0
    if code == _READONLY:
        return 403
    if code == _TIMEOUT:
        return 504
    if code in (_SYNTAX, _UNKNOWN_TABLE, 47, 46):
        return 400
    return 500


def presented_token(request: web.Request) -> str:
    """The token a client sent: `Authorization: Bearer`, ClickHouse's `X-ClickHouse-Key`, or the
    password of HTTP basic auth (as ClickHouse clients send it)."""
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return ""
    return request.headers.get("X-ClickHouse-Key", "")


class QueryService:
    def __init__(self, client: Any, settings: Settings, portal_client: Any = None) -> None:
        self.client = client
        # On a server: the portal's queries run as its `public` user, not as the analysts' one.
        self.portal_client = portal_client or client
        self.settings = settings
        self.token = settings.query_secret().encode()
        # The public portal's token: the same endpoint, but only public_* views (sql_guard.check_public).
        self.portal_token = settings.portal_secret().encode()
        self.pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="query")

    def run(self, query: str, fmt: str, parameters: dict[str, str] | None = None, public_only: bool = False) -> bytes:
        settings = read_only_settings(self.settings)
        client = self.portal_client if public_only else self.client
        statement = check_query(client, query, settings, parameters, public_only)
        return client.raw_query(statement, settings=settings, parameters=parameters or None, fmt=fmt)

    async def handle(self, request: web.Request) -> web.Response:
        presented = presented_token(request).encode()
        public_only = hmac.compare_digest(presented, self.portal_token)
        if not public_only and not hmac.compare_digest(presented, self.token):
            return web.Response(
                status=401,
                text="authentication required: send the query token as 'Authorization: Bearer <token>'\n",
                headers={"WWW-Authenticate": 'Bearer realm="backbone query"'},
            )
        query = request.query.get("query", "")
        if request.method == "POST":
            body = (await request.read()).decode("utf-8", errors="replace")
            query = f"{query}\n{body}" if query else body
        query = query.strip().rstrip(";")
        if not query:
            return web.Response(status=400, text="no query: pass ?query=SELECT ... or POST the SQL\n")
        fmt = request.query.get("default_format", "TabSeparated")
        clause = _FORMAT_CLAUSE.search(query)
        if clause:  # the client passes the format itself, so it is lifted out of the SQL
            fmt, query = clause.group(1), query[: clause.start()].rstrip()
        # Values of {name:Type} placeholders, as ClickHouse's HTTP interface takes them (param_<name>).
        parameters = {k[6:]: v for k, v in request.query.items() if k.startswith("param_") and k[6:].isidentifier()}
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(self.pool, self.run, query, fmt, parameters, public_only)
        except QueryRefused as exc:
            return web.Response(status=403, text=f"refused: this endpoint is read-only. {exc}\n")
        except Exception as exc:  # noqa: BLE001 - the engine's message is the answer
            message = public_message(str(exc))
            status = _status_for(message)
            if status == 403:
                message = f"refused: this endpoint is read-only. {message}"
            return web.Response(status=status, text=message + "\n")
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def ping(self, _request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")


class QueryServer:
    """aiohttp in its own thread and event loop, next to the sink's consume loop."""

    def __init__(self, client: Any, settings: Settings, portal_client: Any = None) -> None:
        self.service = QueryService(client, settings, portal_client)
        self.settings = settings
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="query-http", daemon=True)
        self._started = threading.Event()

    def start(self) -> int:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self.port  # type: ignore[return-value]

    async def _start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("GET", "/", self.service.handle)
        app.router.add_route("POST", "/", self.service.handle)
        app.router.add_get("/ping", self.service.ping)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.bind_host, self.settings.query_port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - aiohttp gives no public accessor

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self.service.pool.shutdown(wait=False, cancel_futures=True)
