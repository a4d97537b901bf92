"""Streams (``concord publish -``): a record is sent when its line arrives, not when
the stream ends, and a stop request ends the stream cleanly."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.adapter.ledger import Ledger
from services.adapter.publish import Report, publish_rows
from services.adapter.sources import Row, read_jsonl, rows_in_thread
from tests.unit.adapter_fakes import TOPIC, FakeProducer, jsonl, publisher, records
from tests.unit.factories import real_world

pytestmark = pytest.mark.unit


async def _until(check: Callable[[], bool], limit: float = 2.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < limit, "not within the time limit"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _pipe_rows(fd: int) -> Iterator[Row]:
    with os.fdopen(fd, "rb", buffering=0) as raw:
        yield from read_jsonl(raw)


async def test_lines_are_published_as_they_arrive(tmp_path: Path) -> None:
    r, w = os.pipe()
    lines = jsonl(records(3))
    producer = FakeProducer()
    report = Report(file="-")
    with Ledger(tmp_path / "court.sqlite", topic=TOPIC) as ledger:
        async with publisher(producer, ledger) as pub:
            task = asyncio.create_task(
                publish_rows(rows_in_thread(lambda: _pipe_rows(r)), publisher=pub, world=real_world(), report=report)
            )
            for n, line in enumerate(lines, start=1):
                os.write(w, line.encode())

                def sent(n: int = n) -> bool:
                    return len(producer.sent) == n

                took = await _until(sent)
                assert took < 1.0
            # acknowledged records reach the ledger while the stream is still open
            await _until(lambda: ledger.count() == 3)
            os.close(w)
            await asyncio.wait_for(task, 5)
    assert (report.published, report.rejected) == (3, [])


async def test_stop_ends_a_waiting_stream_and_keeps_what_was_read(tmp_path: Path) -> None:
    r, w = os.pipe()
    producer = FakeProducer()
    report = Report(file="-")
    stop = asyncio.Event()
    with Ledger(tmp_path / "court.sqlite", topic=TOPIC) as ledger:
        async with publisher(producer, ledger) as pub:
            task = asyncio.create_task(
                publish_rows(
                    rows_in_thread(lambda: _pipe_rows(r)), publisher=pub, world=real_world(), report=report, stop=stop
                )
            )
            os.write(w, jsonl(records(1))[0].encode())
            await _until(lambda: len(producer.sent) == 1)
            stop.set()  # no more input is coming, and the stream is still open
            await asyncio.wait_for(task, 2)
        assert ledger.count() == 1
    os.close(w)
    assert report.interrupted and report.published == 1


async def test_errors_in_the_reading_thread_reach_the_publisher() -> None:
    def broken() -> Iterator[Row]:
        yield Row(1, {})
        raise OSError("disk gone")

    rows = rows_in_thread(broken)
    assert (await anext(rows)).line == 1  # the rows read before the error arrive first
    with pytest.raises(OSError, match="disk gone"):
        await anext(rows)
