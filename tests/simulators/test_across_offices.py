"""What several simulated offices share, tested once for each: bad records stay out of the office's
state, clean schemas map to ClickHouse tables, and changes go through the wire format and the
processor's Cleaner as in the pipeline."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from types import ModuleType

import pytest

import simulators.participation
import simulators.village_finance
import tests.simulators.test_budget as budget
import tests.simulators.test_education as education
import tests.simulators.test_health as health
import tests.simulators.test_infrastructure as infrastructure
import tests.simulators.test_participation as participation
import tests.simulators.test_simulate as licensing
import tests.simulators.test_village_finance as village_finance
from contract.codec import decode
from contract.rules import Rejected
from sinks import ddl
from tests.fakes import freeze


def office_id(value: object) -> str | None:
    """Test ids by office: test_health -> health; other values are named by pytest."""
    return value.__name__.rsplit(".", 1)[1].removeprefix("test_") if isinstance(value, ModuleType) else None


MONDAY = (2025, 3, 3)
# office, the wall clock of the first run and of the second (Jakarta time in the comments), changes, seed
TIMES_OF_DAY = [
    (budget, datetime(*MONDAY, 3, 0, tzinfo=UTC), datetime(*MONDAY, 13, 0, tzinfo=UTC), 1500, 3),  # 10:00, 20:00
    (infrastructure, datetime(*MONDAY, 3, 0, tzinfo=UTC), datetime(*MONDAY, 13, 0, tzinfo=UTC), 1000, 3),
    (participation, datetime(*MONDAY, 3, 0, tzinfo=UTC), datetime(*MONDAY, 16, 0, tzinfo=UTC), 1000, 3),  # 23:00
    (village_finance, datetime(*MONDAY, 3, 0, tzinfo=UTC), datetime(*MONDAY, 16, 0, tzinfo=UTC), 2000, 3),
    # Monday 10:00 and Saturday 20:00
    (licensing, datetime(*MONDAY, 3, 0, tzinfo=UTC), datetime(2025, 3, 1, 13, 0, tzinfo=UTC), 200, 3),
    # Monday 08:00 and 22:00
    (education, datetime(2025, 7, 7, 1, 0, tzinfo=UTC), datetime(2025, 7, 7, 15, 0, tzinfo=UTC), 800, 1),
    (health, datetime(*MONDAY, 1, 0, tzinfo=UTC), datetime(*MONDAY, 15, 0, tzinfo=UTC), 800, 1),
]


@pytest.mark.parametrize(("office", "first", "second", "n", "seed"), TIMES_OF_DAY, ids=office_id)
def test_same_seed_gives_the_same_records_whatever_the_time_of_day(monkeypatch, office, first, second, n, seed):
    freeze(monkeypatch, first)
    records = office.essentials(office.take(n, seed=seed, clock_start=None))
    freeze(monkeypatch, second)
    assert office.essentials(office.take(n, seed=seed, clock_start=None)) == records


@pytest.mark.parametrize(("office", "n"), [(education, education.SCHOOLS + 4000), (health, 5000)], ids=office_id)
def test_bad_records_never_enter_the_state(office: ModuleType, n: int):
    """Later changes build on the last good record, so they stay valid."""
    last: dict[tuple[str, str], dict] = {}
    for change in office.take(n, seed=8, bad_ratio=0.4):
        if office.bad_kind(change):
            continue
        if change.op == "u":
            assert change.before == last[(change.entity, change.key)]
        last[(change.entity, change.key)] = change.after


@pytest.mark.parametrize(
    ("office", "name"),
    [(education, "school"), (education, "enrolment"), (health, "visit"), (health, "bed_occupancy")],
    ids=office_id,
)
def test_clean_schema_maps_to_a_clickhouse_table(chdb, office: ModuleType, name: str):
    layout = ddl.layout_for(office.ENTITIES[name].table, office.RULES[name].clean_schema())
    chdb.command(ddl.create_table_sql(layout))
    columns = [row[0] for row in chdb.query(f"DESCRIBE TABLE `{layout.name}`").result_rows]
    assert columns == layout.names


@pytest.mark.parametrize(("office", "n"), [(budget, 2500), (infrastructure, 1500)], ids=office_id)
def test_the_processor_cleans_good_changes_and_dead_letters_bad_ones(office: ModuleType, n: int):
    """Through the wire format and the processor's Cleaner, as in the pipeline."""
    batch = office.take(n, seed=6, bad_ratio=0.2)
    (ok, failed), outputs, registry = office.SIM.through_processor(batch)
    bad = [bool(office.bad_kinds(c)) for c in batch]
    assert (ok, failed) == (bad.count(False), bad.count(True)) and 0 < failed < ok
    for change, is_bad, output in zip(batch, bad, outputs, strict=True):
        if is_bad:
            assert output.topic == "dlq.processor" and dict(output.headers)["error.reason"].startswith(b"invalid: ")
        else:
            assert output.topic == office.ENTITIES[change.entity].clean_topic
            _, record = decode(registry, output.value)
            assert record["entity_key"] == change.key and record["source_position"] == change.position


@pytest.mark.slow
@pytest.mark.parametrize(
    ("office", "n", "kept", "bad_kinds"),
    [
        (participation, 5000, "complaint", simulators.participation.BAD_KINDS),
        (village_finance, 6000, "village_fund", simulators.village_finance.BAD_KINDS),
    ],
    ids=office_id,
)
def test_bad_ratio_produces_each_bad_kind_and_the_processor_rejects_them(office, n, kept, bad_kinds):
    """`kept`: the entity whose records the office keeps, to update them later."""
    batch = office.take(n, seed=2, bad_ratio=0.3)
    kinds = Counter()
    state: dict[str, dict] = {}
    updated = {c.key for c in batch if c.op == "u"}
    for change in batch:
        kind = office.bad_kind(change)
        if kind is None:
            office.clean(change)
            if change.entity == kept:
                if change.op == "u":
                    assert change.before == state[change.key], "a bad record entered the simulator's state"
                state[change.key] = change.after
            continue
        kinds[kind] += 1
        with pytest.raises(Rejected):
            office.clean(change)
        if change.op == "c":
            assert change.key not in updated  # bad records are never followed by updates
    assert set(kinds) == set(bad_kinds)
    assert 0.25 < sum(kinds.values()) / len(batch) < 0.35
