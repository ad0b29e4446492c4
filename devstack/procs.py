"""Child processes of the local stack and the demo: started with their output in a log file,
tied to their parent's life (PR_SET_PDEATHSIG), stopped with SIGTERM and a bounded wait."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backbone.errors import ServiceUnavailable

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # New session: a Ctrl-C in the terminal reaches the supervisor only, which stops children in order.
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_started(
    child: Child,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    stop: Callable[[], object] | None = None,
) -> None:
    """Poll `ready` until it holds while `child` (a server being started) lives. If the child exits first:
    ServiceUnavailable with its log's tail. On timeout: `stop()` (the child's own stop unless given), then
    ServiceUnavailable with the log's tail."""

    def check() -> bool:
        if not child.alive():
            raise ServiceUnavailable(
                f"{what} exited during start-up; its log {child.log_path} ends with:\n{child.log_tail()}"
            )
        return ready()

    try:
        wait_until(check, timeout, what=what)
    except TimeoutError:
        (stop or child.stop)()
        raise ServiceUnavailable(
            f"{what} did not start within {timeout:.0f}s; see {child.log_path}:\n{child.log_tail()}"
        ) from None


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    stop_timeout: float = 20.0
    process: subprocess.Popen | None = None

    def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        try:
            self.process = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.process.pid, sig)  # its whole session: a JVM or worker and any helpers

    def stop(self) -> int | None:
        """SIGTERM, wait up to stop_timeout, then SIGKILL. Returns the exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        if self.alive():
            self.signal(signal.SIGKILL)
            self.process.wait(5)
