"""A pipeline around an http_push adapter for the operations tests: a catalog with one pushing system
(catalog/licensing.yaml as push-licensing), the adapter, the processor and the sink as child processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from backbone.net import free_port
from backbone.runstate import read_state
from backbone.settings import PROJECT_ROOT, Settings
from contract.bootstrap import bootstrap
from contract.reference import load_regions, villages
from devstack.procs import Child
from simulators.licensing import LicensingOffice
from tests.fakes import push_creates
from tests.helpers import wait_for

SYSTEM = "push-licensing"
DOMAIN = "licensing"
TOKEN_ENV = "TEST_OPERATIONS_PUSH_TOKEN"
TOKEN = "operations-test-token"


def write_catalog(folder: Path) -> Path:
    doc = yaml.safe_load((PROJECT_ROOT / "catalog" / "licensing.yaml").read_text())
    doc["system"] = SYSTEM
    doc["adapter"] = {"kind": "http_push", "token_env": TOKEN_ENV}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "licensing.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


class PushPipeline:
    """Processor, sink and adapter started; `restart_adapter()` brings the adapter back on its metrics port."""

    def __init__(self, make_settings: Callable[..., Settings], stage_process: Callable[..., Child], tmp: Path):
        self.catalog_dir = write_catalog(tmp / "catalog")
        self.settings = make_settings(catalog_dir=self.catalog_dir)
        bootstrap(self.settings)
        self.start_stage = stage_process
        self.adapter_env = {TOKEN_ENV: TOKEN, "BACKBONE_PRODUCER_METRICS_PORT": str(free_port())}
        self.processor = stage_process(self.settings, "processor")
        self.sink = stage_process(self.settings, "sink")
        self.adapter = self.restart_adapter()

    def restart_adapter(self) -> Child:
        self.adapter = self.start_stage(self.settings, "adapters", "run", SYSTEM, **self.adapter_env)
        return self.adapter

    @property
    def stages(self) -> tuple[Child, ...]:
        return self.processor, self.sink, self.adapter

    def metrics_address(self, stage: str) -> str:
        child = {"processor": self.processor, "sink": self.sink, "adapter": self.adapter}[stage]
        variable = {"processor": "PROCESSOR", "sink": "SINK", "adapter": "PRODUCER"}[stage]
        return f"127.0.0.1:{child.env[f'BACKBONE_{variable}_METRICS_PORT']}"

    def push(self, items: list[dict[str, Any]]) -> int:
        url = wait_for(
            lambda: read_state(self.settings.run_dir).get(f"push_{SYSTEM}_url"),
            60,
            "the push endpoint",
            alive=self.stages,
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return requests.post(f"{url}/v1/permit_application", json=items, headers=headers, timeout=30).status_code

    def new_items(self, n: int, seed: int = 17) -> list[dict[str, Any]]:
        office = LicensingOffice(villages(load_regions(self.settings.regions_csv)), seed=seed)
        return push_creates(office.changes(), n)
