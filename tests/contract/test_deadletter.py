"""The dead-letter record: sealed original bytes, reason and origin in headers, a stable id per input."""

from __future__ import annotations

from backbone.sealing import Sealer
from contract.deadletter import RawEvent, dead_letter, dead_letter_headers, header, input_letter_id

SEALER = Sealer("test")


def test_a_dead_letter_seals_the_original_and_names_its_origin():
    event = RawEvent("cdc.health.visit", 3, 42, b"k", b"patient NIK 3522011201900001")
    out = dead_letter(event, "invalid: below the minimum", "processor", "dlq.processor", SEALER)
    assert SEALER.unseal(out.value) == event.value and b"3522011201900001" not in out.value
    assert header(out.headers, "source.id") == "cdc.health.visit:3:42"
    assert header(out.headers, "error.reason") == "invalid: below the minimum"
    assert header(out.headers, "missing") == ""


def test_inputs_without_a_position_get_ids_that_never_collapse():
    rows = [b"row one", b"row two", b"row three"]
    ids = {input_letter_id("sim-licensing:public.permit", row) for row in rows}
    assert len(ids) == 3
    assert input_letter_id("sim-licensing:public.permit", b"row one") in ids  # the same input again
    assert input_letter_id("sim-licensing:public.other", b"row one") not in ids
    headers = dead_letter_headers("adapter", "bad", "sim-licensing:public.permit", -1, -1, "abc")
    assert header(headers, "source.id") == "abc"
