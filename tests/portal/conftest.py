"""One published store for the portal's tests: a chDB store made by the migrations and filled with
the known rows of tests/sinks/ready_store.py (plus a few person counts for suppression), served by
the real query endpoint (sinks.query_server) and the real portal on loopback ports. Package-scoped:
chDB serves one folder per process at a time, so it is closed before other packages open theirs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import clickhouse_connect
import pytest

from backbone.settings import PROJECT_ROOT, Settings, load_settings
from contract.catalog import load_catalog
from portal.service import start_portal
from sinks import migrations
from sinks.query_server import QueryServer
from tests.helpers import QUERY_TOKEN
from tests.sinks.ready_store import NOW, complaint, fill, put

PORTAL_TOKEN = "test-portal-token"


@dataclass
class Published:
    url: str  # the portal
    query_url: str  # the sink's query endpoint
    client: Any  # a writer on the store (for known answers and live changes)
    settings: Settings


class PortalThread:
    """The portal app in its own event loop and thread, as `backbone portal` runs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="portal", daemon=True)

    def start(self) -> str:
        self.thread.start()
        self.runner, url = asyncio.run_coroutine_threadsafe(start_portal(self.settings), self.loop).result(30)
        return url.rstrip("/")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def more_complaints(client: Any) -> None:
    """Complaints on top of ready_store's four, changed just now (the freshness of their system):
    DPUPR/WHATSAPP 10 more open (12 in all, 11 open), DISDIK/WEB 8, DISDIK/WHATSAPP 6 and DINKES/WEB 10
    resolved: with DINKES/WHATSAPP 1 and DPUPR/WEB 1, the two small cells hide DINKES/WEB and
    DPUPR/WHATSAPP too (complementary), and DISDIK's stay visible."""
    rows = [
        complaint(f"K{i}", "DPUPR", "WHATSAPP", "IN_PROGRESS", NOW - timedelta(hours=2), 1, None, 30) for i in range(10)
    ]
    rows += [complaint(f"R{i}", "DISDIK", "WEB", "RESOLVED", NOW - timedelta(days=3), 3, 24, 14) for i in range(8)]
    rows += [complaint(f"S{i}", "DISDIK", "WHATSAPP", "RESOLVED", NOW - timedelta(days=3), 3, 24, 14) for i in range(6)]
    rows += [complaint(f"T{i}", "DINKES", "WEB", "RESOLVED", NOW - timedelta(days=3), 3, 24, 14) for i in range(10)]
    put(client, "participation_complaint", "ticket_id", [{**r, "ts_source": NOW, "ts_stored": NOW} for r in rows])


@pytest.fixture(scope="package")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    run_dir = tmp_path_factory.mktemp("portal")
    settings = load_settings(
        run_dir=run_dir,
        query_token=QUERY_TOKEN,
        portal_token=PORTAL_TOKEN,
        portal_cache_seconds=1,
        portal_rate_burst=10_000,
        portal_rate_per_second=1000,
    )
    writer = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    migrations.migrate(writer, load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas"))
    fill(writer)
    more_complaints(writer)
    reader = clickhouse_connect.get_client(dsn=settings.effective_clickhouse_dsn)
    server = QueryServer(reader, settings)
    query_url = f"http://127.0.0.1:{server.start()}/"
    portal_settings = load_settings(**{**settings.model_dump(), "portal_query_url": query_url})
    portal = PortalThread(portal_settings)
    try:
        yield Published(portal.start(), query_url, writer, portal_settings)
    finally:
        portal.stop()
        server.stop()
        reader.close()
        writer.close()
