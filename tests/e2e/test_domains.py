"""Every domain end to end on the real stack, and an eighth domain added without code."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal

from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.codec import Registry
from producers.emitter import Change, ChangeEmitter
from simulators.simulate import run_simulators
from tests.helpers import count, query, wait_for
from tests.pii_scan import Hit, clear_values, scan_files, scan_store, scan_topics

PER_SYSTEM = 1000  # enough for every entity of every simulator to appear (budget realisations start late)


def test_every_domain_lands_in_its_tables_enriched_and_no_personal_value_is_left_in_clear(
    pipeline_settings, stage_process, tmp_path
):
    catalog = catalog_for(pipeline_settings)
    sent = run_simulators(pipeline_settings, ["all"], rate=0, count=PER_SYSTEM, bad_ratio=0.08, serve_metrics=False)
    assert sent == {s.system: PER_SYSTEM for s in catalog.systems}
    # Doubtful records come with the bad ones; a referrer of an unknown entity waits 2 s, not 30.
    processor = stage_process(pipeline_settings, "processor", BACKBONE_PROCESSOR_REFERENCE_WAIT_SECONDS="2")
    sink = stage_process(pipeline_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    total = PER_SYSTEM * len(catalog.systems)
    tables = [e.table for e in catalog.entities]

    def accounted() -> int:
        stored = sum(max(0, count(port, f"SELECT count() FROM {t} FINAL")) for t in tables)
        return stored + max(0, count(port, "SELECT count() FROM dead_letters FINAL"))

    wait_for(lambda: accounted() >= total, 240, f"all {total} events stored or dead-lettered", alive=(processor, sink))
    assert accounted() == total  # nothing lost, nothing duplicated

    for entity in catalog.entities:
        rules = json.loads(entity.schema_path.read_text())
        assert count(port, f"SELECT count() FROM {entity.table} FINAL") > 0, entity.table
        for f in rules["fields"]:
            if f.get("pii"):  # personal data only as 32-hex keyed hashes
                bad = count(
                    port,
                    f"SELECT count() FROM {entity.table} WHERE {f['name']} IS NOT NULL "
                    f"AND NOT match({f['name']}, '^[0-9a-f]{{32}}$')",
                )
                assert bad == 0, (entity.table, f["name"])
            if f.get("region") == "village":
                prefix = f["name"][: -len("village_code")]
                missing = count(
                    port,
                    f"SELECT count() FROM {entity.table} WHERE {f['name']} IS NOT NULL AND "
                    f"({prefix}village_name IS NULL OR {prefix}kecamatan_name IS NULL)",
                )
                assert missing == 0, (entity.table, f["name"])

    reasons = query(port, "SELECT reason FROM dead_letters FINAL")
    for expected in ("unknown village code", "below the minimum", "is not allowed", "is missing"):
        assert expected in reasons, expected
    # Doubtful records too: rejected ones name their rule, flagged ones are stored with theirs.
    assert "above the maximum" in reasons
    flagged = sum(max(0, count(port, f"SELECT count() FROM {t} FINAL WHERE notEmpty(dq_flags)")) for t in tables)
    assert flagged > 0

    # The personal values the sources sent, found nowhere but in the raw cdc.* topics: not in any
    # table or view, other topic (clean, dead letters, the processor's own), log or state file.
    values = clear_values(pipeline_settings, catalog)
    assert len(values) > 1000, len(values)
    prefixes = (pipeline_settings.topic_prefix, pipeline_settings.processor_app_id)
    hits = (
        scan_store(port, values)
        + scan_topics(pipeline_settings, values, prefixes)
        + scan_files(pipeline_settings.run_dir, values)
    )
    assert not hits, hits[:10]
    planted = tmp_path / "planted"  # and the scan does find a value where one is
    planted.mkdir()
    (planted / "x.log").write_text(f"2026-11-30 INFO row {min(values)} refused")
    assert scan_files(planted, values) == [Hit(min(values), "file x.log")]


def test_an_eighth_domain_needs_only_a_schema_and_a_catalog_file(make_settings, tmp_path, stage_process):
    settings = make_settings()
    schemas, catalog = tmp_path / "schemas", tmp_path / "catalog"
    shutil.copytree(settings.schemas_dir, schemas)
    shutil.copytree(settings.catalog_dir, catalog)
    (schemas / "social").mkdir()
    (schemas / "social" / "aid_recipient.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "AidRecipient",
                "namespace": "id.go.bojonegoro.social",
                "version": 1,
                "fields": [
                    {"name": "recipient_id", "type": "string"},
                    {"name": "head_of_household_nik", "type": "string", "pii": True},
                    {"name": "village_code", "type": "string", "region": "village"},
                    {
                        "name": "programme",
                        "type": {"type": "enum", "name": "Programme", "symbols": ["PKH", "BPNT", "BLT"]},
                    },
                    {
                        "name": "monthly_amount",
                        "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2},
                        "min": 0,
                    },
                    {"name": "updated_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                ],
            }
        )
    )
    (catalog / "social.yaml").write_text(
        "system: dinsos-aid\ndepartment: DINSOS\ndomain: social\nadapter: {kind: http_push}\n"
        "entities:\n  - name: aid_recipient\n    schema: social/aid_recipient.avsc\n    key: [recipient_id]\n"
    )
    settings = settings.model_copy(update={"schemas_dir": schemas, "catalog_dir": catalog})
    bootstrap(settings)
    (entity,) = catalog_for(settings).system("dinsos-aid").entities
    emitter = ChangeEmitter(entity, settings, Registry(settings.registry_url))
    now = datetime.now(UTC)
    for i in range(25):
        record = {
            "recipient_id": f"R{i}",
            "head_of_household_nik": f"35220{i:011d}",
            "village_code": "35.22.15.2003",
            "programme": "PKH",
            "monthly_amount": Decimal("750000.00"),
            "updated_at": now,
        }
        emitter.emit(Change("c", f"R{i}", f"{i:08d}", now, after=record))
    emitter.flush()

    processor = stage_process(settings, "processor")
    sink = stage_process(settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    wait_for(
        lambda: count(port, "SELECT count() FROM social_aid_recipient FINAL") == 25,
        120,
        "the new domain's rows",
        alive=(processor, sink),
    )
    row = (
        query(
            port,
            "SELECT village_name, kecamatan_name, monthly_amount, head_of_household_nik "
            "FROM social_aid_recipient FINAL LIMIT 1",
        )
        .strip()
        .split("\t")
    )
    assert row[:3] == ["Sukorejo", "Bojonegoro", "750000"]
    assert len(row[3]) == 32 and not row[3].startswith("35220")
