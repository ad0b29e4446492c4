"""The KPI engine's state: group moves, deletes, duplicates, late events, deadlines, rebuilds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from contract.kpis import load_kpis
from contract.workdays import load_calendar
from stream_processors.kpi_state import KpiEngine, slot

CATALOG = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
KPIS = load_kpis(PROJECT_ROOT / "kpis", CATALOG)
CALENDAR = load_calendar(PROJECT_ROOT / "data" / "holidays_id.csv")
WIB = timezone(timedelta(hours=7))
TOPIC = "clean.licensing.permit_application"
NOW = int(datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp() * 1000)


def wib(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=WIB)


class Script:
    """Applies permit changes as the app does: state per entity, one version per change."""

    def __init__(self) -> None:
        self.engine = KpiEngine.for_catalog([k for k in KPIS if k.domain == "licensing"], CALENDAR, CATALOG)
        self.states: dict[str, dict[str, Any]] = {}
        self.position = 0
        self.figures: dict[tuple[str, str], dict[str, Any]] = {}

    def change(
        self, key: str, status: str, op: str = "u", position: int | None = None, now: int = NOW, **fields: Any
    ) -> bool:
        if position is None:
            self.position += 1
            position = self.position
        record = {
            "entity_key": key,
            "op": op,
            "is_deleted": op == "d",
            "source_position": f"{position:012d}",
            "ts_source": datetime.now(UTC),
            "permit_type": "NIB",
            "status": status,
            "kecamatan_name": "Kapas",
            "sla_days": 5,
            "submitted_at": wib(11, 2),
            "decided_at": None,
            "fee": Decimal("10.00"),
            **fields,
        }
        entity = self.engine.entity_id(TOPIC, record)
        state = self.engine.apply(TOPIC, record, self.states.get(entity), now)
        if state is not None:
            self.states[entity] = state
        self.collect(now)
        return state is not None

    def collect(self, now: int = NOW) -> None:
        for kpi, key, value in self.engine.take_rows(now):
            self.figures[(kpi.name, key)] = value

    def counts(self, name: str) -> dict[str, int]:
        return {k: v["count"] for (n, k), v in self.figures.items() if n == name and v["count"]}


def test_an_update_moves_the_entity_between_groups_and_a_delete_leaves() -> None:
    s = Script()
    s.change("P1", "SUBMITTED", "c")
    s.change("P2", "SUBMITTED", "c")
    assert s.counts("permits_by_status") == {'["NIB","SUBMITTED","Kapas",null]': 2}
    s.change("P1", "VERIFIED")
    assert s.counts("permits_by_status") == {
        '["NIB","SUBMITTED","Kapas",null]': 1,
        '["NIB","VERIFIED","Kapas",null]': 1,
    }
    s.change("P2", "SUBMITTED", "d")
    assert s.counts("permits_by_status") == {'["NIB","VERIFIED","Kapas",null]': 1}
    # The emptied group was sent once with 0, so its row says 0 rather than the last count.
    assert s.figures[("permits_by_status", '["NIB","SUBMITTED","Kapas",null]')]["count"] == 0


def test_duplicated_and_replayed_events_change_nothing() -> None:
    s = Script()
    s.change("P1", "SUBMITTED", "c", position=1)
    s.change("P1", "APPROVED", position=5, decided_at=wib(11, 6))
    before = dict(s.figures)
    assert not s.change("P1", "APPROVED", position=5, decided_at=wib(11, 6))  # duplicate
    assert not s.change("P1", "SUBMITTED", "c", position=1)  # an older change delivered again
    assert s.figures == before and s.engine.replayed == 2


def test_late_changes_count_within_the_grace_and_are_ignored_after() -> None:
    s = Script()
    s.change("A", "APPROVED", "c", decided_at=wib(11, 6))
    s.change("B", "APPROVED", "c", submitted_at=wib(10, 27), decided_at=wib(10, 30))  # October open till 8 Nov
    s.change("C", "APPROVED", "c", submitted_at=wib(11, 16), decided_at=wib(11, 24))
    s.change("D", "APPROVED", "c", submitted_at=wib(10, 20), decided_at=wib(10, 29))  # October now closed
    assert s.counts("lead_time") == {'["NIB",1793466000000]': 2, '["NIB",1790787600000]': 1}
    assert s.engine.late >= 1


def test_a_deadline_passing_moves_the_entity_to_overdue_without_an_event() -> None:
    s = Script()
    submitted = wib(11, 30)  # 5 working days: due 7 December, overdue from 8 December 00:00 WIB
    s.change("P1", "SUBMITTED", "c", submitted_at=submitted)
    assert s.counts("open_permits") == {'["NIB","Kapas","false",null]': 1}
    due = int(wib(12, 8, 0).timestamp() * 1000)
    assert s.engine.flip_due(due - 1) == 0
    assert s.engine.flip_due(due) == 1
    s.collect(due)
    assert s.counts("open_permits") == {'["NIB","Kapas","true",null]': 1}
    s.change("P1", "APPROVED", decided_at=wib(12, 9), submitted_at=submitted, now=due + 1)
    assert s.counts("open_permits") == {}


def test_a_rebuild_from_the_stored_states_gives_the_same_figures() -> None:
    s = Script()
    s.change("P1", "SUBMITTED", "c")
    s.change("P2", "APPROVED", "c", decided_at=wib(11, 6))
    s.change("P3", "REJECTED", "c", decided_at=wib(11, 20))
    s.change("P1", "VERIFIED")
    before = {k: v for k, v in s.figures.items() if v["count"]}
    restarted = Script()
    restarted.engine.rebuild(s.states.items(), NOW)
    restarted.collect()
    assert _without_versions(restarted.figures) == _without_versions(before)


def _without_versions(rows: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {f: v for f, v in r.items() if f not in ("version", "updated_at")} for k, r in rows.items()}


def test_a_slot_is_computed_once_per_kpi_and_follows_its_declaration() -> None:
    kpi = next(k for k in KPIS if k.qualified == "licensing.permits_by_status")
    redeclared = replace(kpi, spec=kpi.spec.model_copy(update={"group_by": ["permit_type"]}))
    assert slot(kpi) is slot(kpi)  # cached: it was recomputed several times per event
    assert slot(redeclared).split("@")[0] == slot(kpi).split("@")[0]
    assert slot(redeclared) != slot(kpi)  # old contributions are not taken for the new declaration
