"""The processor's offset ledger: commits never pass an offset that was not processed."""

from __future__ import annotations

from stream_processors.offsets import OffsetLedger

TP = ("cdc.licensing.permit_application", 1)


def ledger(start: int = 0) -> OffsetLedger:
    return OffsetLedger(lambda tp: start)


def test_contiguous_offsets_are_committed_as_the_next_offset():
    book = ledger()
    assert book.observe([(TP, 0), (TP, 1), (TP, 2)]) == {}
    assert book.committable() == {TP: 3}
    assert book.committable() == {}  # nothing new


def test_a_skipped_offset_is_never_committed_past_and_is_re_read():
    book = ledger()
    book.observe([(TP, 0), (TP, 1)])
    assert book.observe([(TP, 3), (TP, 4)]) == {TP: 2}  # offset 2 never arrived: seek back to it
    assert book.committable() == {TP: 2}
    assert book.gaps == 1
    # After the seek the consumer delivers 2, 3, 4 again: the commit moves on.
    assert book.observe([(TP, 2), (TP, 3), (TP, 4)]) == {}
    assert book.committable() == {TP: 5}


def test_re_reads_below_the_ledger_are_ignored():
    book = ledger(start=10)
    book.observe([(TP, 10), (TP, 11)])
    assert book.observe([(TP, 10), (TP, 11), (TP, 12)]) == {}
    assert book.committable() == {TP: 13}


def test_first_event_is_checked_against_the_committed_offset():
    book = ledger(start=5)
    assert book.observe([(TP, 7)]) == {TP: 5}  # 5 and 6 were committed-but-unseen: re-read


def test_forget_starts_again_from_the_committed_offset():
    starts = {TP: 0}
    book = OffsetLedger(lambda tp: starts[tp])
    book.observe([(TP, 0), (TP, 1)])
    book.committable()
    book.forget([TP])
    starts[TP] = 40  # another worker got further while the partition was away
    assert book.observe([(TP, 40)]) == {}
    assert book.committable() == {TP: 41}
