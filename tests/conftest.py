"""Fixtures: the real local stack (Kafka in KRaft mode and Apicurio Registry on kafkasql) started
once per session on free loopback ports in a temporary folder, and an isolated pipeline per test
(its own topic prefix, consumer groups and chDB store)."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backbone.net import free_port
from backbone.settings import Settings, load_settings
from contract.bootstrap import bootstrap
from devstack.procs import Child
from devstack.stack import LocalStack, StackAddresses
from tests.helpers import QUERY_TOKEN

_counter = itertools.count(1)

# A test that needs the real local stack is an integration test, whatever its folder says:
# `make test-unit` (-m "not integration") runs the rest in well under a minute.
_STACK_FIXTURES = {"local_stack", "stack"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The running stack itself, for tests that stop and restart the broker."""
    run_dir = tmp_path_factory.mktemp("stack")
    local = LocalStack(load_settings(run_dir=run_dir), run_dir)
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> StackAddresses:
    assert local_stack.addresses is not None
    return local_stack.addresses


@pytest.fixture
def make_settings(stack: StackAddresses, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for one isolated pipeline on the shared stack."""

    def make(**overrides: object) -> Settings:
        n = next(_counter)
        values = {
            "run_dir": tmp_path / f"run{n}",
            "kafka_bootstrap": stack.kafka_bootstrap,
            "registry_url": stack.registry_url,
            "topic_prefix": f"t{os.getpid()}-{n}.",
            "processor_app_id": f"test-processor-{os.getpid()}-{n}",
            "sink_group_id": f"test-sink-{os.getpid()}-{n}",
            "pii_key": "test-key-not-secret",
            "query_token": QUERY_TOKEN,
            "sink_batch_seconds": 0.2,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def pipeline_settings(make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings()
    bootstrap(settings)
    return settings


@pytest.fixture
def stage_process(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start `backbone <args>` as a real child process; all are stopped after the test."""
    started: list[Child] = []

    def start(settings: Settings, *args: str, **env: str) -> Child:
        extra = {
            "BACKBONE_SINK_METRICS_PORT": str(free_port()),
            "BACKBONE_PROCESSOR_METRICS_PORT": str(free_port()),
            "BACKBONE_PRODUCER_METRICS_PORT": str(free_port()),
            "BACKBONE_QUERY_PORT": str(free_port()),
        }
        child = Child(
            args[0],
            [sys.executable, "-m", "cli", *args],
            settings.run_dir / "logs" / f"{args[0]}-{len(started)}.log",
            env={**settings.as_env(), **extra, **env},
            stop_timeout=20,
        )
        started.append(child.start())
        return child

    yield start
    for child in reversed(started):
        child.stop()
