"""Data-quality rules through the real pipeline (Kafka, registry, processor, sink, chDB), all cases in
one run: a record breaking each new rule kind is flagged (stored, the rule in dq_flags) or rejected
(a dead letter with its rule and message) as its severity says; a referrer whose referenced entity
arrives after it, within the wait, is accepted; one whose entity never arrives is flagged after it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import requests

from contract.catalog import catalog_for
from contract.codec import Registry
from producers.emitter import Change, ChangeEmitter
from tests.fakes import SimulatedSystem
from tests.helpers import query, wait_for

WAIT = 5  # seconds a referrer waits for its entity


def creates(system: SimulatedSystem, entity: str, n: int = 3000) -> list[Change]:
    return [c for c in system.take(n, seed=5) if SimulatedSystem.entity_of(system, c) == entity and c.op in "cr"]


def changed(change: Change, **values: object) -> Change:
    return replace(change, after={**change.after, **values})


def test_each_rule_kind_is_flagged_or_rejected_as_declared_and_a_late_reference_within_the_wait_is_accepted(
    pipeline_settings, stage_process
):
    registry = Registry.for_settings(pipeline_settings)
    education, health = SimulatedSystem("sim-education"), SimulatedSystem("sim-health")
    licensing, budget = SimulatedSystem("sim-licensing"), SimulatedSystem("sim-regional-budget")
    complaints = SimulatedSystem("sim-complaints")
    permits, wards = creates(licensing, "permit_application"), creates(health, "bed_occupancy")
    pupils, school = creates(education, "enrolment"), creates(education, "school")[0]
    submitted = permits[2].after["submitted_at"]
    cases = {  # (system, change) -> (expected rule, severity)
        "month": (budget, changed(creates(budget, "realisation", 6000)[0], month=13), "month:max", "reject"),
        "beds": (health, changed(wards[0], beds_total=600), "beds_total:max", "flag"),
        "nik": (licensing, changed(permits[0], applicant_nik="352201010101000"), "applicant_nik:pattern", "reject"),
        "phone": (licensing, changed(permits[1], applicant_phone="12345"), "applicant_phone:pattern", "flag"),
        "decided": (
            licensing,
            changed(permits[2], decided_at=submitted - timedelta(days=1)),
            "decided_at:compare",
            "flag",
        ),
        "occupied": (
            health,
            changed(wards[1], beds_occupied=wards[1].after["beds_total"] + 1),
            "beds_occupied:compare",
            "flag",
        ),
        "office": (
            complaints,
            changed(creates(complaints, "complaint")[0], department_responsible="XYZ"),
            "department_responsible:one_of",
            "flag",
        ),
        "unknown school": (education, changed(pupils[0], school_npsn="99999999"), "school_npsn:ref", "flag"),
        "late school": (education, changed(pupils[1], school_npsn=school.key), None, None),
    }
    emitters: dict[str, ChangeEmitter] = {}
    topics = {(e.system, e.name): e for e in catalog_for(pipeline_settings).entities}  # with the test's prefix

    def emit(system: SimulatedSystem, change: Change) -> None:
        entity = topics[(system.system.system, system.entity_of(change))]
        emitter = emitters.setdefault(entity.name, ChangeEmitter(entity, pipeline_settings, registry))
        emitter.emit(change)
        emitter.flush()

    for system, change, _, _ in cases.values():
        emit(system, change)
    processor = stage_process(pipeline_settings, "processor", BACKBONE_PROCESSOR_REFERENCE_WAIT_SECONDS=str(WAIT))
    sink = stage_process(pipeline_settings, "sink")
    port, metrics_port = sink.env["BACKBONE_QUERY_PORT"], processor.env["BACKBONE_PROCESSOR_METRICS_PORT"]
    enrolments = topics[("sim-education", "enrolment")].cdc_topic

    def read_enrolments() -> bool:  # the referrers have arrived (and wait): now their school comes
        try:
            text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        except requests.ConnectionError:
            return False
        return any(
            line.startswith("backbone_events_in_total") and f'topic="{enrolments}"' in line and line.endswith(" 2.0")
            for line in text.splitlines()
        )

    wait_for(read_enrolments, 90, "the processor reading both enrolments", alive=(processor,))
    emit(education, school)

    def outcomes() -> dict[str, tuple[list[str], str]]:
        """entity key -> (dq_flags, '') of stored records, (rule, reason) of dead letters."""
        found: dict[str, tuple[list[str], str]] = {}
        for table in (
            "health_bed_occupancy",
            "licensing_permit_application",
            "participation_complaint",
            "education_enrolment",
        ):
            sql = f"SELECT entity_key, dq_flags FROM {table} FINAL FORMAT JSONCompactEachRow"
            for line in query(port, sql).splitlines():
                key, flags = json.loads(line)
                found[key] = (flags, "")
        for row in json.loads(query(port, "SELECT key, rule, reason FROM dead_letters FINAL FORMAT JSON"))["data"]:
            found[row["key"]] = ([row["rule"]], row["reason"])
        return found

    keys = {name: change.key for name, (_, change, _, _) in cases.items()}

    def all_there() -> dict[str, tuple[list[str], str]] | None:
        try:
            found = outcomes()
        except (requests.ConnectionError, AssertionError):  # the sink not serving yet
            return None
        return found if all(k in found for k in keys.values()) else None

    seen = wait_for(
        all_there,
        WAIT + 60,
        "every case stored or dead-lettered",
        interval=0.5,
        alive=(processor, sink),
    )
    for name, (_, _change, rule, severity) in cases.items():
        flags, reason = seen[keys[name]]
        if severity is None:
            assert flags == [] and not reason, (name, flags, reason)  # its school came within the wait
        elif severity == "flag":
            assert flags == [rule] and not reason, (name, flags, reason)
        else:
            assert flags == [rule] and reason.startswith(f"invalid: field {rule.split(':')[0]!r} value "), name
    assert "value 13: above the maximum 12" in seen[keys["month"]][1]
    nik = seen[keys["nik"]][1]
    assert "<pseudonym " in nik and "352201010101000" not in nik and "not a NIK" in nik

    scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert (
        'backbone_dq_rule_failures_total{entity="enrolment",rule="school_npsn:ref",severity="flag",'
        'system="sim-education"} 1.0' in scraped
    )
    assert 'backbone_dq_records_total{entity="realisation",outcome="rejected",system="sim-regional-budget"} 1.0' in (
        scraped
    )
