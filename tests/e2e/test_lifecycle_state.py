"""Updates without a `before` image on the real stack: the processor checks them against the last
lifecycle state it kept, and after kill -9 and a restart it still does (the state comes back from
its compacted topic), without refusing the events it reads again."""

from __future__ import annotations

import itertools
from dataclasses import replace

from contract.catalog import catalog_for
from contract.codec import Registry
from contract.reference import load_regions
from producers.emitter import Change, ChangeEmitter
from simulators.licensing import LicensingOffice
from tests.helpers import count, query, wait_for

TABLE = "licensing_permit_application"


def update(created: Change, n: int, status: str) -> Change:
    """An update as a file drop or a query poll sends it: the new record only; `n` orders it in the
    source (the simulators' positions are sequence numbers)."""
    position = f"{int(created.position) + 1000 * n:012d}"
    return replace(created, op="u", position=position, before=None, after={**created.after, "status": status})


def test_updates_without_before_are_checked_across_a_processor_crash(pipeline_settings, stage_process):
    (entity,) = catalog_for(pipeline_settings).system("sim-licensing").entities
    emitter = ChangeEmitter(entity, pipeline_settings, Registry.for_settings(pipeline_settings))
    villages = sorted(c for c, r in load_regions(pipeline_settings.regions_csv).items() if r["level"] == "village")
    created = [c for c in itertools.islice(LicensingOffice(villages, seed=11).changes(), 200) if c.op == "c"]
    a, b = created[0], next(c for c in created[1:] if c.key != created[0].key)
    for change in (a, update(a, 1, "VERIFIED"), b):
        emitter.emit(change)
    emitter.flush()

    processor = stage_process(pipeline_settings, "processor")
    sink = stage_process(pipeline_settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    wait_for(lambda: count(port, f"SELECT count() FROM {TABLE} FINAL") == 3, 120, "3 changes stored", alive=(sink,))
    processor.kill()  # kill -9: its offsets may not be committed, the state topic has the state

    # From VERIFIED, SUBMITTED cannot be reached: refused; APPROVED is allowed. b skipped a status the
    # poll never saw (SUBMITTED -> APPROVED): accepted; from APPROVED nothing is reachable: refused.
    later = (update(a, 2, "SUBMITTED"), update(a, 3, "APPROVED"), update(b, 4, "APPROVED"), update(b, 5, "VERIFIED"))
    for change in later:
        emitter.emit(change)
    emitter.flush()
    processor = stage_process(pipeline_settings, "processor")
    wait_for(
        lambda: (
            count(port, "SELECT count() FROM dead_letters FINAL") >= 2
            and count(port, f"SELECT count() FROM {TABLE} FINAL") >= 5
        ),
        120,
        "the two refused updates dead-lettered and the allowed ones stored",
        alive=(processor, sink),
    )
    assert count(port, f"SELECT count() FROM {TABLE} FINAL") == 5  # nothing read again was refused
    reasons = sorted(query(port, "SELECT reason FROM dead_letters FINAL FORMAT TSVRaw").splitlines())
    assert len(reasons) == 2, reasons
    assert "transition 'VERIFIED' -> 'SUBMITTED' is not allowed" in reasons[0] + reasons[1]
    assert "transition 'APPROVED' -> 'VERIFIED' is not allowed" in reasons[0] + reasons[1]
    status = query(port, f"SELECT status FROM {TABLE} FINAL WHERE entity_key = '{a.key}' ORDER BY _offset")
    assert status.split() == ["SUBMITTED", "VERIFIED", "APPROVED"]
