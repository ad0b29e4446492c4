"""Replay after a fix, on the real stack: an event refused for a village the reference data did not
know yet is stored once the village is published and its dead letter replayed."""

from __future__ import annotations

import os
import subprocess
import sys

from contract.catalog import catalog_for
from contract.codec import Registry
from contract.reference import load_regions, publish_regions
from contract.topics import REF_REGIONS, named
from producers.emitter import ChangeEmitter
from simulators.licensing import LicensingOffice
from tests.helpers import count, wait_for

TABLE = "licensing_permit_application"
NEW_VILLAGE = "35.22.01.2999"


def replay_cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.as_env()}
    return subprocess.run(
        [sys.executable, "-m", "cli", "replay", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_dead_letter_replayed_after_the_fix_is_stored_once(pipeline_settings, stage_process):
    settings = pipeline_settings
    (entity,) = catalog_for(settings).system("sim-licensing").entities
    regions = load_regions(settings.regions_csv)
    villages = sorted(c for c, r in regions.items() if r["level"] == "village")
    changes = LicensingOffice(villages, seed=3).changes()
    good = [next(changes) for _ in range(20)]
    early = next(c for c in changes if c.op == "c")
    early.after["village_code"] = NEW_VILLAGE  # a village the reference data does not know yet
    emitter = ChangeEmitter(entity, settings, Registry(settings.registry_url))
    for change in [*good, early]:
        emitter.emit(change)
    emitter.flush()

    processor = stage_process(settings, "processor")
    sink = stage_process(settings, "sink")
    port = sink.env["BACKBONE_QUERY_PORT"]
    letters = "SELECT count() FROM dead_letters FINAL"
    wait_for(lambda: count(port, letters) == 1, 120, "the dead letter", alive=(processor, sink))
    stored_before = count(port, f"SELECT count() FROM {TABLE} FINAL")

    # Nothing to replay for an unrelated reason; a dry run changes nothing.
    assert "0 dead letters" in replay_cli(settings, "processor", "--reason", "no such reason").stdout
    dry = replay_cli(settings, "processor", "--reason", "unknown village", "--dry-run")
    assert dry.returncode == 0 and "would replay 1" in dry.stdout, dry.stdout + dry.stderr

    # The fix: the village is published to the reference topic and the processor restarted (it loads
    # the reference table at start); then the dead letter is replayed, once.
    parent = regions[villages[0]]["parent"]
    village = {**regions[villages[0]], "parent": parent, "name": "Desa Percobaan"}
    publish_regions(settings, named(settings, REF_REGIONS), {NEW_VILLAGE: village})
    processor.stop()
    processor = stage_process(settings, "processor")
    result = replay_cli(settings, "processor", "--reason", "unknown village")
    assert result.returncode == 0 and "replayed 1" in result.stdout, result.stdout + result.stderr
    new_row = f"SELECT count() FROM {TABLE} FINAL WHERE village_code = '{NEW_VILLAGE}'"
    wait_for(lambda: count(port, new_row) == 1, 120, "the replayed event stored", alive=(processor, sink))
    assert count(port, f"SELECT count() FROM {TABLE} FINAL") == stored_before + 1
    assert count(port, letters) == 1  # refused once, replayed once: one dead-letter row
    adapter = replay_cli(settings, "adapter")
    assert adapter.returncode == 0
