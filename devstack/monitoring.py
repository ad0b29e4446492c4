"""A local Prometheus and Alertmanager (Debian's `prometheus` and `prometheus-alertmanager`), each on
a free loopback port with its data in a folder: the project's alert rules evaluated over the running
stages' metrics endpoints, alerts routed by the project's Alertmanager configuration.

Used by the alerting integration test; the configurations are rendered from infra/ so what runs
locally is what production runs, with only addresses (and, for tests, durations) replaced."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from backbone.errors import ConfigError
from backbone.net import free_port
from backbone.settings import PROJECT_ROOT
from devstack.procs import Child, wait_started

RULES = PROJECT_ROOT / "infra" / "prometheus" / "alerts.yml"
ALERTMANAGER_CONFIG = PROJECT_ROOT / "infra" / "alertmanager" / "alertmanager.yml"
HOST = "127.0.0.1"


def find_binary(*names: str) -> str:
    """The first of `names` on PATH (Debian names Alertmanager `prometheus-alertmanager`)."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise ConfigError(f"{names[0]} is not installed", hint="run `make setup` (it installs Debian's package)")


@dataclass(frozen=True)
class Target:
    """One metrics endpoint to scrape, with the target labels Prometheus adds (stage, system, domain)."""

    job: str
    address: str  # host:port
    labels: dict[str, str] = field(default_factory=dict)


def rules_with(source: Path = RULES, for_duration: str | None = None) -> dict[str, Any]:
    """The rules file, with every alert's `for` replaced when `for_duration` is given (tests wait seconds)."""
    doc = yaml.safe_load(source.read_text())
    if for_duration is not None:
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = for_duration
    return doc


def prometheus_config(
    targets: list[Target],
    rule_files: list[Path],
    alertmanager: str | None,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
) -> dict[str, Any]:
    """A configuration like infra/prometheus/prometheus.yml's, for targets on this machine."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        jobs.setdefault(target.job, []).append({"targets": [target.address], "labels": dict(target.labels)})
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "external_labels": {"deployment": "local"},
        },
        "rule_files": [str(p) for p in rule_files],
        # honor_labels: the stages' own stage/system labels stay as they are (see prometheus.yml).
        "scrape_configs": [{"job_name": job, "honor_labels": True, "static_configs": sc} for job, sc in jobs.items()],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def alertmanager_config(
    webhook_base: str, source: Path = ALERTMANAGER_CONFIG, group_wait: str | None = None
) -> dict[str, Any]:
    """The project's Alertmanager configuration with every webhook sent to `<webhook_base>/<receiver>`
    (routing and inhibition unchanged); `group_wait` also shortens the grouping intervals."""
    doc = yaml.safe_load(source.read_text())
    for receiver in doc.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{webhook_base.rstrip('/')}/{receiver['name']}"
    if group_wait is not None:
        doc["route"].update(group_wait=group_wait, group_interval=group_wait, repeat_interval="1h")
    return doc


class _Server:
    """A Debian server binary run from a folder on a free loopback port, ready when /-/ready answers."""

    name = ""

    def __init__(self, folder: Path, config: dict[str, Any]) -> None:
        self.folder = folder
        self.config = config
        self.port = 0
        self.child: Child | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def argv(self, config_file: Path) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> _Server:
        self.folder.mkdir(parents=True, exist_ok=True)
        config_file = self.folder / f"{self.name}.yml"
        config_file.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.port = free_port()
        self.child = Child(self.name, self.argv(config_file), self.folder / f"{self.name}.log", stop_timeout=15)
        self.child.start()
        wait_started(self.child, self._ready, timeout, self.name)
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


class LocalPrometheus(_Server):
    name = "prometheus"

    def argv(self, config_file: Path) -> list[str]:
        return [
            find_binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address={self.address}",
            "--log.level=warn",
        ]

    def api(self, path: str, **params: Any) -> Any:
        resp = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def series(self, match: str) -> list[dict[str, str]]:
        return self.api("series", **{"match[]": match})


class LocalAlertmanager(_Server):
    name = "alertmanager"

    def argv(self, config_file: Path) -> list[str]:
        return [
            find_binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={config_file}",
            f"--storage.path={self.folder / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",  # no gossip: one instance, and no second port to collide on
            "--log.level=warn",
        ]
