"""CSV exports through a mapping file: good rows become records in the JSON shape,
bad rows are refused at their CSV line, and a broken mapping is refused as a whole
with file, line, path and reason for every problem."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pytest

from services.adapter.csv_mapping import CsvMapping, MappingInvalid, load_mapping, parse_mapping
from services.adapter.csv_source import read_csv
from services.adapter.jobs import Source, resolve_source, validate_source
from services.adapter.publish import Report, check_row
from services.adapter.sources import Row
from services.core.errors import ConfigError
from services.core.models import ListEntryEvent
from services.core.problems import Problem
from tests.unit.factories import KNOWN_RIC, KNOWN_RIC_X, KNOWN_USCC, REPO_ROOT, make_ric, make_uscc, real_world

pytestmark = pytest.mark.unit

WORLD = real_world()
EXAMPLES = REPO_ROOT / "deploy" / "examples"

# A small mapping in the example's style, for rows written inline in the tests.
MAPPING = textwrap.dedent("""\
    fields:
      event_id: {template: "court:{case}:{version}"}
      event_type: {column: action, map: {L: LISTED, D: DELISTED}}
      entry_id: case
      version: {column: version, type: int}
      list_kind: {const: SANCTION}
      program: {const: court.judgment-defaulters}
      subject.kind: {column: kind, map: {ORG: ORGANIZATION, P: PERSON}}
      subject.names[0].value: name
      subject.identifiers[0].scheme: {column: kind, map: {ORG: CN_USCC, P: CN_RIC}}
      subject.identifiers[0].value: id
      subject.related_parties[0].role: {const: LEGAL_REPRESENTATIVE}
      subject.related_parties[0].kind: {const: PERSON}
      subject.related_parties[0].identifiers[0].scheme: {const: CN_RIC}
      subject.related_parties[0].identifiers[0].value: rep
      basis.decision_no: decision
      basis.issued_by: {const: Beijing No.1 Intermediate People's Court}
      basis.decided_on: {column: decided, type: date, format: "%d.%m.%Y"}
      listed_on: {column: listed, type: date, format: "%d.%m.%Y"}
      effective_from: {column: listed, type: datetime, format: "%d.%m.%Y", timezone: Asia/Shanghai}
      delisting.reason: {column: why, map: {"1": PERFORMED, "9": ERROR}}
    """)
HEADER = "case,version,action,kind,name,id,rep,decision,decided,listed,why\n"


def good_line(
    case: str = "c-1",
    *,
    kind: str = "ORG",
    ident: str = KNOWN_USCC,
    rep: str = KNOWN_RIC,
    action: str = "L",
    version: str = "1",
    why: str = "",
) -> str:
    return (
        f'{case},{version},{action},{kind},"Example Co., Ltd.",{ident},{rep},(2026) Zhi 1,02.03.2026,10.03.2026,{why}\n'
    )


def rows_of(text: str, mapping: str = MAPPING, *, encoding: str = "utf-8") -> list[Row]:
    m = parse_mapping(mapping, "map.yaml")
    stream = io.TextIOWrapper(
        io.BytesIO(text.encode(encoding)), encoding=m.encoding, errors="surrogateescape", newline=""
    )
    return list(read_csv(stream, m, file="export.csv"))


def raw_of(row: Row) -> Any:
    """The row's JSON shape (every row read from a CSV file has one)."""
    assert row.raw is not None
    return row.raw


def problems_of(row: Row) -> list[Problem]:
    """The row's problems, each placed at the row's line of export.csv."""
    report = Report(file="export.csv")
    assert check_row(row, agency="court", world=WORLD, report=report) is None
    return [p.at(r.file, r.line) for r in report.rejected for p in r.problems]


def at(line: int, path: str, reason: str) -> Problem:
    return Problem(file="export.csv", line=line, path=path, reason=reason)


def valid(row: Row) -> ListEntryEvent:
    report = Report(file="export.csv")
    ev = check_row(row, agency="court", world=WORLD, report=report)
    assert ev is not None, [line for r in report.rejected for line in r.lines()]
    return ev


# --------------------------------------------------------------------------- good rows


def test_shipped_example_maps_every_row_to_a_valid_record() -> None:
    src = resolve_source(str(EXAMPLES / "court-export.csv"), load_mapping(EXAMPLES / "court-mapping.yaml"))
    report = validate_source(src, agency="court", world=WORLD)
    assert report.rejected == []
    assert report.valid == 4


def test_row_becomes_the_json_shape_with_nested_paths_constants_and_dates() -> None:
    (row,) = rows_of(HEADER + good_line())
    assert row.line == 2
    assert row.problems == ()
    assert raw_of(row)["event_id"] == "court:c-1:1"
    assert raw_of(row)["version"] == 1
    assert raw_of(row)["subject"]["identifiers"] == [{"scheme": "CN_USCC", "value": KNOWN_USCC}]
    assert raw_of(row)["subject"]["related_parties"][0]["identifiers"][0]["value"] == KNOWN_RIC
    assert raw_of(row)["basis"]["decided_on"] == "2026-03-02"
    assert raw_of(row)["effective_from"] == "2026-03-10T00:00:00+08:00"
    ev = valid(row)
    assert ev.effective_from.utcoffset() is not None
    assert "delisting" not in raw_of(row)  # its only column is empty on a listing row


def test_object_whose_columns_are_all_empty_is_left_out_constants_included() -> None:
    (row,) = rows_of(HEADER + good_line(kind="P", ident=KNOWN_RIC_X, rep=""))
    assert "related_parties" not in raw_of(row)["subject"]
    assert valid(row).subject.related_parties == ()


def test_delisting_row_fills_the_delisting() -> None:
    (row,) = rows_of(HEADER + good_line(action="D", version="2", why="1"))
    ev = valid(row)
    assert ev.delisting is not None and ev.delisting.reason.value == "PERFORMED"


def test_rows_keep_their_csv_line_numbers_across_quoted_line_breaks_and_blank_lines() -> None:
    multi = good_line("c-2").replace('"Example Co., Ltd."', '"Example Co.,\nLtd."')
    rows = rows_of(HEADER + good_line("c-1") + multi + "\n" + good_line("c-3"))
    assert [r.line for r in rows] == [2, 3, 6]
    assert raw_of(rows[1])["subject"]["names"][0]["value"] == "Example Co.,\nLtd."


def test_file_without_header_names_its_columns_in_the_mapping() -> None:
    columns = "[case, version, action, kind, name, id, rep, decision, decided, listed, why]"
    mapping = f"csv:\n  columns: {columns}\n" + MAPPING
    rows = rows_of(good_line("c-1") + good_line("c-2"), mapping)
    assert [r.line for r in rows] == [1, 2]
    assert all(valid(r) for r in rows)


def test_other_encodings_and_delimiters() -> None:
    mapping = "csv:\n  delimiter: ';'\n  encoding: gb18030\n" + MAPPING
    line = good_line().replace(",", ";").replace('"Example Co.; Ltd."', "北京示例贸易有限公司")
    (row,) = rows_of(HEADER.replace(",", ";") + line, mapping, encoding="gb18030")
    assert raw_of(row)["subject"]["names"][0]["value"] == "北京示例贸易有限公司"
    valid(row)


# --------------------------------------------------------------------------- bad rows


def test_bad_rows_are_refused_at_their_csv_line_with_the_field_path() -> None:
    text = (
        HEADER
        + good_line("c-1")
        + good_line("c-2", action="X")  # line 3: code not in the map
        + good_line("c-3").replace("02.03.2026", "2026-03-02")  # line 4: date in another format
        + good_line("c-4", version="two")  # line 5: not a number
        + good_line("c-5", ident=KNOWN_USCC[:-1] + "0")
    )  # line 6: check character wrong
    rows = rows_of(text)
    assert problems_of(rows[1]) == [at(3, "event_type", "'X' (column action) is not one of L, D")]
    assert problems_of(rows[2]) == [
        at(4, "basis.decided_on", "'2026-03-02' (column decided) does not match the date format %d.%m.%Y")
    ]
    (version,) = [p for p in problems_of(rows[3]) if p.path == "version"]
    assert version == at(5, "version", "'two' (column version) is not a whole number")
    (ident,) = problems_of(rows[4])
    assert (ident.line, ident.path) == (6, "subject.identifiers[0].value") and ident.reason.startswith("CN_USCC")


def test_every_problem_of_a_row_is_reported_once() -> None:
    line = (
        good_line()
        .replace("(2026) Zhi 1", "")
        .replace("02.03.2026", "2026-03-02")
        .replace(KNOWN_RIC, make_ric(7)[:-1] + "0")
    )
    (row,) = rows_of(HEADER + line)
    paths = [p.path for p in problems_of(row)]
    assert paths == ["basis.decided_on", "basis.decision_no", "subject.related_parties[0].identifiers[0].value"]


def test_empty_template_column_leaves_the_field_out() -> None:
    (row,) = rows_of(HEADER + good_line(version=""))
    assert "event_id" not in raw_of(row)
    assert at(2, "event_id", "is required") in problems_of(row)


def test_row_with_the_wrong_number_of_fields() -> None:
    (row,) = rows_of(HEADER + "c-1,1,L\n")
    assert problems_of(row) == [at(2, "", "row has 3 fields, the header has 11")]
    assert row.text == "c-1,1,L"


def test_bytes_not_in_the_encoding_refuse_the_row_only() -> None:
    m = parse_mapping(MAPPING, "map.yaml")
    data = (
        (HEADER + good_line("c-1")).encode()
        + good_line("c-2").encode().replace(b"Example", b"Ex\xffample")
        + good_line("c-3").encode()
    )
    stream = io.TextIOWrapper(io.BytesIO(data), encoding=m.encoding, errors="surrogateescape", newline="")
    rows = list(read_csv(stream, m, file="export.csv"))
    assert [r.line for r in rows] == [2, 3, 4]
    assert problems_of(rows[1]) == [at(3, "", "line is not valid utf-8-sig")]
    assert "\ufffd" in rows[1].text  # shown, with the bad byte replaced, in the rejects file
    valid(rows[2])


def test_header_lacking_a_mapped_column_stops_the_file() -> None:
    with pytest.raises(MappingInvalid) as info:
        rows_of("case,version\nc-1,1\n")
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("export.csv", 1)
    assert problem.reason.startswith("the header lacks column(s) the mapping map.yaml reads:")
    assert "'action' (for event_type)" in problem.reason
    assert "'kind' (for subject.kind, subject.identifiers[0].scheme)" in problem.reason


def test_csv_needs_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "export.csv"
    f.write_text(HEADER)
    with pytest.raises(ConfigError, match="is a CSV file: pass --mapping"):
        resolve_source(str(f), None)
    # a mapping makes any name CSV
    other = tmp_path / "export.txt"
    other.write_text(HEADER + good_line())
    src = resolve_source(str(other), parse_mapping(MAPPING))
    assert isinstance(src, Source) and isinstance(src.mapping, CsvMapping)
    assert validate_source(src, agency="court", world=WORLD).valid == 1


# --------------------------------------------------------------------------- mapping file errors


def _mapping_problems(text: str) -> list[Problem]:
    with pytest.raises(MappingInvalid) as info:
        parse_mapping(textwrap.dedent(text), "m.yaml")
    assert all(p.file == "m.yaml" for p in info.value.problems)
    return list(info.value.problems)


def _has(problems: list[Problem], line: int, path: str, reason: str) -> bool:
    return any((p.line, p.path) == (line, path) and p.reason.startswith(reason) for p in problems)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "  subject.kindd: kind\n",
            (
                2,
                'fields["subject.kindd"]',
                "no field 'kindd' in subject (fields: kind, names, identifiers, related_parties)",
            ),
        ),
        (
            "  subject.names.value: name\n",
            (2, 'fields["subject.names.value"]', "subject.names is a list: name an item, e.g. subject.names[0]"),
        ),
        ("  subject: name\n", (2, "fields.subject", "subject is an object: map its fields, e.g. subject.kind")),
        ("  reason.text: why\n", (2, 'fields["reason.text"]', "reason is a single value; it has no field 'text'")),
        ("  version[0]: v\n", (2, 'fields["version[0]"]', "version is not a list")),
        ("  Subject-Kind: x\n", (2, "fields.Subject-Kind", "not a field path ('Subject-Kind')")),
        (
            "  reason: {column: a, const: b}\n",
            (2, "fields.reason", "needs exactly one of column, const, template (got column, const)"),
        ),
        ("  reason: {colum: a}\n", (2, "fields.reason.colum", "unknown key")),
        (
            "  version: {column: v, type: integer}\n",
            (2, "fields.version.type", "unknown type 'integer' (expected string, int, date, datetime)"),
        ),
        (
            "  reason: {column: r, format: '%Y'}\n",
            (2, "fields.reason.format", "only a date or datetime field takes a format"),
        ),
        (
            "  listed_on: {column: d, type: date, format: '%Q'}\n",
            (2, "fields.listed_on.format", "not a usable strptime format"),
        ),
        (
            "  effective_from: {column: d, type: datetime, format: '%Y-%m-%d'}\n",
            (2, "fields.effective_from", "a datetime format without %z needs a timezone"),
        ),
        (
            "  effective_from: {column: d, type: datetime, timezone: Mars/Olympus}\n",
            (2, "fields.effective_from.timezone", "unknown time zone 'Mars/Olympus'"),
        ),
        (
            "  event_id: {template: court-event}\n",
            (2, "fields.event_id.template", "names no column; use const for a fixed value"),
        ),
        ("  reason: {const: x, map: {a: b}}\n", (2, "fields.reason", "a const takes no map")),
        ("  reason: a\n  reason: b\n", (3, "fields.reason", "duplicate key")),
    ],
)
def test_mapping_errors_name_file_line_path_and_reason(fields: str, expected: tuple[int, str, str]) -> None:
    problems = _mapping_problems("fields:\n" + fields)
    assert _has(problems, *expected), problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("csv:\n  delimiter: ';;'\nfields:\n  reason: r\n", (2, "csv.delimiter", "must be one character")),
        ("csv:\n  encoding: klingon\nfields:\n  reason: r\n", (2, "csv.encoding", "unknown encoding 'klingon'")),
        ("csv:\n  columns: [a]\nfields:\n  reason: r\n", (4, "fields.reason", "column 'r' is not in csv.columns")),
        ("csv: {}\n", (1, "fields", "is required")),
        ("fields:\n  reason: [a, b\n", (3, "", "malformed YAML")),
        ("- a\n- b\n", (1, "", "a mapping file is a YAML mapping")),
        ("fields:\n  reason: r\nextra: 1\n", (3, "extra", "unknown key (expected csv, fields)")),
    ],
)
def test_mapping_file_structure_errors(text: str, expected: tuple[int, str, str]) -> None:
    problems = _mapping_problems(text)
    assert _has(problems, *expected), problems


def test_every_mapping_problem_is_reported_at_once() -> None:
    problems = _mapping_problems("""\
        fields:
          subject.kindd: kind
          version: {column: v, type: integer}
          reason: {colum: r}
        """)
    assert [p.line for p in problems] == [2, 3, 4, 4]
    assert problems[2].path == "fields.reason.colum" and problems[2].reason.startswith("unknown key")
    assert problems[3].reason.startswith("needs exactly one of column, const, template (got none)")


def test_mapping_codes_are_read_as_written() -> None:
    # YAML would read `yes` as true and `01` as 1; a code in a CSV cell is text.
    m = parse_mapping("fields:\n  event_type: {column: a, map: {yes: LISTED, 01: DELISTED}}\n")
    (rule,) = m.rules
    assert rule.values == {"yes": "LISTED", "01": "DELISTED"}


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(MappingInvalid) as info:
        load_mapping(tmp_path / "nope.yaml")
    assert info.value.problems == (Problem(file=str(tmp_path / "nope.yaml"), reason="no such mapping file"),)


def test_fresh_identifiers_helper_is_valid() -> None:
    # the inline rows above rely on the factories' identifiers being valid
    (row,) = rows_of(HEADER + good_line(ident=make_uscc(4242), rep=make_ric(3)))
    valid(row)


def test_column_names_are_read_as_written() -> None:
    # YAML would read these names as numbers and booleans; a CSV header holds text.
    m = parse_mapping("csv:\n  columns: [01, yes]\nfields:\n  reason: 01\n  entry_id: {column: yes}\n")
    assert m.columns == ("01", "yes")
    assert {r.target: r.column for r in m.rules} == {"reason": "01", "entry_id": "yes"}


def test_an_empty_field_source_is_a_problem() -> None:
    assert _mapping_problems("fields:\n  reason:\n") == [
        Problem(file="m.yaml", line=2, path="fields.reason", reason="must be a non-empty text")
    ]
