"""Schema evolution rule for ``schemas/``: every version is BACKWARD_TRANSITIVE
compatible, i.e. a reader on the newest version reads what every older writer
wrote, so records in the append-only list topics stay readable forever.

The checker is the Apache ``avro`` package's.  Because today each family has a
single version, the tests also show the checker failing on a variant that breaks
old records and passing on one that does not: a check that cannot fail proves
nothing.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import avro.schema
import fastavro
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from tests.unit.factories import SCHEMAS, encode, entry

pytestmark = pytest.mark.unit


def _versions(folder: Path) -> list[Path]:
    return sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))


FAMILIES = sorted(p for p in SCHEMAS.iterdir() if p.is_dir())
ALL_FILES = [path for family in FAMILIES for path in _versions(family)]


def _load(path: Path) -> dict[str, Any]:
    schema = json.loads(path.read_text("utf-8"))
    assert isinstance(schema, dict)
    return schema


def _avro(schema: dict[str, Any]) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(schema))


def _compatible(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(_avro(reader), _avro(writer))
    return result.compatibility is SchemaCompatibilityType.compatible


def test_the_record_families_exist_with_a_first_version() -> None:
    assert [f.name for f in FAMILIES] == [
        "directive",
        "heartbeat",
        "list_entry_event",
        "listing_commitments",
        "notice",
        "quarantine_record",
        "receipt",
        "sealed_listing",
    ]
    for family in FAMILIES:
        versions = _versions(family)
        assert versions, f"{family.name} has no schema version"
        assert [int(p.stem[1:]) for p in versions] == list(range(1, len(versions) + 1)), (
            f"{family.name}: versions must be numbered v1..vN without gaps"
        )


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_schema_parses_with_fastavro_and_avro(path: Path) -> None:
    raw = _load(path)
    parsed = fastavro.parse_schema(copy.deepcopy(raw))
    assert isinstance(parsed, dict)
    assert parsed["type"] == "record"
    schema = _avro(raw)
    assert isinstance(schema, avro.schema.RecordSchema)
    # Both libraries agree on the record's full name.
    assert schema.fullname == parsed["name"]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_version_reads_itself(path: Path) -> None:
    raw = _load(path)
    assert _compatible(raw, raw)


def backward_transitive_problems(versions: list[dict[str, Any]]) -> list[str]:
    """Every (v<N> reader, older writer) pair that is not compatible, as readable lines.

    ``versions[0]`` is v1.  BACKWARD_TRANSITIVE: v<N> must read v1 .. v<N-1>.
    """
    problems = []
    checker = ReaderWriterCompatibilityChecker()
    for n, newer in enumerate(versions, start=1):
        for m, older in enumerate(versions[: n - 1], start=1):
            result = checker.get_compatibility(_avro(newer), _avro(older))
            if result.compatibility is not SchemaCompatibilityType.compatible:
                problems.append(
                    f"v{n} cannot read v{m}: {sorted(result.messages)} {[i.value for i in result.incompatibilities]}"
                )
    return problems


@pytest.mark.parametrize("family", FAMILIES, ids=lambda p: p.name)
def test_backward_transitive(family: Path) -> None:
    versions = [_load(p) for p in _versions(family)]
    assert backward_transitive_problems(versions) == []


# --------------------------------------------------------------------------- the checker itself

V1 = SCHEMAS / "list_entry_event" / "v1.avsc"


def _with_field(field: dict[str, Any]) -> dict[str, Any]:
    schema = _load(V1)
    schema["fields"].append(field)
    return schema


def _without_field(name: str) -> dict[str, Any]:
    schema = _load(V1)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != name]
    return schema


def _retyped(name: str, new_type: Any) -> dict[str, Any]:
    schema = _load(V1)
    for field in schema["fields"]:
        if field["name"] == name:
            field["type"] = new_type
    return schema


def _enum_without(symbol: str) -> dict[str, Any]:
    schema = _load(V1)
    for field in schema["fields"]:
        if field["name"] == "event_type":
            field["type"]["symbols"] = [s for s in field["type"]["symbols"] if s != symbol]
    return schema


@pytest.mark.parametrize(
    "candidate",
    [
        pytest.param(_with_field({"name": "court_level", "type": "string"}), id="new-required-field"),
        pytest.param(_retyped("version", "string"), id="int-to-string"),
        pytest.param(_retyped("entry_id", "long"), id="string-to-long"),
        pytest.param(_enum_without("RETRACTED"), id="enum-symbol-removed"),
    ],
)
def test_checker_reports_a_breaking_change(candidate: dict[str, Any]) -> None:
    assert not _compatible(reader=candidate, writer=_load(V1))


@pytest.mark.parametrize(
    "candidate",
    [
        pytest.param(
            _with_field({"name": "court_level", "type": ["null", "string"], "default": None}),
            id="new-optional-field-with-default",
        ),
        pytest.param(_with_field({"name": "priority", "type": "int", "default": 0}), id="new-field-with-default"),
        pytest.param(_without_field("reason"), id="field-dropped-by-reader"),
        pytest.param(_retyped("version", "long"), id="int-promoted-to-long"),
    ],
)
def test_checker_accepts_a_compatible_change(candidate: dict[str, Any]) -> None:
    assert _compatible(reader=candidate, writer=_load(V1))


def test_transitive_check_reports_the_incompatible_pair() -> None:
    v1 = _load(V1)
    bad_v2 = _with_field({"name": "court_level", "type": "string"})
    problems = backward_transitive_problems([v1, bad_v2])
    assert len(problems) == 1
    assert problems[0].startswith("v2 cannot read v1")
    assert "court_level" in problems[0]
    v2 = _with_field({"name": "court_level", "type": ["null", "string"], "default": None})
    assert backward_transitive_problems([v1, v2]) == []


def test_transitive_check_looks_past_the_previous_version() -> None:
    # v2 adds an optional field; v3 drops its default.  v3 reads v2 (which always
    # writes the field) but not v1: only a transitive check sees the break.
    v1 = _load(V1)
    v2 = _with_field({"name": "court_level", "type": ["null", "string"], "default": None})
    v3 = _with_field({"name": "court_level", "type": ["null", "string"]})
    assert _compatible(reader=v3, writer=v2)
    problems = backward_transitive_problems([v1, v2, v3])
    assert len(problems) == 1
    assert problems[0].startswith("v3 cannot read v1")


def test_new_required_field_is_reported_by_name() -> None:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        _avro(_with_field({"name": "court_level", "type": "string"})), _avro(_load(V1))
    )
    assert result.compatibility is SchemaCompatibilityType.incompatible
    assert "court_level" in result.messages


def test_a_compatible_v2_decodes_v1_records_with_its_default() -> None:
    # What the rule buys: a v1 record read through a v2 schema gets the new field's default.
    v2 = _with_field({"name": "court_level", "type": ["null", "string"], "default": None})
    body = encode(entry())[10:]
    datum = fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(_load(V1)), fastavro.parse_schema(v2))
    assert isinstance(datum, dict)
    assert datum["court_level"] is None
    assert datum["entry_id"] == "court-2026-000123"
