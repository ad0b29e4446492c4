"""The HTTP push adapter on the real stack: a child `backbone adapters run push-licensing` process
answering pushes, the processor and the sink storing them in chDB. Good input lands in ClickHouse,
every kind of bad input gets its precise error and stores nothing, a replay is stored once, and a 2xx
is only given after Kafka acknowledged (the broker-outage test stops Kafka: it runs last)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from confluent_kafka import Consumer, TopicPartition

from backbone.errors import ConfigError
from backbone.runstate import read_state
from backbone.settings import PROJECT_ROOT, Settings
from contract.bootstrap import bootstrap
from contract.catalog import catalog_for
from contract.reference import load_regions, villages
from devstack.procs import Child
from producers.service import build_adapter
from simulators.licensing import LicensingOffice
from simulators.writers.push import PushClient, change_item
from tests.fakes import push_creates
from tests.helpers import count, make_certificates, query, wait_for

SYSTEM = "push-licensing"
ENTITY = "permit_application"
TABLE = "licensing_permit_application"
TOKEN_ENV = "TEST_PUSH_LICENSING_TOKEN"
TOKEN = "s3cret-push-token-for-tests"


def write_catalog(folder: Path, **adapter: Any) -> Path:
    """A copy of catalog/licensing.yaml as system push-licensing with an http_push adapter."""
    doc = yaml.safe_load((PROJECT_ROOT / "catalog" / "licensing.yaml").read_text())
    doc["system"] = SYSTEM
    doc["adapter"] = {"kind": "http_push", "token_env": TOKEN_ENV, **adapter}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "licensing.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def cdc_messages(settings: Settings) -> int:
    """Messages on the entity's cdc topic (idempotent producer, no transactions: offsets count them)."""
    (entity,) = catalog_for(settings).system(SYSTEM).entities
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "test-push-count"})
    try:
        topic = consumer.list_topics(entity.cdc_topic, timeout=10).topics[entity.cdc_topic]
        total = 0
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(entity.cdc_topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


class Pushing:
    """A running pipeline: the adapter, the processor and the sink as child processes."""

    def __init__(self, settings: Settings, stage_process: Callable[..., Child]) -> None:
        self.settings = settings
        self.adapter = stage_process(settings, "adapters", "run", SYSTEM, **{TOKEN_ENV: TOKEN})
        self.processor = stage_process(settings, "processor")
        self.sink = stage_process(settings, "sink")
        self.port = self.sink.env["BACKBONE_QUERY_PORT"]
        self.url = str(
            wait_for(
                lambda: read_state(settings.run_dir).get(f"push_{SYSTEM}_url"),
                60,
                "the push adapter's URL in stack.json",
                alive=(self.adapter,),
            )
        )
        wait_for(lambda: self.health().get("status") == "ok", 30, "the push adapter's /health", alive=(self.adapter,))
        self.endpoint = f"{self.url}/v1/{ENTITY}"

    def health(self) -> dict:
        try:
            return requests.get(f"{self.url}/health", timeout=5).json()
        except requests.RequestException:
            return {}

    def post(self, body: Any, token: str | None = TOKEN, path: str = ENTITY, **kwargs: Any) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(kwargs.pop("headers", {}))
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        return requests.post(f"{self.url}/v1/{path}", data=data, headers=headers, timeout=kwargs.pop("timeout", 30))

    def stored(self, sql: str) -> int:
        return count(self.port, sql)

    def wait_stored(self, sql: str, expected: int, what: str, timeout: float = 120) -> None:
        seen = [-1]

        def stored_all() -> bool:
            seen[0] = self.stored(sql)
            return seen[0] == expected

        try:
            wait_for(stored_all, timeout, what, alive=(self.adapter, self.processor, self.sink))
        except AssertionError as exc:
            raise AssertionError(f"{expected} rows expected, {seen[0]} stored: {exc}") from None


def office(settings: Settings, seed: int, start_seq: int = 0) -> LicensingOffice:
    return LicensingOffice(villages(load_regions(settings.regions_csv)), seed=seed, start_seq=start_seq)


def fresh_items(settings: Settings, n: int, start_seq: int) -> list[dict[str, Any]]:
    """n new applications (creates, distinct keys) as push change objects, without positions."""
    return push_creates(office(settings, seed=5, start_seq=start_seq).changes(), n)


def keys_sql(items: list[dict[str, Any]]) -> str:
    keys = ", ".join(f"'{i['record']['application_id']}'" for i in items)
    return f"SELECT count() FROM {TABLE} WHERE entity_key IN ({keys})"


def only_error(resp: requests.Response, status: int) -> list[dict[str, Any]]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    errors = resp.json()["errors"]
    assert errors
    return errors


def test_missing_token_variable_or_bad_field_is_a_config_error(make_settings, tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    settings = make_settings(catalog_dir=write_catalog(tmp_path / "catalog"))
    with pytest.raises(ConfigError, match=f"environment variable {TOKEN_ENV} is not set"):
        build_adapter(settings, SYSTEM)

    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    for field, value, message in (
        ("port", "eighty", "field 'adapter.port' has value 'eighty'"),
        ("max_body_bytes", 0, "field 'adapter.max_body_bytes' has value 0"),
        ("ack_timeout_seconds", -1, "field 'adapter.ack_timeout_seconds' has value -1"),
    ):
        folder = write_catalog(tmp_path / f"catalog-{field}", **{field: value})
        with pytest.raises(ConfigError, match=r"licensing\.yaml(:\d+)?: " + re.escape(message)):
            build_adapter(make_settings(catalog_dir=folder), SYSTEM)
    folder = write_catalog(tmp_path / "catalog-no-token", token_env=None)
    with pytest.raises(ConfigError, match="field 'adapter.token_env' is missing"):
        build_adapter(make_settings(catalog_dir=folder), SYSTEM)


def test_pushes_are_validated_stored_and_replays_recognised(make_settings, stage_process, tmp_path):
    settings = make_settings(catalog_dir=write_catalog(tmp_path / "catalog", max_body_bytes=65536, max_batch=50))
    bootstrap(settings)
    push = Pushing(settings, stage_process)

    # Good input: an office's creates and updates (with `before`), sent by the client helper in batches.
    source = office(settings, seed=11).changes()
    changes = [next(source) for _ in range(40)]
    assert {c.op for c in changes} == {"c", "u"}
    assert PushClient(push.url, TOKEN, ENTITY, batch_size=25).send(changes) == 40
    latest = {c.key: c for c in changes}  # each application's latest state
    deleted = next(c for c in latest.values() if c.op == "c")
    delete = {
        "op": "d",
        "record": change_item(deleted)["record"],
        "changed_at": (deleted.ts_source + timedelta(seconds=1)).isoformat(),
        "position": "delete-1",
    }
    resp = push.post(delete)
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1

    # Bad input: each refused with its own status and field-level errors; its keys must never be stored.
    pool = iter(fresh_items(settings, 20, start_seq=100_000))
    refused: list[dict[str, Any]] = []

    def item() -> dict[str, Any]:
        new = next(pool)
        refused.append(new)
        return new

    for token in ("wrong-token", None):
        errors = only_error(push.post(item(), token=token), 401)
        assert "bearer token" in errors[0]["message"]

    big = item()
    big["record"]["business_name"] = "x" * 70_000
    errors = only_error(push.post(big), 413)
    assert "larger than 65536 bytes" in errors[0]["message"]
    many = fresh_items(settings, 51, start_seq=200_000)
    refused.extend(many)
    errors = only_error(push.post(many), 413)
    assert "at most 50 per request" in errors[0]["message"]

    errors = only_error(push.post(item(), headers={"Content-Type": "text/plain"}), 415)
    assert "application/json" in errors[0]["message"]

    malformed = '[{"op": "c",\n  "record": {"application_id": "X-1",}}]'
    errors = only_error(push.post(malformed), 400)
    assert errors[0]["line"] == 2 and errors[0]["column"] == 38 and errors[0]["position"] == 50
    assert "malformed JSON" in errors[0]["message"] and "line 2 column 38" in errors[0]["message"]

    cases = {
        "record.colour": (lambda r: r.update(colour="blue"), "is not a field of PermitApplication"),
        "record.applicant_name": (lambda r: r.pop("applicant_name"), "is missing"),
        "record.sla_days": (lambda r: r.update(sla_days="three"), "'three' is not a whole number"),
        "record.status": (lambda r: r.update(status="PENDING"), "'PENDING' is not one of SUBMITTED, VERIFIED"),
        "record.village_code": (lambda r: r.update(village_code="35.22.99.9999"), "unknown village code"),
    }
    for field, (spoil, message) in cases.items():
        bad = item()
        spoil(bad["record"])
        errors = only_error(push.post(bad), 422)
        assert errors == [{"index": 0, "field": field, "message": errors[0]["message"]}], errors
        assert message in errors[0]["message"], errors
    no_time = item()
    del no_time["changed_at"]
    errors = only_error(push.post([no_time]), 422)
    assert [(e["index"], e["field"]) for e in errors] == [(0, "changed_at")]

    # All or nothing: two good records and a bad one in one request store nothing.
    mixed = [item(), item(), item()]
    mixed[2]["record"]["status"] = "PENDING"
    mixed[2]["record"]["fee"] = "a lot"
    errors = only_error(push.post(mixed), 422)
    assert sorted((e["index"], e["field"]) for e in errors) == [(2, "record.fee"), (2, "record.status")]

    errors = only_error(push.post(item(), path="no_such_entity"), 404)
    assert "unknown entity 'no_such_entity'" in errors[0]["message"] and ENTITY in errors[0]["message"]

    # A replay: the same body (no position given) twice gives the same event ids and is stored once.
    replayed = fresh_items(settings, 1, start_seq=300_000)
    first, second = push.post(replayed), push.post(replayed)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["events"] == second.json()["events"]
    position = first.json()["events"][0]["position"]
    assert position.startswith("push-")

    # Kafka holds exactly the accepted events (40 + delete + replay twice): refused requests emitted nothing.
    assert cdc_messages(settings) == 40 + 1 + 2
    expected = 40 + 1 + 1
    push.wait_stored(f"SELECT count() FROM {TABLE} FINAL", expected, f"{expected} rows in {TABLE}")
    assert push.stored(f"SELECT uniqExact(event_id) FROM {TABLE}") == expected
    assert push.stored(keys_sql(refused)) == 0
    replay_key = replayed[0]["record"]["application_id"]
    assert push.stored(f"SELECT count() FROM {TABLE} FINAL WHERE entity_key = '{replay_key}'") == 1
    row = query(
        push.port,
        f"SELECT source_position, toUnixTimestamp64Milli(ts_source), op FROM {TABLE} FINAL "
        f"WHERE entity_key = '{replay_key}'",
    ).split()
    changed_at = datetime.fromisoformat(replayed[0]["changed_at"]).astimezone(UTC)
    assert row == [position, str(int(changed_at.timestamp() * 1000)), "c"]
    # Positions given by the sender are kept; the delete is stored as one.
    assert push.stored(f"SELECT count() FROM {TABLE} FINAL WHERE source_position = '{changes[0].position}'") == 1
    assert push.stored(f"SELECT count() FROM {TABLE} FINAL WHERE is_deleted AND entity_key = '{deleted.key}'") == 1
    assert push.stored(f"SELECT count() FROM {TABLE}_current WHERE entity_key = '{deleted.key}'") == 0
    assert push.stored(f"SELECT count() FROM {TABLE}_current") == len(latest)  # one deleted, the replayed added

    # An orderly stop: the adapter exits promptly and cleanly on SIGTERM.
    assert push.adapter.stop() == 0


def test_hostile_bodies_get_4xx_naming_the_problem_and_good_items_around_them_are_stored(
    make_settings, stage_process, tmp_path
):
    from tests.producers.adapters.test_hostile_inputs import hostile_items, push_body

    settings = make_settings(catalog_dir=write_catalog(tmp_path / "catalog", max_body_bytes=4 * 1024 * 1024))
    bootstrap(settings)
    push = Pushing(settings, stage_process)
    goods = fresh_items(settings, 6, start_seq=700_000)
    accepted = 0

    def good(item: dict[str, Any]) -> None:
        nonlocal accepted
        resp = push.post(item)
        assert resp.status_code == 200, resp.text
        accepted += 1

    good(goods[0])
    # The pipeline is running before the hostile part: its start under load is not part of the wait below.
    push.wait_stored(keys_sql(goods[:1]), 1, "the first good item stored (pipeline running)", timeout=240)
    # Bodies that crashed or could crash the parser: each a 400 naming the problem.
    for body, message in (
        (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
        (b'{"op": "c", "record": {"applicant_name": "\xff\xfe"}}', "not UTF-8"),
        (b"3", "body must be"),
        (b'"text"', "body must be"),
        (b"null", "body must be"),
        (b"[]", "body must be"),
        (b"[NaN]", "NaN"),
    ):
        errors = only_error(push.post(body), 400)
        assert message in errors[0]["message"], errors
    good(goods[1])
    # Values: 422 with the field, and no personal data echoed in clear.
    nik = "3522019988776655"
    template = json.dumps(goods[2]).replace(goods[2]["record"]["applicant_nik"], nik)
    for field, spoil in (
        ("record.fee", lambda t: re.sub(r'"fee": "[^"]*"', '"fee": 1e400', t)),
        ("record.applicant_name", lambda t: re.sub(r'"applicant_name": "[^"]*"', '"applicant_name": "A\\\\ud800"', t)),
        ("record.applicant_nik", lambda t: t.replace(nik, nik * 5000)),
    ):
        errors = only_error(push.post(spoil(template).encode()), 422)
        assert [(e["index"], e["field"]) for e in errors] == [(0, field)], errors
        assert nik not in json.dumps(errors), errors
    # An event too large for Kafka (a body within max_body_bytes): 413 naming the item.
    big = json.loads(json.dumps(goods[3]))
    for name in ("applicant_name", "applicant_address", "business_name", "rejection_reason", "applicant_phone"):
        big["record"][name] = "\U0001f600" * 64_000
    errors = only_error(push.post(json.dumps(big, ensure_ascii=False).encode()), 413)
    assert errors[0]["index"] == 0 and "record too large" in errors[0]["message"], errors
    good(goods[4])

    # 300 generated hostile items, one request each: every one is a 2xx or a 4xx with its field.
    statuses: dict[int, int] = {}
    for item in hostile_items(300, seed=31):
        resp = push.post(push_body(item))
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        if resp.status_code == 200:
            accepted += resp.json()["accepted"]
            continue
        assert resp.status_code in (413, 422), (resp.status_code, resp.text)
        for e in resp.json()["errors"]:
            assert e["index"] == 0 and e["message"], e
    assert sum(statuses.values()) == 300 and statuses.get(422, 0) > 200, statuses
    good(goods[5])

    assert push.health()["status"] == "ok"
    assert cdc_messages(settings) == accepted  # nothing of a refused request was emitted
    push.wait_stored(keys_sql(goods[:2] + goods[4:]), 4, "the good items around the hostile ones")
    log = push.adapter.log_path.read_text(errors="replace")
    assert nik not in log and "Traceback" not in log
    assert push.adapter.stop() == 0


def test_2xx_only_after_kafka_acknowledged(make_settings, stage_process, local_stack, tmp_path):
    """Runs last: it stops the session's broker."""
    settings = make_settings(catalog_dir=write_catalog(tmp_path / "catalog", ack_timeout_seconds=240))
    bootstrap(settings)
    push = Pushing(settings, stage_process)
    warm = fresh_items(settings, 1, start_seq=400_000)
    assert push.post(warm).status_code == 200
    push.wait_stored(keys_sql(warm), 1, "the first push stored (pipeline running)")

    early, late = fresh_items(settings, 2, start_seq=500_000)
    answers: dict[str, Any] = {}

    def send_late() -> None:
        try:
            answers["late"] = push.post([late], timeout=300)
        except requests.RequestException as exc:
            answers["late"] = exc

    sender = threading.Thread(target=send_late, daemon=True)
    local_stack.stop_kafka()
    try:
        # While the broker is down a request gets no answer: the client's timeout expires first.
        with pytest.raises(requests.exceptions.ReadTimeout):
            push.post([early], timeout=(5, 6))
        sender.start()
        wait_for(lambda: push.health().get("pending") == 2, 30, "both requests' events queued", alive=(push.adapter,))
        sender.join(3)
        assert sender.is_alive() and "late" not in answers, answers
    finally:
        local_stack.restart_kafka()

    sender.join(240)
    assert not sender.is_alive()
    resp = answers["late"]
    assert isinstance(resp, requests.Response) and resp.status_code == 200, resp
    assert resp.json()["accepted"] == 1
    push.wait_stored(keys_sql([late]), 1, "the acknowledged record stored after Kafka came back", timeout=180)
    # The timed-out request's events were queued, not dropped; the client's retry is a recognised replay.
    retry = push.post([early], timeout=60)
    assert retry.status_code == 200, retry.text
    push.wait_stored(keys_sql([early]), 1, "the timed-out request's record stored once")
    assert push.stored(f"SELECT uniqExact(event_id) FROM {TABLE}") == 3
    assert push.stored(f"SELECT count() FROM {TABLE} FINAL") == 3


def test_the_push_endpoint_serves_https_when_given_a_certificate(make_settings, stage_process, tmp_path):
    ca, cert, key = make_certificates(tmp_path / "tls")
    catalog = write_catalog(tmp_path / "catalog", tls_cert_file=str(cert), tls_key_file=str(key))
    settings = make_settings(catalog_dir=catalog)
    bootstrap(settings)
    adapter = stage_process(settings, "adapters", "run", SYSTEM, **{TOKEN_ENV: TOKEN})
    url = str(wait_for(lambda: read_state(settings.run_dir).get(f"push_{SYSTEM}_url"), 60, "the push URL",
                       alive=(adapter,)))
    assert url.startswith("https://127.0.0.1:")
    item = fresh_items(settings, 1, start_seq=500_000)[0]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    resp = requests.post(f"{url}/v1/{ENTITY}", data=json.dumps([item]), headers=headers, verify=str(ca), timeout=60)
    assert resp.status_code == 200 and resp.json()["accepted"] == 1, resp.text
    with pytest.raises(requests.ConnectionError):  # plain HTTP on the TLS port gets no answer
        requests.post(url.replace("https://", "http://") + f"/v1/{ENTITY}", data=b"[]", headers=headers, timeout=10)
    with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust the CA refuses
        requests.get(f"{url}/health", timeout=10)


def test_a_certificate_without_its_key_is_a_config_error(make_settings, tmp_path, monkeypatch):
    _, cert, _ = make_certificates(tmp_path / "tls")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    settings = make_settings(catalog_dir=write_catalog(tmp_path / "catalog", tls_cert_file=str(cert)))
    with pytest.raises(ConfigError, match="tls_cert_file and tls_key_file go together"):
        build_adapter(settings, SYSTEM)
