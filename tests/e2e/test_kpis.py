"""Known answer for the licensing KPIs on the real stack: a hand-computable script of permit
changes (creations, updates moving permits between status groups, a delete, late events inside
and past the grace period, duplicate and replayed deliveries) produced onto the clean topic, the
KPI worker and the sink running as real processes; the worker is killed with SIGKILL mid-way and
once more at the end, and every KPI row keeps the expected figure. A complaint whose resolution
deadline passes without an event becomes overdue. A group a crashed worker left on the KPI topic,
which its state does not hold, is sent empty when the worker starts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import fastavro
import requests
from confluent_kafka import Producer

from backbone import kafka
from backbone.settings import Settings
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.codec import Registry, encode, subject_for
from contract.kpis import kpis_for, value_schema
from devstack.procs import Child
from tests.helpers import CleanWriter, kpi_figures, query, wait_for
from tests.helpers import kpi_rows as rows
from tests.helpers import settle as settle_until

WIB = timezone(timedelta(hours=7))


def wib(month: int, day: int, hour: int) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=WIB)


def permit(
    writer: CleanWriter,
    key: str,
    op: str,
    status: str,
    kind: str,
    kecamatan: str,
    submitted: datetime,
    sla: int = 5,
    decided: datetime | None = None,
    fee: str = "0.00",
    position: int | None = None,
):
    return writer.send(
        key,
        op,
        position,
        application_id=key,
        permit_type=kind,
        status=status,
        applicant_nik="h" * 32,
        applicant_name="h" * 32,
        applicant_address="h" * 32,
        kecamatan_name=kecamatan,
        investment_value=Decimal("0.00"),
        fee=Decimal(fee),
        sla_days=sla,
        submitted_at=submitted,
        decided_at=decided,
        updated_at=datetime.now(UTC),
    )


def figures(port: str) -> dict[str, dict[tuple, tuple]]:
    """The licensing KPIs as {table: {group: figures}}, left out: groups whose count is 0."""
    wanted = {
        "kpi_licensing_permits_by_status": ("count",),
        "kpi_licensing_open_permits": ("count",),
        "kpi_licensing_lead_time": ("count", "p50", "p90"),
        "kpi_licensing_decided_within_sla": ("count", "within", "share"),
        "kpi_licensing_approved_fees": ("count", "sum"),
    }
    return kpi_figures(port, wanted)


def recomputed(port: str) -> dict[str, dict[tuple, tuple]]:
    """The live licensing KPIs computed again from the current-state table the sink keeps."""
    out: dict[str, dict[tuple, tuple]] = {"kpi_licensing_permits_by_status": {}}
    try:
        text = query(
            port,
            "SELECT permit_type, status, kecamatan_name, toUInt64(count()) AS n "
            "FROM licensing_permit_application_current GROUP BY ALL FORMAT JSONEachRow",
        )
    except (AssertionError, requests.ConnectionError):
        return out
    for line in text.splitlines():
        row = json.loads(line)
        out["kpi_licensing_permits_by_status"][(row["permit_type"], row["status"], row["kecamatan_name"], None)] = (
            int(row["n"]),
        )
    return out


def settle(port: str, expected: dict[str, dict[tuple, tuple]], what: str, alive: tuple[Child, ...]) -> None:
    """Wait until the figures are the expected ones; on timeout, fail showing the difference."""
    settle_until(lambda: figures(port), expected, what, alive)


OCT, NOV6, NOV13 = "2026-09-30 17:00:00.000", "2026-11-05 17:00:00.000", "2026-11-12 17:00:00.000"
NOV = "2026-10-31 17:00:00.000"
EXPECTED = {
    "kpi_licensing_permits_by_status": {
        ("NIB", "APPROVED", "Kapas", None): (2,),  # P1, P6
        ("NIB", "REJECTED", "Kapas", None): (1,),  # P2
        ("NIB", "APPROVED", "Baureno", None): (1,),  # P4
        ("PBG", "VERIFIED", "Baureno", None): (1,),  # P3 (moved from SUBMITTED)
        ("PBG", "APPROVED", "Kapas", None): (1,),  # P5 (late for the windows, but live here)
    },
    # Only P3 is open; submitted today with 10 working days, it is not overdue. P7 was deleted.
    "kpi_licensing_open_permits": {("PBG", "Baureno", "false", None): (1,)},
    # November NIB: P1 4, P2 6, P4 8 working days (nearest rank: p50 the 2nd, p90 the 3rd);
    # October NIB: P6 3 working days (late, within the 7-day grace); P5's October decision came
    # after the window closed and is not counted.
    "kpi_licensing_lead_time": {("NIB", NOV): (3, 6, 8), ("NIB", OCT): (1, 3, 3)},
    "kpi_licensing_decided_within_sla": {("NIB", NOV): (3, 1, 1 / 3), ("NIB", OCT): (1, 1, 1.0)},
    # Days of approval: P1 on 6 Nov, P4 on 13 Nov; P6 (30 Oct) and P5 (29 Oct) past the 2-day grace.
    "kpi_licensing_approved_fees": {("NIB", NOV6): (1, 100000), ("NIB", NOV13): (1, 250000)},
}


def kpi_pipeline(
    make_settings: Callable[..., Settings], stage_process: Callable[..., Child], entity: str, suffix: str
) -> tuple[Settings, CleanWriter, Child, Child, str]:
    """A bootstrapped pipeline of its own, a writer onto one entity's clean topic, the sink and the
    KPI worker running: (settings, writer, sink, worker, query port)."""
    settings = make_settings(kpi_app_id=f"test-kpi-{os.getpid()}-{datetime.now().timestamp():.0f}-{suffix}")
    bootstrap(settings)
    writer = CleanWriter(settings, entity)
    sink = stage_process(settings, "sink")
    worker = stage_process(settings, "kpi")
    return settings, writer, sink, worker, sink.env["BACKBONE_QUERY_PORT"]


def test_licensing_kpis_known_answer_survive_kill(
    make_settings: Callable[..., Settings], stage_process: Callable[..., Child]
) -> None:
    settings, permits, sink, worker, port = kpi_pipeline(make_settings, stage_process, "permit_application", "p")
    today = datetime.now(WIB).replace(minute=0, second=0, microsecond=0)

    # Phase 1: creations, and decisions of P1 (6 Nov) then P6 (30 Oct: late, within grace).
    permit(permits, "P1", "c", "SUBMITTED", "NIB", "Kapas", wib(11, 2, 9))
    p2_created = permit(permits, "P2", "c", "SUBMITTED", "NIB", "Kapas", wib(11, 16, 9))
    permit(permits, "P3", "c", "SUBMITTED", "PBG", "Baureno", today, sla=10)
    permit(permits, "P4", "c", "SUBMITTED", "NIB", "Baureno", wib(11, 3, 9))
    permit(permits, "P6", "c", "SUBMITTED", "NIB", "Kapas", wib(10, 27, 9))
    permit(permits, "P1", "u", "VERIFIED", "NIB", "Kapas", wib(11, 2, 9))
    p1_approved = permit(
        permits, "P1", "u", "APPROVED", "NIB", "Kapas", wib(11, 2, 9), decided=wib(11, 6, 10), fee="100000.00"
    )
    permit(permits, "P6", "u", "APPROVED", "NIB", "Kapas", wib(10, 27, 9), decided=wib(10, 30, 15), fee="50000.00")
    wait_for(
        lambda: (rows(port, "kpi_licensing_lead_time") or {}).get(("NIB", OCT), {}).get("count") == 1,
        120,
        "the first KPI rows",
        alive=(sink, worker),
    )

    # Phase 2, killed mid-way: P4 and P2 decided (watermark moves to 24 Nov), P5 decided in October.
    permit(permits, "P4", "u", "APPROVED", "NIB", "Baureno", wib(11, 3, 9), decided=wib(11, 13, 9), fee="250000.00")
    permit(permits, "P2", "u", "REJECTED", "NIB", "Kapas", wib(11, 16, 9), decided=wib(11, 24, 10))
    worker.kill()
    permit(permits, "P5", "c", "SUBMITTED", "PBG", "Kapas", wib(10, 20, 9), sla=10)
    permit(
        permits, "P5", "u", "APPROVED", "PBG", "Kapas", wib(10, 20, 9), sla=10, decided=wib(10, 29, 10), fee="75000.00"
    )
    # Phase 3: a created-then-deleted permit, a move between status groups, duplicates and a replay.
    permit(permits, "P7", "c", "SUBMITTED", "NIB", "Kapas", wib(11, 23, 9))
    permit(permits, "P7", "d", "SUBMITTED", "NIB", "Kapas", wib(11, 23, 9))
    permit(permits, "P3", "u", "VERIFIED", "PBG", "Baureno", today, sla=10)
    permits.raw(*p1_approved)  # duplicate delivery
    permits.raw(*p2_created)  # an old change delivered again after newer ones

    worker = stage_process(settings, "kpi")
    settle(port, EXPECTED, "the expected KPI figures after a restart", (sink, worker))

    # Emptied groups are rows with a count of 0 (a group with nothing in it, not a missing row).
    by_status = rows(port, "kpi_licensing_permits_by_status") or {}
    assert by_status[("NIB", "SUBMITTED", "Kapas", None)]["count"] == 0
    assert by_status[("NIB", "VERIFIED", "Kapas", None)]["count"] == 0

    # Killed again with nothing new to read: the restarted worker resumes from its state.
    worker.kill()
    worker = stage_process(settings, "kpi")
    permit(permits, "P8", "c", "SUBMITTED", "REKLAME", "Kapas", today)
    expected = {
        **EXPECTED,
        "kpi_licensing_permits_by_status": {
            **EXPECTED["kpi_licensing_permits_by_status"],
            ("REKLAME", "SUBMITTED", "Kapas", None): (1,),
        },
    }
    expected["kpi_licensing_open_permits"] = {
        **EXPECTED["kpi_licensing_open_permits"],
        ("REKLAME", "Kapas", "false", None): (1,),
    }
    settle(port, expected, "the same figures after a second kill", (sink, worker))

    # Every live count equals the recomputation from the current-state table: kills, duplicates and the
    # replayed old change left no trace.
    wait_for(
        lambda: recomputed(port)["kpi_licensing_permits_by_status"] == figures(port)["kpi_licensing_permits_by_status"],
        60,
        "the KPI equal to its recomputation from licensing_permit_application_current",
        alive=(sink, worker),
    )


def test_complaint_becomes_overdue_without_an_event(
    make_settings: Callable[..., Settings], stage_process: Callable[..., Child]
) -> None:
    settings, complaints, sink, worker, port = kpi_pipeline(make_settings, stage_process, "complaint", "c")
    now = datetime.now(UTC)
    complaints.send(
        "C1",
        "c",
        ticket_id="C1",
        channel="WEB",
        category="ROADS",
        department_responsible="DPUPR",
        complainant_name="h" * 32,
        summary="Jalan rusak",
        status="RECEIVED",
        received_at=now - timedelta(minutes=1),
        resolution_due_at=now + timedelta(seconds=20),
        updated_at=now,
    )

    def open_groups() -> dict[tuple, int]:
        found = rows(port, "kpi_participation_open_complaints") or {}
        return {g: r["count"] for g, r in found.items() if r["count"]}

    wait_for(
        lambda: open_groups() == {("DPUPR", "WEB", "false", None): 1}, 120, "the open complaint", alive=(sink, worker)
    )
    # No further event: the deadline timer moves it within a minute of its due time.
    wait_for(
        lambda: open_groups() == {("DPUPR", "WEB", "true", None): 1}, 90, "the complaint overdue", alive=(sink, worker)
    )


def test_a_group_the_topic_shows_but_the_state_lacks_is_sent_empty_at_start(
    make_settings: Callable[..., Settings], stage_process: Callable[..., Child]
) -> None:
    settings = make_settings(kpi_app_id=f"test-kpi-{os.getpid()}-{datetime.now().timestamp():.0f}-r")
    bootstrap(settings)
    # A value left on the KPI topic by a worker that crashed before its state was saved.
    kpi = next(k for k in kpis_for(settings, catalog_for(settings)) if k.name == "permits_by_status")
    schema = value_schema(kpi)
    schema_id = Registry.for_settings(settings).register(subject_for(kpi.topic), schema)
    key = '["NIB","SUBMITTED","Kapas",null]'
    stale = {
        "group_key": key,
        "permit_type": "NIB",
        "status": "SUBMITTED",
        "kecamatan_name": "Kapas",
        "window_start": None,
        "window_end": None,
        "count": 5,
        "version": 1,
        "updated_at": datetime.now(UTC),
    }
    producer = Producer(kafka.client_config(settings))
    producer.produce(kpi.topic, encode(schema_id, fastavro.parse_schema(schema), stale), key.encode())
    assert producer.flush(30) == 0
    permits = CleanWriter(settings, "permit_application")
    permit(permits, "P1", "c", "SUBMITTED", "PBG", "Baureno", datetime.now(WIB))
    sink = stage_process(settings, "sink")
    worker = stage_process(settings, "kpi")
    port = sink.env["BACKBONE_QUERY_PORT"]

    def counts() -> dict[tuple, int]:
        return {g: r["count"] for g, r in (rows(port, kpi.table) or {}).items()}

    wanted = {("NIB", "SUBMITTED", "Kapas", None): 0, ("PBG", "SUBMITTED", "Baureno", None): 1}
    wait_for(lambda: counts() == wanted, 120, "the stale group sent empty", alive=(sink, worker))
