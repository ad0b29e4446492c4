"""Unit tests of the change-event contract: ids, pseudonymisation, envelope, payload rules, cleaning."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import itertools
import json
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from contract.codec import UndecodableMessage, decode, encode, schema_id_of
from contract.reference import load_regions, villages
from contract.rules import (
    PayloadRules,
    Rejected,
    clean_event,
    compose_envelope,
    event_id,
    load_envelope_template,
    pseudonymise,
)
from producers.emitter import Change, envelope_for
from simulators.licensing import LicensingOffice
from tests.fakes import FakeRegistry

SCHEMAS = PROJECT_ROOT / "schemas"
REGIONS_CSV = PROJECT_ROOT / "data" / "bojonegoro_regions.csv"
PAYLOAD = json.loads((SCHEMAS / "licensing" / "permit_application.avsc").read_text())
REGIONS = load_regions(REGIONS_CSV)
VILLAGES = villages(REGIONS)
ENTITY = next(e for e in load_catalog(PROJECT_ROOT / "catalog", SCHEMAS).entities if e.name == "permit_application")
RULES = PayloadRules.from_schema(PAYLOAD)
CLEAN_PARSED = fastavro.parse_schema(RULES.clean_schema())
SECRET = b"unit-test-key"
PII = {"applicant_nik", "applicant_name", "applicant_phone", "applicant_address"}
NO_NUL = st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=20)


def value_schema() -> dict[str, Any]:
    return compose_envelope(load_envelope_template(SCHEMAS), PAYLOAD, ENTITY.name)


def envelope(change: Change, now: datetime | None = None) -> dict[str, Any]:
    """The envelope the emitter builds (producers.emitter.envelope_for)."""
    return envelope_for(ENTITY, change, now=now)


def to_millis(value: Any) -> Any:
    """What Avro timestamp-millis keeps of a value."""
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {k: to_millis(v) for k, v in value.items()}
    return value


def changes(seed: int = 1, n: int = 50, **kwargs: Any) -> list[Change]:
    return list(itertools.islice(LicensingOffice(VILLAGES, seed=seed, **kwargs).changes(), n))


def first_event(**after: Any) -> dict[str, Any]:
    change = changes(n=1)[0]
    change.after.update(after)
    return envelope(change)


def clean(event: dict[str, Any]) -> dict[str, Any]:
    return clean_event(event, RULES, REGIONS, SECRET, ENTITY.key)


# -- event ids and pseudonyms --------------------------------------------------------------------


def test_event_id_is_deterministic():
    assert event_id("sys", "ent", "K-1", "000000000001") == event_id("sys", "ent", "K-1", "000000000001")
    assert len(event_id("sys", "ent", "K-1", "1")) == 32


@given(a=st.tuples(NO_NUL, NO_NUL, NO_NUL, NO_NUL), b=st.tuples(NO_NUL, NO_NUL, NO_NUL, NO_NUL))
def test_event_id_differs_for_different_positions_or_keys(a, b):
    if a != b:
        assert event_id(*a) != event_id(*b)


def test_event_id_separates_parts():
    assert event_id("s", "e", "k1", "2") != event_id("s", "e", "k", "12")


@given(secret=st.binary(min_size=1, max_size=32), value=st.text(max_size=40))
def test_pseudonymise_is_stable_and_never_the_clear_value(secret, value):
    assert pseudonymise(secret, value) == pseudonymise(secret, value)
    assert pseudonymise(secret, value) != value


@given(value=st.text(min_size=1, max_size=40))
def test_pseudonymise_depends_on_the_key(value):
    assert pseudonymise(b"key-one", value) != pseudonymise(b"key-two", value)


# -- envelope ------------------------------------------------------------------------------------


def test_envelope_round_trips_licensing_changes_through_fastavro():
    registry = FakeRegistry()
    schema_id = registry.add(value_schema())
    parsed = registry.schemas[schema_id][1]
    batch = changes(seed=7, n=200)
    assert {c.op for c in batch} == {"c", "u"}
    for change in batch:
        event = envelope(change)
        data = encode(schema_id, parsed, event)
        assert data[0] == 0 and schema_id_of(data) == schema_id
        got_id, decoded = decode(registry, data)
        assert got_id == schema_id
        assert decoded == to_millis(event)


def test_composed_envelope_defines_the_payload_once_and_names_it():
    schema = value_schema()
    assert schema["name"] == "PermitApplicationChange"
    types = {f["name"]: f["type"] for f in schema["fields"]}
    assert types["before"][1]["name"] == "PermitApplication"
    assert types["after"] == ["null", "id.go.bojonegoro.licensing.PermitApplication"]
    fastavro.parse_schema(schema)


@pytest.mark.parametrize("data", [None, b"", b"not avro", b"\x00\x00\x00"])
def test_schema_id_of_rejects_unframed_bytes(data):
    with pytest.raises(UndecodableMessage, match="not Confluent-framed"):
        schema_id_of(data)


def test_decode_rejects_truncated_body():
    registry = FakeRegistry()
    schema_id = registry.add(value_schema())
    data = encode(schema_id, registry.schemas[schema_id][1], first_event())
    with pytest.raises(UndecodableMessage, match=f"does not match schema id {schema_id}"):
        decode(registry, data[: len(data) // 2])


@pytest.mark.parametrize("extra", [b"\x00", b"\x02ab", b"x" * 100])
def test_decode_rejects_trailing_bytes_after_the_body(extra):
    registry = FakeRegistry()
    schema_id = registry.add(value_schema())
    data = encode(schema_id, registry.schemas[schema_id][1], first_event())
    assert decode(registry, data)[1]["event_id"]
    with pytest.raises(UndecodableMessage, match=f"{len(extra)} trailing byte\\(s\\) after the record"):
        decode(registry, data + extra)


# -- payload rules -------------------------------------------------------------------------------


def test_rules_read_from_the_licensing_schema():
    assert RULES.pii == PII
    assert [(r.name, r.level, r.nullable) for r in RULES.regions] == [("village_code", "village", False)]
    assert RULES.minimums == {"investment_value": 0, "fee": 0, "sla_days": 1}
    assert "application_id" in RULES.required and "applicant_phone" not in RULES.required
    assert RULES.version == 1


def test_clean_schema_is_valid_avro_with_string_pii_and_enrichment():
    schema = RULES.clean_schema()
    fastavro.parse_schema(schema)
    types = {f["name"]: f["type"] for f in schema["fields"]}
    assert [types[n] for n in sorted(PII)] == ["string", "string", "string", ["null", "string"]]
    names = [f["name"] for f in schema["fields"]]
    i = names.index("village_code")
    assert names[i + 1 : i + 4] == ["village_name", "kecamatan_code", "kecamatan_name"]
    assert names[:3] == ["event_id", "op", "entity_key"]


# -- clean_event ---------------------------------------------------------------------------------


def _last_village_row() -> dict[str, str]:
    with REGIONS_CSV.open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["level"] in ("desa", "kelurahan")][-1]


LAST = _last_village_row()


@pytest.mark.parametrize(
    ("code", "village", "kecamatan_code", "kecamatan"),
    [
        ("35.22.01.2001", "Luwihaji", "35.22.01", "Ngraho"),
        ("35.22.15.1001", "Jetak", "35.22.15", "Bojonegoro"),
        (LAST["code"], LAST["name"], LAST["parent_code"], None),
    ],
)
def test_clean_event_enriches_village_code(code, village, kecamatan_code, kecamatan):
    record = clean(first_event(village_code=code))
    assert record["village_code"] == code
    assert record["village_name"] == village
    assert record["kecamatan_code"] == kecamatan_code
    if kecamatan is None:  # the last CSV row: look its kecamatan up in the file itself
        with REGIONS_CSV.open(newline="") as fh:
            kecamatan = next(r["name"] for r in csv.DictReader(fh) if r["code"] == kecamatan_code)
    assert record["kecamatan_name"] == kecamatan


def test_clean_event_builds_the_clean_record():
    event = first_event()
    record = clean(event)
    after = event["after"]
    assert record["event_id"] == event["event_id"]
    assert record["entity_key"] == after["application_id"]
    assert (record["op"], record["is_deleted"]) == ("c", False)
    assert record["source_system"] == "sim-licensing" and record["source_entity"] == "permit_application"
    assert record["fee"] == after["fee"] and record["status"] == "SUBMITTED"
    for name in PII:
        expected = None if after[name] is None else pseudonymise(SECRET, after[name])
        assert record[name] == expected


def test_pseudonymised_values_do_not_contain_the_clear_nik_or_name():
    event = first_event(applicant_phone="081234567890")
    record = clean(event)
    text = json.dumps(record, default=str)
    for name in PII:
        assert event["after"][name] not in text
    assert event["after"]["applicant_nik"][:6] not in record["applicant_nik"]


def test_delete_takes_the_state_from_before():
    state = first_event()["after"]
    event = envelope(Change("d", state["application_id"], "000000000009", datetime.now(UTC), before=state))
    record = clean(event)
    assert record["is_deleted"] is True and record["op"] == "d"
    assert record["village_code"] == state["village_code"]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda e: e["after"].update(village_code="35.22.99.9999"),
            "field 'village_code' value '35.22.99.9999': unknown village",
        ),
        (lambda e: e["after"].update(village_code="35.22.01"), "unknown village code"),  # a kecamatan, not a village
        (lambda e: e["after"].update(fee=Decimal("-1000.00")), "field 'fee' value -1000.00: below the minimum 0"),
        (lambda e: e["after"].update(sla_days=0), "field 'sla_days' value 0: below the minimum 1"),
        (lambda e: e.update(op="d"), "field 'before' is empty for op 'd'"),
        (lambda e: e.update(op="x"), "field 'op' value 'x'"),
        (lambda e: e.update(after=None), "field 'after' is empty for op 'c'"),
        (lambda e: e["after"].update(application_id=""), "key field 'application_id' is empty"),
        (lambda e: e["after"].update(application_id=None), "key field 'application_id' is empty"),
        (lambda e: e["after"].update(applicant_name=None), "field 'applicant_name' is missing"),
        (lambda e: e.update(event_id=""), "field 'event_id' is empty"),
    ],
)
def test_clean_event_rejects_invalid_events(mutate, reason):
    event = first_event()
    mutate(event)
    with pytest.raises(Rejected) as info:
        clean(event)
    assert reason in str(info.value)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_every_simulated_change_cleans_and_encodes_with_the_clean_schema(seed):
    registry = FakeRegistry()
    schema_id = registry.add(value_schema())
    parsed = registry.schemas[schema_id][1]
    for change in changes(seed=seed, n=40):
        _, event = decode(registry, encode(schema_id, parsed, envelope(change)))
        record = clean(event)
        data = encode(2, CLEAN_PARSED, record)
        back = fastavro.schemaless_reader(io.BytesIO(data[5:]), CLEAN_PARSED, None)
        assert back["entity_key"] == change.key
        assert back["applicant_nik"] == pseudonymise(SECRET, change.after["applicant_nik"])
        assert back["village_name"] == REGIONS[change.after["village_code"]]["name"]


def test_enrichment_field_clash_is_a_clear_error():
    from backbone.errors import InputError
    from contract.rules import PayloadRules

    schema = {
        "type": "record",
        "name": "Clash",
        "fields": [
            {"name": "village_code", "type": "string", "region": "village"},
            {"name": "kecamatan_name", "type": "string"},
        ],
    }
    with pytest.raises(InputError, match="kecamatan_name"):
        PayloadRules.from_schema(schema).clean_schema()


def _licensing_rules():
    import json as _json

    from backbone.settings import PROJECT_ROOT
    from contract.rules import PayloadRules

    return PayloadRules.from_schema(
        _json.loads((PROJECT_ROOT / "schemas/licensing/permit_application.avsc").read_text())
    )


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ("SUBMITTED", "VERIFIED", True),
        ("VERIFIED", "APPROVED", True),
        ("SUBMITTED", "SUBMITTED", True),
        ("SUBMITTED", "APPROVED", False),
        ("APPROVED", "SUBMITTED", False),
        ("REJECTED", "VERIFIED", False),
    ],
)
def test_lifecycle_transitions_follow_the_schema(old, new, ok):
    from contract.rules import Rejected, clean_event
    from simulators.licensing import LicensingOffice

    rules = _licensing_rules()
    change = next(LicensingOffice(["35.22.01.2001"], seed=1).changes())
    before = dict(change.after, status=old)
    after = dict(change.after, status=new)
    event = {
        "event_id": "e",
        "op": "u",
        "key": change.key,
        "before": before,
        "after": after,
        "source": {"system": "s", "department": "d", "entity": "e", "position": "1"},
        "ts_source": 0,
        "ts_emitted": 0,
    }
    regions = {
        "35.22.01.2001": {"name": "V", "level": "village", "parent": "35.22.01"},
        "35.22.01": {"name": "K", "level": "kecamatan", "parent": "35.22"},
    }
    if ok:
        assert clean_event(event, rules, regions, b"k", ("application_id",))["status"] == new
    else:
        with pytest.raises(Rejected, match=f"transition '{old}' -> '{new}' is not allowed"):
            clean_event(event, rules, regions, b"k", ("application_id",))


# -- hostile values (issue 8) ---------------------------------------------------------------------

PERSON = {
    "type": "record",
    "name": "Person",
    "fields": [
        {"name": "nik", "type": "string", "pii": True},
        {"name": "score", "type": "int", "pii": True, "min": 0},
        {"name": "home", "type": "string", "pii": True, "region": "kecamatan"},
        {"name": "phase", "type": "string", "pii": True, "initial": ["NEW"], "transitions": {"NEW": ["OLD"]}},
        {"name": "seen_at", "type": {"type": "long", "logicalType": "timestamp-millis"}, "pii": True},
    ],
}
PERSON_RULES = PayloadRules.from_schema(PERSON)
PERSON_REGIONS = {"35.22.01": {"name": "K", "level": "kecamatan", "parent": "35.22"}}


def person_event(op: str = "c", before: dict[str, Any] | None = None, **after: Any) -> dict[str, Any]:
    state = {"nik": "3522010101010001", "score": 5, "home": "35.22.01", "phase": "NEW", "seen_at": 1_000}
    return {
        "event_id": "e",
        "op": op,
        "key": "3522010101010001",
        "before": before,
        "after": {**state, **after},
        "source": {"system": "s", "department": "d", "entity": "person", "position": "1"},
        "ts_source": 1_000,
        "ts_emitted": 1_000,
    }


@pytest.mark.parametrize(
    ("event", "clear"),
    [
        (person_event(score=-7), "-7"),
        (person_event(home="35.22.99"), "35.22.99"),
        (person_event(phase="SECRETPHASE"), "SECRETPHASE"),
        (person_event("u", {"nik": "1", "score": 1, "home": "35.22.01", "phase": "OLD", "seen_at": 1}), "OLD"),
        (person_event(seen_at=-123456), "-123456"),
    ],
)
def test_reasons_show_personal_data_only_pseudonymised(event, clear):
    with pytest.raises(Rejected) as info:
        clean_event(event, PERSON_RULES, PERSON_REGIONS, SECRET, ("nik",))
    assert clear not in str(info.value) and "<pseudonym " in str(info.value), str(info.value)


def test_message_key_of_a_personal_key_is_pseudonymised_in_the_reason():
    from contract.rules import check_message_key

    record = clean_event(person_event(), PERSON_RULES, PERSON_REGIONS, SECRET, ("nik",))
    check_message_key(record, b"3522010101010001", PERSON_RULES, SECRET, ("nik",))  # the same key: fine
    with pytest.raises(Rejected) as info:
        check_message_key(record, b"3522019999999999", PERSON_RULES, SECRET, ("nik",))
    assert "3522019999999999" not in str(info.value) and "3522010101010001" not in str(info.value)
    assert pseudonymise(SECRET, "3522019999999999") in str(info.value)


@pytest.mark.parametrize(
    ("ts_source", "ok"), [(0, True), (-1, False), (253402214400000, False), (1_700_000_000_000, True)]
)
def test_ts_source_window_on_plain_millis(ts_source, ok):
    event = {**first_event(), "ts_source": ts_source}
    if ok:
        assert clean(event)["ts_source"] == ts_source
    else:
        with pytest.raises(Rejected, match=f"field 'ts_source' value {ts_source}: outside the plausible window"):
            clean(event)


def test_update_without_before_passes_without_the_lifecycle_check():
    event = {**first_event(), "op": "u", "before": None}
    assert clean(event)["op"] == "u"
    plain = PayloadRules.from_schema({**PAYLOAD, "fields": [f for f in PAYLOAD["fields"] if f["name"] != "status"]})
    assert clean_event(event, plain, REGIONS, SECRET, ENTITY.key)["op"] == "u"


@pytest.mark.parametrize(
    ("written", "same_as"),
    [
        (" 3522 0112 1990 0001 ", "3522011219900001"),
        ("３５２２０１１２１９９００００１", "3522011219900001"),  # fullwidth digits
        ("٣٥٢٢٠١١٢١٩٩٠٠٠٠١", "3522011219900001"),  # Arabic-Indic digits
        ("3522-0112-1990-0001", "3522011219900001"),
        ("+62 812-3456-7890", "0812 3456 7890"),
        ("SITI  Aminah ", "siti aminah"),
    ],
)
def test_one_person_gets_one_pseudonym_however_a_system_wrote_the_value(written, same_as):
    secret = b"unit-test-key"
    assert pseudonymise(secret, written) == pseudonymise(secret, same_as)
    assert pseudonymise(secret, written) != pseudonymise(secret, "3522011219900002")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="0123456789 +-.()/\t", max_size=20))
def test_pseudonyms_are_those_of_the_keyed_hash_of_the_full_normal_form(text):
    # The ASCII shortcut and the per-scope keyed HMAC give what the definition gives for any text.
    full = unicodedata.normalize("NFKC", text)
    full = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in full)
    full = " ".join(full.split()).casefold()
    compact = re.sub(r"[\s\-.()/]+", "", full)
    if compact.lstrip("+").isdigit():
        full = "0" + compact[3:] if compact.startswith("+62") else compact.lstrip("+")
    secret = b"unit-test-key"
    assert pseudonymise(secret, text) == hmac.new(secret, full.encode(), hashlib.sha256).hexdigest()[:32]
