"""One published store for the portal's tests: a chDB store made by the migrations and filled with
the known rows of tests/sinks/ready_store.py (plus a few person counts for suppression, and the
stream's KPI rows of permits decided per month, see decided_within_sla), served by
the real query endpoint (sinks.query_server) and the real portal on loopback ports. Package-scoped:
chDB serves one folder per process at a time, so it is closed before other packages open theirs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import clickhouse_connect
import pytest
from aiohttp import web

from backbone.settings import PROJECT_ROOT, Settings, load_settings
from contract.catalog import load_catalog
from contract.kpis import load_kpis, value_schema
from portal.service import start_portal
from sinks import migrations
from sinks.query_server import QueryServer
from tests.helpers import QUERY_TOKEN
from tests.sinks.ready_store import NOW, complaint, fill, put

PORTAL_TOKEN = "test-portal-token"
CATALOG = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")


@dataclass
class Published:
    url: str  # the portal
    query_url: str  # the sink's query endpoint
    client: Any  # a writer on the store (for known answers and live changes)
    settings: Settings


class PortalThread:
    """The portal app in its own event loop and thread, as `backbone portal` runs it."""

    def __init__(self, settings: Settings, app: web.Application | None = None) -> None:
        self.settings = settings
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="portal", daemon=True)

    def start(self) -> str:
        self.thread.start()
        self.runner, url = asyncio.run_coroutine_threadsafe(start_portal(self.settings, self.app), self.loop).result(30)
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


WIB = ZoneInfo("Asia/Jakarta")


def month_start(day: date) -> datetime:
    """The KPI engine's month window of `day`: from local midnight (WIB) of its first day."""
    return datetime(day.year, day.month, 1, tzinfo=WIB).astimezone(UTC)


THIS_MONTH = month_start(NOW.astimezone(WIB).date())
LAST_MONTH = month_start(THIS_MONTH.astimezone(WIB).date() - timedelta(days=1))
# The stream's rows of KPI licensing.decided_within_sla: (type, window, decided, within, version). This
# month: NIB 6 (5 within; its older row 4/3 is replaced), PBG 4 (1 within), SIUP emptied (a decision
# moved to another month): 10 decided, 6 within the service level, 60 %. Last month: SIP 7 of 7.
DECIDED_WITHIN_SLA = [
    ("NIB", THIS_MONTH, 4, 3, 1),
    ("NIB", THIS_MONTH, 6, 5, 5),
    ("PBG", THIS_MONTH, 4, 1, 2),
    ("SIUP", THIS_MONTH, 0, 0, 4),
    ("SIP", LAST_MONTH, 7, 7, 3),
]


def decided_within_sla(client: Any) -> None:
    kpi = next(k for k in load_kpis(PROJECT_ROOT / "kpis", CATALOG) if k.qualified == "licensing.decided_within_sla")
    names = [f["name"] for f in value_schema(kpi)["fields"]] + ["ts_stored"]
    rows = []
    for permit_type, start, count, within, version in DECIDED_WITHIN_SLA:
        key = f'["{permit_type}",{int(start.timestamp() * 1000)}]'
        values = {
            "group_key": key,
            "permit_type": permit_type,
            "window_start": start,
            "window_end": month_start(start.astimezone(WIB).date() + timedelta(days=32)),
            "count": count,
            "within": within,
            "share": within / count if count else None,
            "version": version,
            "updated_at": NOW,
            "ts_stored": NOW,
        }
        rows.append([values[n] for n in names])
    client.insert(kpi.table, rows, column_names=names)


# The stream's day rows of KPIs participation.received_per_day and health.visits_per_day: (group,
# day, count, version). Complaints per month: 9 two months ago, 3 last month (suppressed, and with it
# the 9: a second hidden month, or the 3 would follow from a total), 12 this month. Visits per month:
# 8 last month, 35 this month (a day's older row of 4 replaced by 15).
def _day(month: datetime, n: int) -> datetime:
    return month + timedelta(days=n)


TWO_MONTHS_AGO = month_start(LAST_MONTH.astimezone(WIB).date() - timedelta(days=1))
RECEIVED_PER_DAY = [
    ('["ROADS","A"]', _day(TWO_MONTHS_AGO, 2), 9, 1),
    ('["ROADS","A"]', _day(LAST_MONTH, 3), 3, 2),
    ('["ROADS","A"]', THIS_MONTH, 5, 3),
    ('["WATER","B"]', THIS_MONTH, 7, 4),
]
VISITS_PER_DAY = [
    ('["PKM01","OUTPATIENT","BPJS"]', _day(LAST_MONTH, 1), 8, 1),
    ('["PKM01","OUTPATIENT","BPJS"]', THIS_MONTH, 20, 2),
    ('["PKM02","OUTPATIENT","BPJS"]', THIS_MONTH, 4, 3),
    ('["PKM02","OUTPATIENT","BPJS"]', THIS_MONTH, 15, 4),
]


def day_counts(client: Any, qualified: str, rows: list[tuple[str, datetime, int, int]]) -> None:
    kpi = next(k for k in load_kpis(PROJECT_ROOT / "kpis", CATALOG) if k.qualified == qualified)
    names = [f["name"] for f in value_schema(kpi)["fields"]] + ["ts_stored"]
    values = []
    for group, day, count, version in rows:
        key = group[:-1] + f",{int(day.timestamp() * 1000)}]"
        row = {"group_key": key, "window_start": day, "window_end": day + timedelta(days=1), "count": count}
        row.update(version=version, updated_at=NOW, ts_stored=NOW)
        values.append([row.get(n) for n in names])
    client.insert(kpi.table, values, column_names=names)


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
    migrations.migrate(writer, CATALOG)
    fill(writer)
    more_complaints(writer)
    decided_within_sla(writer)
    day_counts(writer, "participation.received_per_day", RECEIVED_PER_DAY)
    day_counts(writer, "health.visits_per_day", VISITS_PER_DAY)
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
