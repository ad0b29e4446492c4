"""The open-data API against the real store: every dataset in CSV, JSON and Parquet with the rows of
the store (suppressed where it counts persons), the DCAT catalogue read as JSON-LD, the CKAN Action
API's read endpoints in CKAN's envelope, the portal's scope at the query endpoint, hostile requests."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest
import rdflib
import requests

from portal.datasets import DATASETS
from portal.suppression import suppress
from tests.portal.conftest import PORTAL_TOKEN

DCAT = rdflib.Namespace("http://www.w3.org/ns/dcat#")


def text(value: Any) -> str:
    """One spelling per value, whatever the format it came from."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float | Decimal):
        return format(Decimal(str(value)).normalize(), "f")
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def parsed(dataset, name: str, value: Any) -> str:
    """A CSV or JSON value (text for money and times) in the one spelling."""
    kind = dataset.column(name).kind
    if isinstance(value, str) and kind in ("money", "number", "pct"):
        return text(Decimal(value))
    if isinstance(value, str) and kind == "time":
        return text(datetime.fromisoformat(value))
    if isinstance(value, str) and kind == "int":
        return value
    return text(value)


def store_rows(published, dataset) -> list[list[str]]:
    order = ", ".join(dataset.order_by) or "tuple()"
    result = published.client.query(f"SELECT {', '.join(dataset.names)} FROM {dataset.view} ORDER BY {order}")
    rows = [dict(zip(dataset.names, r, strict=True)) for r in result.result_rows]
    for row in rows:  # a condition is UInt8 in ClickHouse, a boolean in the published data
        row.update({c.name: bool(row[c.name]) for c in dataset.columns if c.kind == "bool"})
    rows = suppress(rows, dataset, published.settings.portal_min_cell)
    return [[text(r[n]) for n in dataset.names] for r in rows]


def get(published, path: str, **kw: Any) -> requests.Response:
    return requests.get(published.url + path, timeout=30, **kw)


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.slug)
def test_every_dataset_downloads_in_three_formats_with_the_store_rows(published, dataset):
    expected = store_rows(published, dataset)
    assert expected, "the known store has rows in every dataset"
    csv_resp = get(published, f"/datasets/{dataset.slug}.csv")
    assert csv_resp.status_code == 200 and csv_resp.headers["Content-Type"].startswith("text/csv")
    header, *rows = list(csv.reader(io.StringIO(csv_resp.text)))
    assert header == dataset.names
    as_csv = [[parsed(dataset, n, v or None) for n, v in zip(header, r, strict=True)] for r in rows]
    doc = get(published, f"/datasets/{dataset.slug}.json").json()
    assert doc["licence"] == dataset.licence and [c["name"] for c in doc["columns"]] == dataset.names
    as_json = [[parsed(dataset, n, r[n]) for n in dataset.names] for r in doc["rows"]]
    table = pq.read_table(io.BytesIO(get(published, f"/datasets/{dataset.slug}.parquet").content))
    assert table.column_names == dataset.names
    as_parquet = [[text(r[n]) for n in dataset.names] for r in table.to_pylist()]
    assert as_csv == as_json == as_parquet == expected


def test_person_counts_are_suppressed_in_downloads(published):
    doc = get(published, "/datasets/complaints.json").json()
    by_key = {(r["department_code"], r["channel"]): r for r in doc["rows"]}
    assert by_key[("DPUPR", "WEB")]["complaints"] is None  # 1 complaint
    assert by_key[("DINKES", "WHATSAPP")]["complaints"] is None  # 1 complaint
    assert by_key[("DPUPR", "WHATSAPP")]["complaints"] is None  # complementary: 12, but DPUPR/WEB is hidden
    assert by_key[("DINKES", "WEB")]["complaints"] is None  # complementary: 10, but DINKES/WHATSAPP is hidden
    assert by_key[("DISDIK", "WEB")]["complaints"] == 8 and by_key[("DISDIK", "WHATSAPP")]["complaints"] == 6
    for row in doc["rows"]:
        for m in ("complaints", "open", "overdue", "awaiting_first_response"):
            assert row[m] is None or row[m] == 0 or row[m] >= 5, row
        if row["complaints"] is None:
            assert row["first_response_hours_median"] is None
    filtered = get(published, "/datasets/complaints.json?department_code=DPUPR").json()["rows"]
    assert filtered == [r for r in doc["rows"] if r["department_code"] == "DPUPR"]


def test_filters_are_dimensions_and_values_never_reach_the_sql(published):
    ok = get(published, "/datasets/licensing-open-permits.csv?permit_type=NIB")
    assert ok.status_code == 200 and {r.split(",")[2] for r in ok.text.splitlines()[1:]} == {"NIB"}
    assert get(published, "/datasets/licensing-open-permits.csv?open=1").status_code == 400  # a measure
    assert get(published, "/datasets/licensing-open-permits.csv?query=SELECT+1").status_code == 400
    hostile = get(published, "/datasets/licensing-open-permits.csv", params={"permit_type": "x' OR 1=1 --"})
    assert hostile.status_code == 200 and hostile.text.strip() == ",".join(DATASETS[1].names)
    assert get(published, "/datasets/licensing-open-permits.csv", params={"permit_type": "x" * 500}).status_code == 400
    assert get(published, "/datasets/nope.csv").status_code == 404
    assert get(published, "/kecamatan/35.22.99").status_code == 404
    assert get(published, "/budget?year=1990").status_code == 404
    assert get(published, "/budget?department_code=NOPE").status_code == 404


def test_dcat_catalogue_is_json_ld_with_every_dataset_and_distribution(published):
    resp = get(published, "/catalog.jsonld")
    assert resp.headers["Content-Type"].startswith("application/ld+json")
    graph = rdflib.Graph().parse(data=resp.text, format="json-ld")
    datasets = set(graph.subjects(rdflib.RDF.type, DCAT.Dataset))
    assert {str(d).rsplit("/", 1)[1] for d in datasets} == {d.slug for d in DATASETS}
    assert len(set(graph.subjects(rdflib.RDF.type, DCAT.Distribution))) == 3 * len(DATASETS)
    for d in datasets:
        assert graph.value(d, rdflib.DCTERMS.license) is not None
        assert {t.language for t in graph.objects(d, rdflib.DCTERMS.title)} == {"id", "en"}
    complaints = rdflib.URIRef(f"{published.url}/datasets/complaints")
    assert graph.value(complaints, rdflib.DCTERMS.modified).toPython().year >= 2025  # a change was stored


def test_ckan_action_api_answers_as_ckan_does(published):
    listing = get(published, "/api/3/action/package_list").json()
    assert listing["success"] is True and listing["help"].endswith("help_show?name=package_list")
    assert listing["result"] == [d.slug for d in DATASETS]
    shown = get(published, "/api/3/action/package_show?id=budget-absorption").json()
    package = shown["result"]
    assert shown["success"] and package["name"] == "budget-absorption" and package["license_id"] == "CC-BY-4.0"
    assert {r["format"] for r in package["resources"]} == {"CSV", "JSON", "PARQUET"}
    assert get(published, package["resources"][0]["url"].replace(published.url, "")).status_code == 200
    missing = get(published, "/api/3/action/package_show?id=nope")
    assert missing.status_code == 404 and missing.json()["success"] is False
    assert missing.json()["error"]["__type"] == "Not Found Error"
    found = get(published, "/api/3/action/package_search?q=village&rows=1").json()["result"]
    assert found["count"] == 3 and len(found["results"]) == 1 and found["results"][0]["name"].startswith("village")
    assert get(published, "/api/3/action/package_search?rows=x").status_code == 409
    assert get(published, "/api/3/action/resource_delete").json()["success"] is False


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count() FROM licensing_permit_application",
        "SELECT * FROM dead_letters",
        "SELECT * FROM ready_complaints",
        "SELECT * FROM licensing_permit_application_state",
        "SELECT * FROM system.one",
        "SELECT * FROM numbers(10)",
        "SELECT * FROM public_complaints WHERE channel IN dead_letters_masked",
        "SELECT * FROM public_complaints AS p JOIN participation_complaint_state AS s ON 1",
        "SELECT * FROM (SELECT * FROM participation_complaint_state)",
        "SELECT * FROM default.public_complaints",
        "SELECT dictGet('d', 'x', 1) FROM public_complaints",
        "INSERT INTO public_complaints VALUES ('x')",
        "SHOW TABLES",
    ],
)
def test_the_portal_token_reads_public_views_only(published, sql):
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}"}
    resp = requests.post(published.query_url, data=sql.encode(), headers=headers, timeout=30)
    assert resp.status_code in (400, 403), (sql, resp.text)


def test_the_portal_token_answers_public_views_with_parameters(published):
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}"}
    resp = requests.post(
        published.query_url,
        params={"param_c": "WEB"},
        headers=headers,
        timeout=30,
        data=b"SELECT count() FROM public_complaints WHERE channel = {c:String}",
    )
    assert resp.status_code == 200 and resp.text == "3\n"


def test_answers_are_cached_no_longer_than_the_data_is_fresh(published):
    resp = get(published, "/")
    assert resp.headers["Cache-Control"] == f"public, max-age={int(published.settings.portal_cache_seconds)}"
    assert "Accept-Language" in resp.headers["Vary"]
    assert get(published, "/datasets/nope.csv").headers["Cache-Control"] == "no-store"


def test_catalogue_json_is_json(published):
    assert json.loads(get(published, "/datasets/health-beds.json").content)["dataset"] == "health-beds"
