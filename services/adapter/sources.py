"""Reading an agency's export into rows, each with the line it came from.

Every source (JSON Lines here, CSV through a mapping in :mod:`.csv_source`) yields
:class:`Row` items: the line number a clerk will look for, the record in the
adapter's JSON shape, and any problems found while reading it.  A line that cannot
be read is not fatal: it becomes a row with problems, like any other invalid
record, and reading goes on.

Streams (standard input) are read on a thread by :func:`rows_in_thread`, so the
event loop — and with it the Kafka producer — keeps running while the source
waits for its next line: a record is sent when it arrives, not when the stream ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from services.core.errors import FieldProblem

MAX_LINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Row:
    """One record of a source.  ``raw`` is None when nothing usable could be read."""

    line: int
    raw: Any | None
    problems: tuple[FieldProblem, ...] = ()
    text: str = ""

    @classmethod
    def unreadable(cls, line: int, message: str, text: str = "") -> Row:
        return cls(line, None, (FieldProblem("", message),), text)


def _decode(data: str | bytes, first: bool) -> str | None:
    if isinstance(data, str):
        return data
    if first and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_jsonl(stream: Iterable[str] | Iterable[bytes]) -> Iterator[Row]:
    """Rows of a JSON Lines stream (text or bytes); blank lines and ``#`` comments are skipped."""
    for n, data in enumerate(stream, start=1):
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        if size > MAX_LINE_BYTES:
            yield Row.unreadable(n, f"record is larger than {MAX_LINE_BYTES // 1024} KiB", _preview(data))
            continue
        text = _decode(data, n == 1)
        if text is None:
            yield Row.unreadable(n, "line is not valid UTF-8", _preview(data))
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            yield Row(n, json.loads(stripped), text=stripped)
        except json.JSONDecodeError as exc:
            yield Row.unreadable(n, f"malformed JSON: {exc.msg} at column {exc.colno}", stripped)


def _preview(data: str | bytes) -> str:
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return data.strip()[:200]


_END = object()


async def rows_in_thread(make_rows: Callable[[], Iterator[Row]], *, buffer: int = 1000) -> AsyncIterator[Row]:
    """Iterate a blocking row source on a daemon thread, yielding each row as it is read.

    The bounded queue is the back-pressure: when the publisher falls behind, the
    reading thread waits.  An exception in the source is raised here.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=buffer)
    stopped = threading.Event()

    def put(item: object) -> None:
        if stopped.is_set():
            return
        coro = queue.put(item)
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # the loop is gone: nobody is reading any more
            coro.close()
            return
        while not stopped.is_set():
            try:
                fut.result(timeout=0.5)
                return
            except TimeoutError:
                continue
        fut.cancel()

    def pump() -> None:
        try:
            for row in make_rows():
                if stopped.is_set():
                    return
                put(row)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading coroutine
            put(exc)
        else:
            put(_END)

    threading.Thread(target=pump, name="concord-source", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Row)
            yield item
    finally:
        stopped.set()


def is_csv(path: str) -> bool:
    return path.lower().endswith(".csv")
