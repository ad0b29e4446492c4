"""Fixtures shared by the adapter tests: the local database servers, started once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from devstack.mariadb import LocalMariaDB
from devstack.postgres import LocalPostgres

Server = TypeVar("Server", LocalPostgres, LocalMariaDB)


def running(server: Server, end: Callable[[], object]) -> Iterator[Server]:
    """Start `server`, hand it to the tests, and `end` it after them."""
    server.start()
    try:
        yield server
    finally:
        end()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    # A short walsender timeout: the outage test shows the CDC adapter keeps its stream alive while
    # it waits for Kafka (it answers the server every 2 s).
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"), settings={"wal_sender_timeout": "6s"})
    yield from running(server, server.remove)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMariaDB]:
    server = LocalMariaDB(tmp_path_factory.mktemp("mariadb"))
    yield from running(server, server.stop)
