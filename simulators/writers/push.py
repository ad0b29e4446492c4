"""A departmental system that pushes its changes to the backbone's HTTP push adapter
(producers/adapters/http_push.py), as the demo's simulated offices do.

    client = PushClient(url, token, "permit_application")   # url: stack.json's push_<system>_url
    client.send(changes)                                      # list[Change]; returns the events accepted

Changes are sent in batches; a batch counts as delivered only on a 2xx, which the adapter gives after
Kafka acknowledged it. A 503 or a broken connection is retried with the same body (bounded, with backoff):
positions are deterministic, so a retry is recognised downstream as a replay. Any other refusal raises
PushError with the adapter's field-level errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import requests
from tenacity import RetryCallState

from backbone.retry import retrying
from producers.emitter import Change


class PushError(Exception):
    """The adapter refused a batch (or stayed unavailable): status and its errors list."""

    def __init__(self, status: int | None, errors: list[dict[str, Any]], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def change_item(change: Change) -> dict[str, Any]:
    """One Change as the push API's change object (a snapshot read 'r' is sent as a create)."""
    op = "c" if change.op == "r" else change.op
    item: dict[str, Any] = {
        "op": op,
        "record": _json_value(change.before if op == "d" else change.after),
        "changed_at": _json_value(change.ts_source),
    }
    if op == "u" and change.before is not None:
        item["before"] = _json_value(change.before)
    if change.position:
        item["position"] = change.position
    return item


class PushClient:
    def __init__(
        self,
        url: str,
        token: str,
        entity: str,
        batch_size: int = 500,
        timeout: float = 60.0,
        attempts: int = 6,
    ) -> None:
        base = url.rstrip("/")
        self.endpoint = base if base.endswith(f"/v1/{entity}") else f"{base}/v1/{entity}"
        self.entity = entity
        self.batch_size = batch_size
        self.timeout = timeout
        self.attempts = attempts
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    def send(self, changes: list[Change]) -> int:
        """Send every change (in batches); returns how many the adapter accepted."""
        accepted = 0
        for start in range(0, len(changes), self.batch_size):
            batch = [change_item(c) for c in changes[start : start + self.batch_size]]
            accepted += self._post(json.dumps(batch).encode())["accepted"]
        return accepted

    def _post(self, body: bytes) -> dict[str, Any]:
        # A 503 or a broken connection: the same body again, after a backoff (or the adapter's Retry-After).
        retries = retrying("http", stage="producer", what="push", on=_Unavailable, attempts=max(1, self.attempts))
        backoff = retries.wait
        try:
            for attempt in retries.copy(wait=lambda state: max(backoff(state), _retry_after(state))):
                with attempt:
                    return self._post_once(body)
        except _Unavailable as exc:
            raise PushError(None, [], f"{self.endpoint}: not accepted after {self.attempts} attempts ({exc})") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _post_once(self, body: bytes) -> dict[str, Any]:
        try:
            resp = self.session.post(self.endpoint, data=body, timeout=self.timeout)
        except requests.RequestException as exc:  # connection refused, reset or timed out: send again
            raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc
        if 200 <= resp.status_code < 300:
            return resp.json()
        errors = _errors(resp)
        if resp.status_code != 503:  # a refusal: sending the same body again would not help
            raise PushError(resp.status_code, errors, f"{self.endpoint}: {resp.status_code} {errors[:3]}")
        raise _Unavailable(f"503 {errors[:1]}", float(resp.headers.get("Retry-After", 0) or 0))


class _Unavailable(Exception):
    """The adapter could not take the batch now (503 or a broken connection): it is sent again."""

    def __init__(self, problem: str, retry_after: float = 0.0) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


def _retry_after(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_after if isinstance(exc, _Unavailable) else 0.0


def _errors(resp: requests.Response) -> list[dict[str, Any]]:
    try:
        return list(resp.json().get("errors", []))
    except (ValueError, AttributeError):
        return [{"index": None, "field": None, "message": resp.text[:500]}]
