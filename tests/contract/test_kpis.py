"""KPI declarations: the repo's files load, and every mistake is one line naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone.errors import InputError
from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from contract.kpis import load_kpi_file, load_kpis, value_schema

CATALOG = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")

GOOD = """\
domain: licensing
kpis:
  - name: lead_time
    entity: permit_application
    filter: {status: [APPROVED, REJECTED]}
    group_by: [permit_type]
    measure: {kind: percentiles, from: submitted_at, to: decided_at, unit: working_days}
    window: {size: month, time: decided_at, grace: 7d}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "licensing.yaml"
    path.write_text(text)
    return path


def test_the_repo_declarations_load_for_every_domain_with_a_topic_each() -> None:
    kpis = load_kpis(PROJECT_ROOT / "kpis", CATALOG)
    assert {k.domain for k in kpis} == {e.domain for e in CATALOG.entities}  # every domain has its KPIs
    assert len({k.topic for k in kpis}) == len(kpis)
    for kpi in kpis:
        names = [f["name"] for f in value_schema(kpi)["fields"]]
        assert names[0] == "group_key" and "count" in names and "version" in names


def test_a_good_declaration_reads_its_window_and_measure(tmp_path: Path) -> None:
    (kpi,) = load_kpi_file(write(tmp_path, GOOD), CATALOG, "p.")
    assert kpi.topic == "p.kpi.licensing.lead_time"
    assert kpi.table == "kpi_licensing_lead_time"
    assert kpi.spec.window is not None and kpi.spec.window.grace_ms == 7 * 86_400_000
    assert kpi.spec.measure.percentiles == [50, 90]
    assert kpi.allowed() == {"status": frozenset({"APPROVED", "REJECTED"})}


def test_money_is_summed_as_decimal(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{kind: percentiles, from: submitted_at, to: decided_at, unit: working_days}", "{kind: sum, field: fee}"
    )
    (kpi,) = load_kpi_file(write(tmp_path, text), CATALOG)
    assert kpi.money()
    (total,) = [f for f in value_schema(kpi)["fields"] if f["name"] == "sum"]
    assert total["type"]["logicalType"] == "decimal"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("group_by: [permit_type]", "group_by: [permit_type, office]"),
            ":6: field 'kpis[0].group_by[1]' has value 'office': not a field of permit_application",
        ),
        (
            ("group_by: [permit_type]", "group_by: [overdue]"),
            ":6: field 'kpis[0].group_by[0]' has value 'overdue': needs a `deadline`",
        ),
        (
            ("from: submitted_at", "from: status"),
            ":7: field 'kpis[0].measure.from' has value 'status': expected a timestamp field",
        ),
        (("size: month", "size: week"), ":8: field 'kpis[0].window.size' has value 'week'"),
        (("grace: 7d", "grace: soon"), ":8: field 'kpis[0].window.grace' has value 'soon'"),
        (
            ("entity: permit_application", "entity: permit"),
            ":4: field 'kpis[0].entity' has value 'permit': not an entity of this domain (permit_application)",
        ),
        (("kind: percentiles", "kind: median"), ":7: field 'kpis[0].measure.kind' has value 'median'"),
        (("  - name: lead_time\n", "  - name: Lead-Time\n"), ":3: field 'kpis[0].name' has value 'Lead-Time'"),
    ],
)
def test_mistakes_name_file_line_and_field(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(InputError) as caught:
        load_kpi_file(path, CATALOG)
    assert str(caught.value).startswith(f"{path}{message}"), str(caught.value)


def test_share_within_needs_a_limit(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("kind: percentiles", "kind: share_within"))
    with pytest.raises(InputError, match=r"kpis\[0\]\.measure\.limit_field' .*`limit` or an integer"):
        load_kpi_file(path, CATALOG)


def test_a_domain_missing_from_the_catalog_has_nothing_to_compute(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("domain: licensing", "domain: social_aid"))
    assert load_kpi_file(path, CATALOG) == []
