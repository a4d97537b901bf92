"""Reading an agency's export into rows, each with the line it came from.

Every source (JSON Lines here, CSV through a mapping in :mod:`.csv_source`) yields
:class:`Row` items: the line number a clerk will look for, the record in the
adapter's JSON shape, and any problems found while reading it.  A line that cannot
be read is not fatal: it becomes a row with problems, like any other invalid
record, and reading goes on with the next line.  No byte sequence stops a reader.

Limits (:class:`ReadLimits`; ``--max-line-bytes``, ``--max-depth`` and
``--max-file-bytes`` on ``concord validate``, ``publish`` and ``adapter run``, or
``CONCORD_MAX_LINE_BYTES``, ``CONCORD_MAX_JSON_DEPTH``, ``CONCORD_MAX_FILE_BYTES``)::

    max_line_bytes  256 KiB  a longer line (a CSV record: all of its lines) is refused
                             without being held: it is skipped in bounded chunks
    max_depth       16       JSON nesting of objects and arrays (a record needs 6);
                             at most 200, the parser's own bound
    max_file_bytes  8 GiB    the drop folder refuses a larger file whole (``failed/``)

JSON is parsed by jiter (pydantic's own parser, in Rust) rather than the standard
library: it refuses duplicate keys (``{"version": 1, "version": 2}`` would otherwise
keep the last silently), bounds nesting without using Python's stack (the standard
library raises RecursionError on a line of 1,000 ``[``), accepts only strict JSON
(no ``NaN`` or ``Infinity``) and UTF-8 without lone surrogates, and is faster.
A line is also refused for a NUL byte or a byte order mark after the first line; a
UTF-8 byte order mark at the start of the file and CRLF line ends are accepted.

Streams (standard input) are read on a thread by :func:`rows_in_thread`, so the
event loop — and with it the Kafka producer — keeps running while the source
waits for its next line: a record is sent when it arrives, not when the stream ends.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

import jiter

from services.core.errors import ConfigError
from services.core.problems import Problem

PARSER_MAX_DEPTH = 200  # jiter's own nesting bound
PREVIEW = 200  # characters of an unreadable line kept for the rejects file
_SKIP_CHUNK = 1 << 20
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_UTF8_BOM = b"\xef\xbb\xbf"
_AT = re.compile(r"^(?P<what>.*) at line \d+ column (?P<col>\d+)$")


@dataclass(frozen=True)
class ReadLimits:
    """What a reader accepts; see the module docstring for the defaults and why."""

    max_line_bytes: int = 256 * 1024
    max_depth: int = 16
    max_file_bytes: int = 8 * 1024**3

    def __post_init__(self) -> None:
        if not 1024 <= self.max_line_bytes <= 64 * 1024 * 1024:
            raise ConfigError(f"max_line_bytes must be between 1 KiB and 64 MiB, not {self.max_line_bytes}")
        if not 1 <= self.max_depth <= PARSER_MAX_DEPTH:
            raise ConfigError(f"max_depth must be between 1 and {PARSER_MAX_DEPTH}, not {self.max_depth}")
        if self.max_file_bytes < 1:
            raise ConfigError(f"max_file_bytes must be positive, not {self.max_file_bytes}")


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True)
class Row:
    """One record of a source.  ``raw`` is None when nothing usable could be read."""

    line: int
    raw: Any | None
    problems: tuple[Problem, ...] = ()
    text: str = ""

    @classmethod
    def unreadable(cls, line: int, message: str, text: str = "", path: str = "") -> Row:
        return cls(line, None, (Problem.of(path, message),), text)


@dataclass(frozen=True)
class TooLong:
    """A line longer than the limit: how long it was and how it began (it was not kept)."""

    size: int
    head: bytes

    def reason(self, limit: int, what: str = "line") -> str:
        return f"{what} is {self.size:,} bytes, longer than the limit of {limit:,} (--max-line-bytes)"


def strip_line_end(data: bytes) -> bytes:
    if data.endswith(b"\n"):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    return data


def bounded_lines(stream: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | TooLong]]:
    """``(line number, line without its end)`` of a binary stream, never holding more than
    ``limit`` bytes of a line: a longer one is skipped in bounded chunks and reported as
    :class:`TooLong`.  Only ``\\n`` ends a line (and ``\\r\\n``)."""
    n = 0
    while True:
        data = stream.readline(limit + 2)  # room for the CRLF of a line of exactly ``limit``
        if not data:
            return
        n += 1
        if not data.endswith(b"\n") and len(data) == limit + 2:
            size = len(data)
            while True:
                rest = stream.readline(_SKIP_CHUNK)
                size += len(rest)
                if not rest or rest.endswith(b"\n"):
                    size -= len(rest) - len(strip_line_end(rest))  # the line end is not part of the line
                    break
            yield n, TooLong(size, data[:PREVIEW])
            continue
        line = strip_line_end(data)
        yield n, TooLong(len(line), line[:PREVIEW]) if len(line) > limit else line


def _lines(stream: IO[bytes] | Iterable[str] | Iterable[bytes], limit: int) -> Iterator[tuple[int, bytes | TooLong]]:
    if hasattr(stream, "readline"):  # a binary file or stream
        yield from bounded_lines(cast("IO[bytes]", stream), limit)
        return
    in_memory = cast("Iterable[str | bytes]", stream)  # lines already in memory (tests, callers' lists)
    for n, item in enumerate(in_memory, start=1):
        data = strip_line_end(item.encode("utf-8", "surrogatepass") if isinstance(item, str) else item)
        yield n, TooLong(len(data), data[:PREVIEW]) if len(data) > limit else data


def preview(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[:PREVIEW]


def _column(data: bytes, offset: int) -> int:
    return len(data[:offset].decode("utf-8", "replace")) + 1


def parse_json_line(data: bytes, limits: ReadLimits = DEFAULT_LIMITS) -> Any:
    """The JSON value of one line, or ValueError with a reason a clerk can act on."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"NUL byte at column {_column(data, nul)} (a binary file, or UTF-16 or UTF-32 text?)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise ValueError(f"not valid UTF-8: byte 0x{bad} at column {_column(data, exc.start)}") from None
    if data.startswith(_UTF8_BOM):
        raise ValueError("a byte order mark (U+FEFF) starts this line; only the first line of a file may have one")
    try:
        value = jiter.from_json(data, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="keys")
    except ValueError as exc:
        raise ValueError(_jiter_reason(str(exc))) from None
    where = _too_deep(value, limits.max_depth)
    if where is not None:
        raise ValueError(
            f"nested deeper than {limits.max_depth} levels of objects and arrays at {where or 'the top'} (--max-depth)"
        )
    return value


def _jiter_reason(message: str) -> str:
    m = _AT.match(message)
    what, col = (m["what"], m["col"]) if m else (message, None)
    at = f" (column {col})" if col else ""
    if what.startswith("Detected duplicate key"):
        return f"{what.removeprefix('Detected ')}{at}: a field may appear only once"
    if what == "recursion limit exceeded":
        return f"nested deeper than {PARSER_MAX_DEPTH} levels of objects and arrays{at}"
    if what == "number out of range":
        return f"number out of range{at}"
    return f"malformed JSON: {what}{at}"


def _too_deep(value: Any, max_depth: int) -> str | None:
    """The path of the first container nested deeper than ``max_depth``, else None (iterative)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        v, path, depth = stack.pop()
        if isinstance(v, dict):
            if depth > max_depth:
                return path
            stack.extend((x, f"{path}.{k}" if path else str(k), depth + 1) for k, x in v.items())
        elif isinstance(v, list):
            if depth > max_depth:
                return path
            stack.extend((x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v))
    return None


def read_jsonl(
    stream: IO[bytes] | Iterable[str] | Iterable[bytes], limits: ReadLimits = DEFAULT_LIMITS
) -> Iterator[Row]:
    """Rows of a JSON Lines stream; blank lines and ``#`` comments are skipped.

    ``stream`` is a binary file or stream (read in bounded pieces, see
    :func:`bounded_lines`) or lines already in memory.
    """
    for n, line in _lines(stream, limits.max_line_bytes):
        if isinstance(line, TooLong):
            yield Row.unreadable(n, line.reason(limits.max_line_bytes), preview(line.head))
            continue
        data = line
        if n == 1:
            if data.startswith(_UTF8_BOM):
                data = data[len(_UTF8_BOM) :]
            else:
                encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
                if encoding is not None:
                    yield Row.unreadable(
                        n,
                        f"the file is {encoding} (it starts with a {encoding} byte order mark); "
                        "JSON Lines must be UTF-8",
                        preview(data),
                    )
                    continue
        stripped = data.strip(b" \t\r\n")
        if not stripped or stripped.startswith(b"#"):
            continue
        try:
            raw = parse_json_line(stripped, limits)
        except ValueError as exc:
            yield Row.unreadable(n, str(exc), preview(stripped))
            continue
        yield Row(n, raw, text=stripped.decode("utf-8"))


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
            except TimeoutError:
                continue
            return
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
            if isinstance(item, Row):
                yield item
    finally:
        stopped.set()


def is_csv(path: str) -> bool:
    return path.lower().endswith(".csv")
