"""Hostile bytes through the adapter's readers: every line is refused with its line number
and a reason, reading goes on with the next line, and no line is ever held whole when it
is longer than the limit."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from services.adapter.csv_mapping import MappingInvalid, load_mapping, parse_mapping
from services.adapter.csv_source import read_csv
from services.adapter.jobs import resolve_source, validate_source
from services.adapter.publish import RowProblem
from services.adapter.sources import DEFAULT_LIMITS, ReadLimits, Row, bounded_lines, parse_json_line, read_jsonl
from services.core.errors import ConfigError
from tests.unit.factories import REPO_ROOT, entry_dict, real_world

pytestmark = pytest.mark.unit

WORLD = real_world()
GOOD = json.dumps(entry_dict()).encode()
EXAMPLES = REPO_ROOT / "deploy" / "examples"


def rows(data: bytes, limits: ReadLimits = DEFAULT_LIMITS) -> list[Row]:
    return list(read_jsonl(io.BytesIO(data), limits))


def only_problem(row: Row) -> str:
    assert row.raw is None
    (problem,) = row.problems
    return problem.reason


class CountingStream(io.RawIOBase):
    """Bytes made on demand, remembering the largest single read: a reader that held a
    whole line would have to ask for more than its limit at once (or keep it)."""

    def __init__(self, parts: list[tuple[bytes, int]]) -> None:
        self._parts = parts
        self._i = 0
        self._left = parts[0][1] if parts else 0
        self.largest = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # RawIOBase's buffer protocol
        while self._i < len(self._parts) and self._left == 0:
            self._i += 1
            self._left = self._parts[self._i][1] if self._i < len(self._parts) else 0
        if self._i >= len(self._parts):
            return 0
        unit, _ = self._parts[self._i]
        n = min(len(buffer), self._left * len(unit))
        n -= n % len(unit)
        n = max(n, len(unit))
        buffer[:n] = (unit * (n // len(unit)))[:n]
        self._left -= n // len(unit)
        self.largest = max(self.largest, n)
        return n


# --------------------------------------------------------------------------- JSON Lines


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[" * 100_000, "nested deeper than 200 levels"),
        (b'{"a":' * 50 + b"1" + b"}" * 50, "nested deeper than 16 levels of objects and arrays at a.a.a"),
        (b'{"version": 1, "version": 2}', 'duplicate key "version" (column 26): a field may appear only once'),
        (b'{"event_id": "e\xff"}', "not valid UTF-8: byte 0xff at column 16"),
        (b'{"event_id": "e\x00"}', "NUL byte at column 16"),
        (b"\xef\xbb\xbf" + GOOD, "a byte order mark (U+FEFF) starts this line"),
        (b'{"version": NaN}', "malformed JSON: expected value (column 13)"),
        (b'{"event_id": "\\ud800"}', "malformed JSON: unexpected end of hex escape"),
        (b'{"version": 1' + b"1" * 5000 + b"}", "number out of range"),
        (b"{'single': 'quotes'}", "malformed JSON: key must be a string"),
        (GOOD + b" trailing", "malformed JSON: trailing characters"),
        (b"\x00" + bytes(range(11, 256)), "NUL byte at column 1"),
    ],
)
def test_each_trap_is_refused_on_its_own_line(line: bytes, reason: str) -> None:
    got = rows(GOOD + b"\n" + line + b"\n" + GOOD + b"\n")
    assert [r.line for r in got] == [1, 2, 3]
    assert got[0].raw is not None and got[2].raw is not None
    assert reason in only_problem(got[1])


def test_utf8_bom_at_the_start_and_crlf_line_ends_are_accepted() -> None:
    got = rows(b"\xef\xbb\xbf" + GOOD + b"\r\n" + GOOD + b"\r\n")
    assert [r.raw for r in got] == [entry_dict(), entry_dict()]


@pytest.mark.parametrize(
    ("bom", "name"), [(b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"), (b"\xff\xfe\x00\x00", "UTF-32")]
)
def test_utf16_and_utf32_files_are_named_as_such(bom: bytes, name: str) -> None:
    text = (GOOD.decode() + "\n").encode("utf-16-le" if name == "UTF-16" else "utf-32-le")
    got = rows(bom + text)
    assert f"the file is {name}" in only_problem(got[0])
    assert all(r.raw is None for r in got)


def test_numbers_where_strings_belong_and_control_characters_are_field_problems(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_bytes(
        json.dumps(entry_dict(entry_id=123)).encode()
        + b"\n"
        + json.dumps(entry_dict(reason="line one\u0000two")).encode()
        + b"\n"
        + json.dumps(
            entry_dict(
                subject={
                    "kind": "PERSON",
                    "names": [{"value": 7}],
                    "identifiers": [{"scheme": "CN_RIC", "value": 110105196204121234}],
                }
            )
        ).encode()
        + b"\n"
    )
    refused: list[RowProblem] = []
    report = validate_source(resolve_source(str(path), None), agency="court", world=WORLD, on_reject=refused.append)
    lines = [line for r in refused for line in r.lines()]
    assert f"{path}:1: entry_id: Input should be a valid string" in lines
    assert f"{path}:2: reason: contains the control character U+0000 at position 9" in lines
    assert f"{path}:3: subject.names[0].value: Input should be a valid string" in lines
    assert f"{path}:3: subject.identifiers[0].value: Input should be a valid string" in lines
    assert report.valid == 0


def test_a_line_longer_than_the_limit_is_skipped_in_bounded_reads() -> None:
    limit = 4096
    stream = CountingStream([(b'{"a": "', 1), (b"x", 50_000_000), (b'"}\n', 1), (GOOD + b"\n", 1)])
    got = list(read_jsonl(io.BufferedReader(stream, buffer_size=8192), ReadLimits(max_line_bytes=limit)))
    assert [r.line for r in got] == [1, 2]
    assert "line is 50,000,009 bytes, longer than the limit of 4,096 (--max-line-bytes)" in only_problem(got[0])
    assert got[0].text.startswith('{"a": "xxx') and len(got[0].text) <= 200
    assert got[1].raw == entry_dict()
    assert stream.largest <= (1 << 20) + 8192  # read in pieces of at most a MiB, never the line at once


@pytest.mark.parametrize("size", [4096, 4097])
def test_the_limit_is_exact_and_counts_no_line_end(size: int) -> None:
    line = b'"' + b"x" * (size - 2) + b'"'
    for end in (b"\n", b"\r\n", b""):
        ((_, got),) = list(bounded_lines(io.BytesIO(line + end), 4096))
        assert (got == line) is (size == 4096), (size, end)


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_depth must be between 1 and 200"):
        ReadLimits(max_depth=500)
    with pytest.raises(ConfigError, match="max_line_bytes"):
        ReadLimits(max_line_bytes=10)
    with pytest.raises(ValueError, match="nested deeper than 8"):
        parse_json_line(b"[" * 9 + b"]" * 9, ReadLimits(max_depth=8))


# --------------------------------------------------------------------------- CSV

MAPPING = textwrap.dedent("""\
    fields:
      event_id: {template: "court:{case}:1"}
      event_type: {const: LISTED}
      entry_id: case
      version: {const: 1}
      list_kind: {const: SANCTION}
      program: {const: court.judgment-defaulters}
      subject.kind: {const: PERSON}
      subject.names[0].value: name
      subject.identifiers[0].scheme: {const: CN_RIC}
      subject.identifiers[0].value: id
      listed_on: {const: "2026-03-10"}
      effective_from: {const: "2026-03-10T00:00:00Z"}
      basis.decision_no: {const: "(2026) Zhi 1"}
      basis.issued_by: {const: A court}
    """)


def csv_rows(data: bytes, limits: ReadLimits) -> list[Row]:
    m = parse_mapping(MAPPING, "map.yaml")
    return list(read_csv(m.wrap(io.BytesIO(data)), m, file="export.csv", limits=limits))


def test_csv_records_longer_than_the_limit_are_refused_and_reading_goes_on() -> None:
    limits = ReadLimits(max_line_bytes=2048)
    good = b"c-1,Li Example,110105196204121234\n"
    data = (
        b"case,name,id\n"
        + good
        + b"c-2,"
        + b"x" * 100_000
        + b",1\n"
        + good
        + b'c-3,"an open quote\n'
        + b"y" * 1500
        + b"\n"
        + b"z" * 1500
        + b"\n"
        + good
    )
    got = csv_rows(data, limits)
    by_line = {r.line: r for r in got}
    assert by_line[2].raw is not None and by_line[4].raw is not None
    assert "longer than the limit of 2,048 (--max-line-bytes)" in only_problem(by_line[3])
    assert "longer than the limit of 2,048" in only_problem(by_line[5])
    assert got[-1].raw is not None and got[-1].line == 8


def test_csv_header_longer_than_the_limit_stops_the_file() -> None:
    with pytest.raises(MappingInvalid) as info:
        csv_rows(b"case," + b"x" * 5000 + b"\n", ReadLimits(max_line_bytes=1024))
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("export.csv", 1)
    assert problem.reason.startswith("the header line: record is")


def test_csv_with_binary_garbage_refuses_rows_not_the_file() -> None:
    got = csv_rows(b"case,name,id\n" + bytes(range(256)) * 20 + b"\nc-1,Li Example,110105196204121234\n", ReadLimits())
    assert got[-1].raw is not None
    assert all(r.raw is None or r.problems for r in got[:-1])


def test_shipped_example_still_reads() -> None:
    m = load_mapping(EXAMPLES / "court-mapping.yaml")
    src = resolve_source(str(EXAMPLES / "court-export.csv"), m)
    assert validate_source(src, agency="court", world=WORLD).rejected == []


# --------------------------------------------------------------------------- files


def test_a_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file"):
        resolve_source(str(tmp_path), None)
    with pytest.raises(ConfigError, match="no such file"):
        resolve_source(str(tmp_path / "absent.jsonl"), None)
