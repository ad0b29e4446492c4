"""Open data out of the portal: each dataset as CSV, JSON and Parquet (the same rows in each), the
DCAT catalogue in JSON-LD, and the read endpoints of CKAN's Action API (`package_list`,
`package_show`, `package_search`) answering in CKAN's envelope, so CKAN-based portals can harvest."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from portal.datasets import DATASETS, LICENCES, Dataset

FORMATS = {"csv": "text/csv", "json": "application/json", "parquet": "application/vnd.apache.parquet"}
PUBLISHER = {"name": "pemkab-bojonegoro", "title": "Pemerintah Kabupaten Bojonegoro"}


def _plain(value: Any) -> Any:
    """A value for CSV and JSON: money stays exact (a decimal string), times in ISO 8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _csv(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _plain(value)


def to_csv(dataset: Dataset, rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(dataset.names)
    for row in rows:
        writer.writerow([_csv(row[n]) for n in dataset.names])
    return out.getvalue().encode()


def to_json(dataset: Dataset, rows: list[dict[str, Any]]) -> bytes:
    doc = {
        "dataset": dataset.slug,
        "licence": dataset.licence,
        "columns": [{"name": c.name, "kind": c.kind, "description": c.en} for c in dataset.columns],
        "rows": [{n: _plain(r[n]) for n in dataset.names} for r in rows],
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def _arrow_type(kind: str, values: list[Any]) -> pa.DataType:
    if kind == "money":
        scale = max((-v.as_tuple().exponent for v in values if isinstance(v, Decimal)), default=2)
        return pa.decimal128(38, max(scale, 0))
    return {
        "int": pa.int64(),
        "number": pa.float64(),
        "pct": pa.float64(),
        "date": pa.date32(),
        "time": pa.timestamp("ms", tz="UTC"),
        "bool": pa.bool_(),
    }.get(kind, pa.string())


def to_parquet(dataset: Dataset, rows: list[dict[str, Any]]) -> bytes:
    arrays, fields = [], []
    for c in dataset.columns:
        values = [r[c.name] for r in rows]
        if c.kind in ("text", "code"):
            values = [None if v is None else str(v) for v in values]
        kind = _arrow_type(c.kind, values)
        arrays.append(pa.array(values, type=kind))
        fields.append(pa.field(c.name, kind, metadata={"description": c.en}))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={"licence": dataset.licence}))
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


SERIALISERS = {"csv": to_csv, "json": to_json, "parquet": to_parquet}


def _modified(dataset: Dataset, freshness: dict[str, dict[str, Any]]) -> datetime | None:
    times = [freshness[t]["last_change"] for t in dataset.sources if t in freshness]
    latest = max(times, default=None)
    return latest if latest is not None and latest.year > 1970 else None


def dcat_catalog(base: str, freshness: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The catalogue as DCAT (JSON-LD, context inline: no remote fetch needed to read it)."""
    context = {
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "foaf": "http://xmlns.com/foaf/0.1/",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "dct:modified": {"@type": "xsd:dateTime"},
        "dcat:downloadURL": {"@type": "@id"},
        "dcat:landingPage": {"@type": "@id"},
    }
    datasets = []
    for d in DATASETS:
        modified = _modified(d, freshness)
        entry: dict[str, Any] = {
            "@id": f"{base}/datasets/{d.slug}",
            "@type": "dcat:Dataset",
            "dct:identifier": d.slug,
            "dct:title": [{"@value": d.title["id"], "@language": "id"}, {"@value": d.title["en"], "@language": "en"}],
            "dct:description": [
                {"@value": d.description["id"], "@language": "id"},
                {"@value": d.description["en"], "@language": "en"},
            ],
            "dct:license": {"@id": LICENCES[d.licence][1]},
            "dct:publisher": {"@type": "foaf:Organization", "foaf:name": PUBLISHER["title"]},
            "dcat:keyword": [d.service],
            "dcat:landingPage": f"{base}/datasets/{d.slug}",
            "dcat:distribution": [
                {
                    "@id": f"{base}/datasets/{d.slug}.{fmt}",
                    "@type": "dcat:Distribution",
                    "dcat:downloadURL": f"{base}/datasets/{d.slug}.{fmt}",
                    "dcat:mediaType": media,
                    "dct:format": fmt.upper(),
                    "dct:license": {"@id": LICENCES[d.licence][1]},
                }
                for fmt, media in FORMATS.items()
            ],
        }
        if modified is not None:
            entry["dct:modified"] = modified.isoformat()
        datasets.append(entry)
    return {
        "@context": context,
        "@id": f"{base}/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": [
            {"@value": "Data Terbuka Bojonegoro", "@language": "id"},
            {"@value": "Bojonegoro Open Data", "@language": "en"},
        ],
        "dct:publisher": {"@type": "foaf:Organization", "foaf:name": PUBLISHER["title"]},
        "dcat:dataset": datasets,
    }


def ckan_package(base: str, d: Dataset, freshness: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A dataset as CKAN's package_show describes a package."""
    modified = _modified(d, freshness)
    title, url = LICENCES[d.licence]
    return {
        "id": d.slug,
        "name": d.slug,
        "title": d.title["id"],
        "notes": d.description["id"],
        "type": "dataset",
        "state": "active",
        "private": False,
        "license_id": d.licence,
        "license_title": title,
        "license_url": url,
        "metadata_modified": modified.replace(tzinfo=None).isoformat() if modified else None,
        "url": f"{base}/datasets/{d.slug}",
        "organization": {"name": PUBLISHER["name"], "title": PUBLISHER["title"], "type": "organization"},
        "owner_org": PUBLISHER["name"],
        "tags": [{"name": d.service, "display_name": d.service}],
        "num_tags": 1,
        "extras": [{"key": "title_en", "value": d.title["en"]}, {"key": "notes_en", "value": d.description["en"]}],
        "resources": [
            {
                "id": f"{d.slug}-{fmt}",
                "package_id": d.slug,
                "name": f"{d.slug}.{fmt}",
                "url": f"{base}/datasets/{d.slug}.{fmt}",
                "format": fmt.upper(),
                "mimetype": media,
                "position": i,
            }
            for i, (fmt, media) in enumerate(FORMATS.items())
        ],
        "num_resources": len(FORMATS),
    }


def ckan_search(base: str, q: str, rows: int, start: int, freshness: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """package_search: every word of `q` in a dataset's name, titles, descriptions or service."""
    words = q.lower().split()
    found = [
        d
        for d in DATASETS
        if all(w in " ".join([d.slug, d.service, *d.title.values(), *d.description.values()]).lower() for w in words)
    ]
    return {
        "count": len(found),
        "sort": "score desc, metadata_modified desc",
        "facets": {},
        "search_facets": {},
        "results": [ckan_package(base, d, freshness) for d in found[start : start + rows]],
    }


def ckan_envelope(base: str, action: str, result: Any = None, error: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"help": f"{base}/api/3/action/help_show?name={action}", "success": error is None}
    if error is None:
        doc["result"] = result
    else:
        doc["error"] = error
    return doc
