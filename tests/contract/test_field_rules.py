"""Data-quality rules declared on payload fields (contract/field_rules.py) as clean_event applies them:
each kind, plain (reject) or with a severity (flag), its rule id and message; named patterns;
declarations that are wrong; the schemas of the repo."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from backbone.errors import InputError
from backbone.settings import PROJECT_ROOT
from contract.catalog import load_catalog
from contract.field_rules import NAMED_PATTERNS
from contract.rules import DQ_FLAGS, PayloadRules, Rejected, clean_event, pseudonymise

SECRET = b"unit-test-key"
NOW_MS = int(time.time() * 1000)
TS = {"type": "long", "logicalType": "timestamp-millis"}
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}


def schema(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Thing", "namespace": "t", "fields": [{"name": "id", "type": "string"}, *fields]}


def judge(rules: PayloadRules, **after: Any) -> dict[str, Any]:
    event = {
        "event_id": "e1",
        "op": "c",
        "key": "k1",
        "before": None,
        "after": {"id": "k1", **after},
        "source": {"system": "s", "department": "D", "entity": "thing", "position": "1"},
        "ts_source": NOW_MS,
        "ts_emitted": NOW_MS,
    }
    return clean_event(event, rules, {}, SECRET, ("id",))


def rejected(rules: PayloadRules, **after: Any) -> Rejected:
    with pytest.raises(Rejected) as info:
        judge(rules, **after)
    return info.value


RULES = PayloadRules.from_schema(
    schema(
        {"name": "month", "type": "int", "min": 1, "max": 12},
        {"name": "progress", "type": "double", "max": {"value": 100, "severity": "flag"}},
        {"name": "amount", "type": DECIMAL, "max": 1000},
        {"name": "nik", "type": ["null", "string"], "default": None, "pii": True, "pattern": "NIK"},
        {
            "name": "phone",
            "type": ["null", "string"],
            "default": None,
            "pattern": {"value": "PHONE_ID", "severity": "flag"},
        },
        {"name": "code", "type": ["null", "string"], "default": None, "pattern": "^[A-Z]{3}$"},
        {
            "name": "office",
            "type": ["null", "string"],
            "default": None,
            "one_of": {"value": ["A", "B"], "severity": "flag"},
        },
        {"name": "kind", "type": ["null", "string"], "default": None, "one_of": ["X", "Y"]},
        {"name": "beds", "type": "int"},
        {"name": "occupied", "type": "int", "compare": {"<=": "beds", "severity": "flag"}},
        {"name": "submitted_at", "type": TS},
        {"name": "decided_at", "type": ["null", TS], "default": None, "compare": {">=": "submitted_at"}},
        {"name": "note", "type": ["null", "string"], "default": None, "required": {"value": True, "severity": "flag"}},
    )
)
SUBMITTED = datetime(2026, 3, 2, tzinfo=UTC)
GOOD = {
    "month": 12,
    "progress": 100.0,
    "amount": Decimal("1000.00"),
    "nik": "3522011203900001",
    "phone": "+62 812-3456-7890",
    "code": "ABC",
    "office": "A",
    "kind": "X",
    "beds": 10,
    "occupied": 10,
    "submitted_at": SUBMITTED,
    "decided_at": SUBMITTED,
    "note": "n",
}


def test_a_record_within_every_rule_has_no_flags():
    assert judge(RULES, **GOOD)[DQ_FLAGS] == []
    assert judge(RULES, **{**GOOD, "nik": None, "phone": None, "code": None, "decided_at": None})[DQ_FLAGS] == []


@pytest.mark.parametrize(
    ("change", "rule", "message"),
    [
        ({"month": 13}, "month:max", "field 'month' value 13: above the maximum 12"),
        ({"month": 0}, "month:min", "field 'month' value 0: below the minimum 1"),
        ({"amount": Decimal("1000.01")}, "amount:max", "field 'amount' value 1000.01: above the maximum 1000"),
        ({"code": "abcd"}, "code:pattern", "field 'code' value 'abcd': does not match the pattern '^[A-Z]{3}$'"),
        ({"kind": "Z"}, "kind:one_of", "field 'kind' value 'Z': not one of X, Y"),
        (
            {"decided_at": SUBMITTED - timedelta(seconds=1)},
            "decided_at:compare",
            "field 'decided_at' value datetime.datetime(2026, 3, 1, 23, 59, 59, tzinfo=datetime.timezone.utc): "
            "not >= submitted_at (datetime.datetime(2026, 3, 2, 0, 0, tzinfo=datetime.timezone.utc)): "
            "must be not before it",
        ),
    ],
)
def test_a_plain_rule_rejects_with_its_rule_id_and_a_message_naming_field_value_and_rule(change, rule, message):
    error = rejected(RULES, **{**GOOD, **change})
    assert error.rule == rule and str(error) == message


def test_a_personal_value_is_only_pseudonymised_in_the_message():
    error = rejected(RULES, **{**GOOD, "nik": "352201120390000"})
    assert error.rule == "nik:pattern"
    assert str(error) == (
        f"field 'nik' value <pseudonym {pseudonymise(SECRET, '352201120390000')}>: "
        "not a NIK (national identity number: 16 digits)"
    )


def test_flag_rules_keep_the_record_and_list_every_failed_rule_once():
    notes: list[str] = []
    flagged = {**GOOD, "progress": 140.0, "phone": "12345", "office": "Q", "occupied": 11, "note": None}
    event = {
        "event_id": "e1",
        "op": "c",
        "key": "k1",
        "before": None,
        "after": {"id": "k1", **flagged},
        "source": {"system": "s", "department": "D", "entity": "thing", "position": "1"},
        "ts_source": NOW_MS,
        "ts_emitted": NOW_MS,
    }
    record = clean_event(event, RULES, {}, SECRET, ("id",), notes=notes)
    assert record[DQ_FLAGS] == ["progress:max", "phone:pattern", "office:one_of", "occupied:compare", "note:required"]
    assert "field 'occupied' value 11: not <= beds (10): must be at most it" in notes
    assert record["nik"] == pseudonymise(SECRET, GOOD["nik"])
    fastavro.parse_schema(RULES.clean_schema())  # dq_flags is a valid field of the clean record


def test_a_reject_rule_wins_over_flags():
    assert rejected(RULES, **{**GOOD, "progress": 140.0, "month": 13}).rule == "month:max"


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("NIK", ["3522011203900001"], ["352201120390000", "35220112039000012", "3522O11203900001"]),
        ("NPSN", ["20500001"], ["2050001", "2050000x"]),
        ("PHONE_ID", ["081234567890", "+6281234567890", "0812-3456-7890", "(0353) 881234"], ["12345", "0812345x7890"]),
        ("ACCOUNT_CODE", ["5.1.02.01.01.0024", "5.1.02", "4"], ["5.1.02.01.01.24", "5-1-02", "0.1"]),
    ],
)
def test_named_patterns(name, good, bad):
    rules = PayloadRules.from_schema(schema({"name": "v", "type": "string", "pattern": name}))
    for value in good:
        assert judge(rules, v=value)[DQ_FLAGS] == [], value
    for value in bad:
        assert rejected(rules, v=value).rule == "v:pattern", value
    assert name in NAMED_PATTERNS


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        ({"name": "v", "type": "int", "max": {"value": 3, "severity": "warn"}}, "severity 'warn' is not one of"),
        ({"name": "v", "type": "int", "max": "ten"}, "max 'ten' is not a number"),
        ({"name": "v", "type": "string", "pattern": "[unclosed"}, "is not a regular expression"),
        ({"name": "v", "type": "int", "compare": {"<=": "nothing"}}, "compare with 'nothing', which is not a field"),
        ({"name": "v", "type": "int", "compare": {"~": "id"}}, "compare operator '~' is not one of"),
        ({"name": "v", "type": "string", "one_of": []}, "one_of must be a non-empty list"),
        ({"name": "v", "type": "string", "pii": True, "references": {"entity": "x"}}, "a personal field cannot"),
    ],
)
def test_a_wrong_declaration_is_a_clear_error_naming_schema_and_field(field, problem):
    with pytest.raises(InputError, match="schema Thing: field 'v'") as info:
        PayloadRules.from_schema(schema(field))
    assert problem in str(info.value)


def test_with_extended_rules_off_only_the_original_rules_apply():
    rules = PayloadRules.from_schema(RULES.schema, extended=False)
    assert [r.rule_id for r in rules.checks] == ["month:min"]
    assert "note" in rules.required and rules.references == ()
    assert judge(rules, **{**GOOD, "month": 13, "progress": 140.0})[DQ_FLAGS] == []


def test_existing_rules_name_stable_rule_ids():
    assert rejected(RULES, **{**GOOD, "beds": None}).rule == "beds:required"
    with pytest.raises(Rejected) as info:
        clean_event({"op": "x"}, RULES, {}, SECRET, ("id",))
    assert info.value.rule == "envelope:op"


def test_every_schema_of_the_repo_declares_valid_rules_with_a_doc_and_a_clean_dq_flags_field():
    catalog = load_catalog(PROJECT_ROOT / "catalog", PROJECT_ROOT / "schemas")
    kinds: set[str] = set()
    for entity in catalog.entities:
        payload = entity.payload_schema()
        rules = PayloadRules.from_schema(payload)
        kinds |= {r.kind for r in rules.checks} | {"ref" for _ in rules.references}
        for rule in rules.checks:  # a steward reads the rule in the field's doc
            (f,) = [f for f in payload["fields"] if f["name"] == rule.field]
            assert f.get("doc"), rule.rule_id
        assert rules.clean_schema()["fields"][-1]["name"] == DQ_FLAGS
    assert {"min", "max", "pattern", "one_of", "compare", "ref"} <= kinds
