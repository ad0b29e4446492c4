"""Retry policies, one per kind of dependency, through tenacity. Every retry is counted in
`backbone_retries_total{stage,what}` and logged once per wait, so an operator sees what is waiting.

    for attempt in retrying("store", stage="sink", what="insert"):
        with attempt:
            client.insert(...)

A policy without a stop retries until `stop_event` is set: a stage keeps waiting for its broker or
source (nothing is dropped) yet still shuts down promptly on SIGTERM.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_never, wait_exponential

from backbone import metrics

log = logging.getLogger("backbone.retry")


@dataclass(frozen=True)
class Policy:
    first_wait: float  # seconds before the first retry; doubled each time
    max_wait: float
    attempts: int | None  # None: until the stop event


# Brokers and sources come back after restarts and maintenance: wait for them without limit.
# The store and HTTP peers get a bounded number of tries, then the caller stops without committing.
POLICIES: dict[str, Policy] = {
    "kafka": Policy(first_wait=0.5, max_wait=10.0, attempts=None),
    "source": Policy(first_wait=1.0, max_wait=30.0, attempts=None),
    "store": Policy(first_wait=0.5, max_wait=10.0, attempts=6),
    "http": Policy(first_wait=0.5, max_wait=10.0, attempts=8),
}


class _StopWhenSet:
    def __init__(self, event: threading.Event | None) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event is not None and self.event.is_set()


class _EventSleep:
    """Sleeps on the stop event, so a shutdown interrupts the wait at once."""

    def __init__(self, event: threading.Event | None) -> None:
        self.event = event or threading.Event()

    def __call__(self, seconds: float) -> None:
        self.event.wait(seconds)


def retrying(
    kind: str,
    *,
    stage: str,
    what: str,
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    stop_event: threading.Event | None = None,
    attempts: int | None = None,
) -> Retrying:
    """A tenacity `Retrying` for one kind of dependency (see POLICIES); `attempts` overrides the
    policy's bound. The last error is re-raised when the attempts run out or the stop event is set."""
    policy = POLICIES[kind]
    limit = attempts if attempts is not None else policy.attempts
    counter = metrics.RETRIES.labels(stage, what)

    def before_sleep(state: RetryCallState) -> None:
        counter.inc()
        exc = state.outcome.exception() if state.outcome else None
        first_line = str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__
        log.warning("%s: %s failed (%s); retry %d in %.1fs", stage, what, first_line, state.attempt_number,
                    state.next_action.sleep if state.next_action else 0.0)

    return Retrying(
        retry=retry_if_exception_type(on),
        wait=wait_exponential(multiplier=policy.first_wait, min=policy.first_wait, max=policy.max_wait),
        stop=(stop_after_attempt(limit) if limit else stop_never) | _StopWhenSet(stop_event),
        sleep=_EventSleep(stop_event),
        before_sleep=before_sleep,
        reraise=True,
    )
