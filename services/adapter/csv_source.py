"""CSV exports, turned into the adapter's JSON shape by a mapping file.

Agencies rarely export JSON; their case systems write CSV with their own column
names, codes and date formats.  A mapping file says, once, how each column becomes
a field of the record, so the rest of the adapter (validation, signing, rejects,
the ledger) treats a CSV row exactly like a JSON line: a :class:`Row` with the CSV
line number, and problems reported as ``FILE:LINE: field.path: message``.

How the columns become fields is the mapping file's business (:mod:`.csv_mapping`).

Cells are stripped of surrounding spaces.  An empty cell leaves its field out, and
an object (or list item) whose mapped columns are all empty on a row is left out
entirely, constants included: a row without a legal representative gets no
``related_parties[0]``, and a listing row no ``delisting``.  Objects mapped only
from constants are always kept.  List items left out close up, so a later item
takes the index of an absent earlier one.

A header that lacks a mapped column raises :class:`~.csv_mapping.MappingInvalid`, naming
the CSV file and its line: it stops the whole file.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from services.adapter.csv_mapping import CsvMapping, FieldRule, MappingInvalid
from services.adapter.sources import DEFAULT_LIMITS, PREVIEW, ReadLimits, Row
from services.core.problems import Problem

__all__ = ["build_record", "read_csv"]


# --------------------------------------------------------------------------- reading rows

_CONST, _EMPTY, _FILLED = 0, 1, 2
_MISSING = object()


class _RecordTooLong(Exception):
    """Raised by :class:`_Tap` into csv.reader, which starts afresh on the next line."""

    def __init__(self, size: int, head: str) -> None:
        super().__init__(size)
        self.size = size
        self.head = head


_LINE_ENDS = ("\r\n", "\n", "\r")


class _Tap:
    """Hands lines to csv.reader while keeping them, so a row keeps its text and line.

    Never holds more than ``limit`` characters of a record: a longer physical line is
    skipped in bounded pieces, and a quoted field running on over lines stops at the
    limit too; either raises :class:`_RecordTooLong` through the reader.
    """

    def __init__(self, stream: IO[str], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.lines = 0
        self._held: list[str] = []
        self._size = 0

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> str:
        line = self._stream.readline(self._limit + 2)
        if not line:
            raise StopIteration
        self.lines += 1
        if len(line) == self._limit + 2 and not line.endswith(_LINE_ENDS):
            size = len(line)
            while rest := self._stream.readline(1 << 20):
                size += len(rest)
                if rest.endswith(_LINE_ENDS):
                    break
            raise _RecordTooLong(self._size + size, "".join(self._held)[:PREVIEW] or line[:PREVIEW])
        self._held.append(line)
        self._size += len(line)
        if self._size > self._limit + 2:
            raise _RecordTooLong(self._size, "".join(self._held)[:PREVIEW])
        return line

    def take(self) -> str:
        text = "".join(self._held)
        self._held.clear()
        self._size = 0
        return text


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _printable(text: str, encoding: str) -> str:
    raw = text.encode(encoding, "surrogateescape")
    return raw.decode(encoding, "replace").rstrip("\r\n")


def read_csv(stream: IO[str], mapping: CsvMapping, *, file: str, limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[Row]:
    """Rows of a CSV export in the record shape; ``stream`` comes from :meth:`CsvMapping.open`
    or :meth:`CsvMapping.wrap`.  A record longer than ``limits.max_line_bytes`` is refused
    without being held (see :class:`_Tap`)."""
    limit = limits.max_line_bytes
    tap = _Tap(stream, limit)
    reader = csv.reader(tap, delimiter=mapping.delimiter, quotechar=mapping.quotechar, strict=False)
    header: tuple[str, ...] | None = mapping.columns
    index: dict[str, int] = {}
    if header is not None:
        index = {c: i for i, c in enumerate(header)}
    while True:
        start = tap.lines + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _RecordTooLong as exc:
            tap.take()
            reason = f"record is {exc.size:,} characters, longer than the limit of {limit:,} (--max-line-bytes)"
            if header is None:
                raise MappingInvalid([Problem(file=file, line=start, reason=f"the header line: {reason}")]) from None
            yield Row.unreadable(start, reason, _printable(exc.head, mapping.encoding))
            continue
        except csv.Error as exc:
            tap.take()
            yield Row.unreadable(start, f"unreadable CSV: {exc}")
            if tap.lines < start:
                return
            continue
        text = tap.take()
        if not cells or all(not c.strip() for c in cells):
            continue
        if header is None:
            header = tuple(c.strip() for c in cells)
            header = (header[0].lstrip("\ufeff"), *header[1:])  # a BOM read with encoding: utf-8
            index = _header_index(header, mapping, file, start)
            continue
        shown = _printable(text, mapping.encoding)
        size = len(text.encode("utf-8", "surrogateescape"))
        if size > limit:
            yield Row.unreadable(
                start,
                f"record is {size:,} bytes, longer than the limit of {limit:,} (--max-line-bytes)",
                shown[:PREVIEW],
            )
            continue
        if _has_surrogates(text):
            yield Row.unreadable(start, f"line is not valid {mapping.encoding}", shown)
            continue
        if len(cells) != len(header):
            yield Row.unreadable(start, f"row has {len(cells)} fields, the header has {len(header)}", shown)
            continue
        raw, problems = build_record(mapping, {c: cells[i].strip() for c, i in index.items()})
        yield Row(start, raw, tuple(problems), shown)


def _header_index(header: tuple[str, ...], mapping: CsvMapping, file: str, line: int) -> dict[str, int]:
    needed = mapping.needed_columns()
    problems: list[Problem] = []
    missing = [c for c in needed if c not in header]
    if missing:
        listed = "; ".join(f"{c!r} (for {', '.join(needed[c])})" for c in missing)
        reason = f"the header lacks column(s) the mapping {mapping.source} reads: {listed}"
        problems.append(Problem(file=file, line=line, reason=reason))
    dupes = sorted({c for c in needed if header.count(c) > 1})
    if dupes:
        reason = f"the header names {', '.join(map(repr, dupes))} more than once"
        problems.append(Problem(file=file, line=line, reason=reason))
    if problems:
        raise MappingInvalid(problems)
    return {c: header.index(c) for c in needed}


def build_record(mapping: CsvMapping, cells: Mapping[str, str]) -> tuple[dict[str, Any], list[Problem]]:
    """The record shape for one row's cells, and the problems converting them."""
    problems: list[Problem] = []
    tree: dict[Any, Any] = {}
    for rule in mapping.rules:
        value, state = _leaf(rule, cells, problems)
        node = tree
        for seg in rule.path[:-1]:
            node = node.setdefault(seg, {})
        node[rule.path[-1]] = (value, state)
    built, _ = _finish(tree, root=True)
    return built, problems


def _leaf(rule: FieldRule, cells: Mapping[str, str], problems: list[Problem]) -> tuple[Any, int]:
    if rule.column is None and rule.template is None:
        return rule.const, _CONST
    if rule.template is not None:
        values = {c: cells[c] for c in rule.template_columns}
        cell = "" if any(v == "" for v in values.values()) else rule.template.format_map(values)
        what = f"template {rule.template!r}"
    else:
        cell = cells[rule.column or ""]
        what = f"column {rule.column}"
    if cell == "":
        if rule.default is not None:
            return rule.default, _EMPTY
        return _MISSING, _EMPTY
    value: Any = cell
    if rule.values is not None:
        if cell not in rule.values:
            known = ", ".join(map(str, rule.values))
            problems.append(Problem.of(rule.target, f"{cell!r} ({what}) is not one of {known}"))
            return cell, _FILLED
        value = rule.values[cell]
        if not isinstance(value, str):
            return value, _FILLED
    try:
        return _convert(rule, value), _FILLED
    except ValueError as exc:
        problems.append(Problem.of(rule.target, f"{value!r} ({what}) {exc}"))
        return value, _FILLED


def _convert(rule: FieldRule, value: str) -> Any:
    if rule.type == "int":
        if not re.fullmatch(r"[+-]?\d+", value):
            raise ValueError("is not a whole number")
        return int(value)
    if rule.type == "date":
        if rule.format is None:
            return value
        try:
            return datetime.strptime(value, rule.format).date().isoformat()  # noqa: DTZ007 - a calendar date
        except ValueError:
            raise ValueError(f"does not match the date format {rule.format}") from None
    if rule.type == "datetime":
        if rule.format is None:
            if rule.tz is None:
                return value
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("is not an ISO 8601 date and time") from None
        else:
            try:
                parsed = datetime.strptime(value, rule.format)  # noqa: DTZ007 - given rule.tz below
            except ValueError:
                raise ValueError(f"does not match the datetime format {rule.format}") from None
        if parsed.tzinfo is None and rule.tz is not None:
            parsed = parsed.replace(tzinfo=rule.tz)
        return parsed.isoformat()
    return value


def _finish(node: dict[Any, Any], *, root: bool = False) -> tuple[Any, int]:
    """Nested dicts of leaves -> the record shape, dropping objects whose columns were all empty."""
    out: dict[Any, Any] = {}
    state = _CONST
    for key, child in node.items():
        if isinstance(child, tuple):
            value, s = child
        else:
            value, s = _finish(child)
        state = max(state, s)
        if value is not _MISSING:
            out[key] = value
    if root:
        return out, state
    if state == _EMPTY:
        return _MISSING, _EMPTY
    if out and all(isinstance(k, int) for k in out):
        return [out[k] for k in sorted(out)], state
    if node and all(isinstance(k, int) for k in node):
        return _MISSING, state
    return out, state
