"""Measures, windows and aggregates of the KPI engine, without Kafka."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from contract.kpis import load_kpis
from contract.workdays import load_calendar
from stream_processors.kpi_measures import Aggregate, contribution, window_bounds

CATALOG = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
KPIS = {k.qualified: k for k in load_kpis(PROJECT_ROOT / "kpis", CATALOG)}
CALENDAR = load_calendar(PROJECT_ROOT / "data" / "holidays_id.csv")
WIB = timezone(timedelta(hours=7))


def wib(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=WIB)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def permit(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "permit_type": "NIB",
        "status": "APPROVED",
        "kecamatan_name": "Kapas",
        "sla_days": 5,
        "submitted_at": wib(11, 2),
        "decided_at": wib(11, 6, 10),
        "fee": Decimal("1500.50"),
    }
    record.update(changes)
    return record


def test_windows_are_local_hours_days_and_months() -> None:
    t = ms(wib(11, 30, 23))
    assert window_bounds("month", t) == (ms(wib(11, 1, 0)), ms(wib(12, 1, 0)))
    assert window_bounds("day", t) == (ms(wib(11, 30, 0)), ms(wib(12, 1, 0)))
    assert window_bounds("hour", t) == (ms(wib(11, 30, 23)), ms(wib(12, 1, 0)))
    december = ms(datetime(2026, 12, 31, 12, tzinfo=WIB))
    assert window_bounds("month", december)[1] == ms(datetime(2027, 1, 1, tzinfo=WIB))


def test_lead_time_is_a_bucket_of_working_days_in_the_month_of_decision() -> None:
    c = contribution(KPIS["licensing.lead_time"], permit(), CALENDAR)
    assert c is not None
    assert (c.group, c.value, c.window) == (("NIB",), 4, ms(wib(11, 1, 0)))


def test_filtered_out_or_undecided_entities_contribute_nothing() -> None:
    assert contribution(KPIS["licensing.lead_time"], permit(status="VERIFIED"), CALENDAR) is None
    assert contribution(KPIS["licensing.lead_time"], permit(decided_at=None), CALENDAR) is None


def test_share_within_compares_with_the_entitys_own_service_level() -> None:
    kpi = KPIS["licensing.decided_within_sla"]
    assert contribution(kpi, permit(sla_days=4), CALENDAR).value == 1
    assert contribution(kpi, permit(sla_days=3), CALENDAR).value == 0


def test_open_permits_carry_their_working_day_deadline() -> None:
    c = contribution(KPIS["licensing.open_permits"], permit(status="SUBMITTED"), CALENDAR)
    assert c is not None and c.group == ("NIB", "Kapas", None)
    assert c.deadline == ms(wib(11, 10, 0))  # due 9 November (5 working days), missed from midnight


def test_percentiles_are_nearest_rank_over_buckets() -> None:
    kpi = KPIS["licensing.lead_time"]
    aggregate = Aggregate()
    for days in (4, 8, 6, 20, 2):
        aggregate.add(kpi, days, +1)
    assert aggregate.measures(kpi) == {"p50": 6, "p90": 20}
    aggregate.add(kpi, 20, -1)  # the entity left the group
    assert aggregate.count == 4 and aggregate.measures(kpi) == {"p50": 4, "p90": 8}
    assert set(aggregate.buckets) == {2, 4, 6, 8}


def test_money_sums_exactly() -> None:
    kpi = KPIS["licensing.approved_fees"]
    aggregate = Aggregate()
    for _ in range(3):
        aggregate.add(kpi, contribution(kpi, permit(), CALENDAR).value, +1)
    aggregate.add(kpi, "1500.50", -1)
    assert aggregate.measures(kpi) == {"sum": Decimal("3001.00")}


def test_average_of_a_duration() -> None:
    kpi = KPIS["participation.resolution_days"]
    aggregate = Aggregate()
    for days in (1, 2):
        record = {
            "department_responsible": "DPUPR",
            "channel": "WEB",
            "status": "RESOLVED",
            "received_at": wib(11, 2),
            "resolved_at": wib(11, 2 + days),
        }
        aggregate.add(kpi, contribution(kpi, record, CALENDAR).value, +1)
    assert aggregate.measures(kpi) == {"sum": 3.0, "average": 1.5}
