"""What the processor and the KPI worker share of Faust: a seek back runs on the consumer's thread."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from stream_processors.faust_app import seek


class ConsumerThread:
    """Faust's consumer thread as `seek` uses it: `call_thread` runs a method on that thread."""

    def __init__(self) -> None:
        self.through_thread: list[str] = []
        self.seeks: list[tuple[TP, int]] = []

    async def call_thread(self, method, *args):  # noqa: ANN001, ANN201
        self.through_thread.append(method.__name__)
        return method(*args)

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_a_seek_back_is_handed_to_the_consumer_thread_and_resets_the_read_offset():
    async def refuse(*_args):  # noqa: ANN002, ANN202 - Faust's own seek calls aiokafka from the loop's thread
        raise AssertionError("seek called on the event loop's thread")

    thread = ConsumerThread()
    tp = TP("cdc.licensing.permit_application", 2)
    consumer = SimpleNamespace(_thread=thread, _read_offset={tp: 40}, seek=refuse)
    asyncio.run(seek(SimpleNamespace(consumer=consumer), tp, 11))
    assert thread.through_thread == ["seek"]
    assert thread.seeks == [(tp, 11)]
    assert consumer._read_offset[tp] == 11
