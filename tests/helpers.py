"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

from backbone.settings import Settings
from devstack.procs import Child

# The query endpoint's token in every test pipeline (conftest's make_settings sets it).
QUERY_TOKEN = "test-query-token"
QUERY_HEADERS = {"Authorization": f"Bearer {QUERY_TOKEN}"}


def settings_env(settings: Settings) -> dict[str, str]:
    return settings.as_env()


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.25, alive: tuple[Child, ...] = ()
) -> object:
    """Poll until `condition()` is truthy; fail with `what` after `timeout` seconds, or at once when
    one of the `alive` processes has exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for child in alive:
            if not child.alive():
                raise AssertionError(f"{child.name} exited while waiting for {what}:\n{child.log_tail(30)}")
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def query(port: str, sql: str) -> str:
    resp = requests.post(f"http://127.0.0.1:{port}/", data=sql, headers=QUERY_HEADERS, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.text


def count(port: str, sql: str) -> int:
    try:
        return int(query(port, sql).strip() or 0)
    except (requests.ConnectionError, AssertionError):
        return -1


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it, made with openssl:
    (ca.pem, server.pem, server.key)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=backbone test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.cnf")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"
