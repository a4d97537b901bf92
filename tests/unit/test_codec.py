"""Avro single-object encoding: the wire header, the CRC-64-AVRO fingerprint, every
record surviving a round trip, and garbage always failing as a typed CodecError
(a quarantine reason), never as an arbitrary exception that would stop a worker."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import avro.schema
import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from services.core.codec import (
    HEADER_LEN,
    MAGIC,
    SCHEMA_NAMES,
    SchemaRegistry,
    default_registry,
    fingerprint,
)
from services.core.errors import (
    CodecError,
    NotSingleObject,
    UndecodableBody,
    UnknownFingerprint,
)
from services.core.models import (
    Action,
    Cause,
    Directive,
    Header,
    Identifier,
    ListEntryEvent,
    MeasureKind,
    Name,
    QuarantineRecord,
    Receipt,
    ReceiptStatus,
    SourceRecord,
    SubjectKind,
    TargetSubject,
)
from tests.unit.factories import (
    KNOWN_RIC,
    SCHEMAS,
    delisting,
    encode,
    entry,
    legal_rep,
    make_ric,
    organization,
    person,
)

pytestmark = pytest.mark.unit

REG = default_registry()
AT = datetime(2026, 3, 10, 12, 30, 15, 123456, tzinfo=UTC)


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_is_the_crc_of_the_canonical_form_little_endian() -> None:
    # Avro specification, "Schema Fingerprints": the CRC-64-AVRO of the schema "null" is 0x63DD24E7CC258F8A.
    assert fingerprint("null") == struct.pack("<Q", 0x63DD24E7CC258F8A)
    assert fingerprint("null") == bytes.fromhex("8a8f25cce724dd63")


SCHEMA_FILES = sorted(SCHEMAS.rglob("v*.avsc"))
DATA = Path(__file__).parent / "data"
# The fingerprints every schema version has had on the wire since it was written: they never change.
RECORDED: dict[str, str] = json.loads((DATA / "schema_fingerprints.json").read_text("utf-8"))


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_schema_keeps_the_fingerprint_it_was_written_with(path: Path) -> None:
    name = f"{path.parent.name}/{path.name}"
    got = fingerprint(json.loads(path.read_text("utf-8")))
    if name in RECORDED:
        assert got.hex() == RECORDED[name]
    # The CRC agrees with the Apache avro implementation's on the same (long, real) input.
    parsed = avro.schema.parse(path.read_text("utf-8"))
    assert bytes.fromhex(fastavro.schema.fingerprint(parsed.canonical_form, "CRC-64-AVRO")) == parsed.fingerprint()


def test_the_recorded_fingerprints_are_of_schemas_that_exist() -> None:
    assert set(RECORDED) <= {f"{p.parent.name}/{p.name}" for p in SCHEMA_FILES}
    assert len(RECORDED) >= 10


def test_fingerprint_ignores_what_canonical_form_drops() -> None:
    # doc strings and whitespace are not part of the Parsing Canonical Form.
    a = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]}
    b = {"type": "record", "name": "R", "doc": "explained", "fields": [{"name": "x", "type": "long", "doc": "x"}]}
    assert fingerprint(a) == fingerprint(b)
    c = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}
    assert fingerprint(a) != fingerprint(c)


@pytest.mark.parametrize(
    ("annotated", "plain"),
    [
        ({"type": "long", "logicalType": "timestamp-micros"}, "long"),
        ({"type": "int", "logicalType": "date"}, "int"),
        ({"type": "string"}, "string"),
    ],
)
def test_canonical_form_drops_logical_types(annotated: dict[str, str], plain: str) -> None:
    # Parsing Canonical Form keeps only what affects decoding, so a logical type
    # annotation does not change the fingerprint readers in other languages compute.
    assert fingerprint(annotated) == fingerprint(plain)


@pytest.mark.parametrize("name", sorted(SCHEMA_NAMES.values()))
def test_each_schema_file_is_registered_under_its_fingerprint(name: str) -> None:
    path = SCHEMAS / name / "v1.avsc"
    fp = fingerprint(json.loads(path.read_text("utf-8")))
    sv = REG.by_fingerprint(fp)
    assert sv is not None
    assert (sv.name, sv.version) == (name, 1)


def test_registry_knows_every_schema_family() -> None:
    assert REG.names() == sorted(SCHEMA_NAMES.values())


# --------------------------------------------------------------------------- round trips


def _directive(*, with_source: bool) -> Directive:
    source = (
        SourceRecord(
            topic="concord.lists.court",
            partition=2,
            offset=2**40,
            agency="court",
            key_id="court-k1",
            signature=bytes(range(64)),
            record=encode(entry()),
        )
        if with_source
        else None
    )
    return Directive(
        directive_id="d" * 32,
        action=Action.APPLY if with_source else Action.LIFT,
        subscriber="aviation",
        measure_id="aviation.no-air-tickets",
        measure_kind=MeasureKind.PUNISH,
        mou_id="mou-judgment-defaulters",
        mou_version=1,
        origin_agency="court",
        entry_id="court-2026-000123",
        entry_version=3,
        program="court.judgment-defaulters",
        subject_ref=f"LEGAL_REPRESENTATIVE:CN_RIC:{KNOWN_RIC}",
        target=TargetSubject(
            kind=SubjectKind.PERSON,
            role="LEGAL_REPRESENTATIVE",
            names=(Name(value="Wei Example", lang="en"),),
            identifiers=(Identifier(scheme="CN_RIC", value=KNOWN_RIC),),
        ),
        valid_from=datetime(2026, 3, 10, tzinfo=UTC),
        valid_until=datetime(2028, 3, 10, tzinfo=UTC) if with_source else None,
        seq=7,
        cause=Cause.LISTED if with_source else Cause.DELISTED,
        issued_at=AT,
        source=source,
    )


ROUND_TRIP = [
    pytest.param(entry(), id="event-listed-org-with-rep"),
    pytest.param(
        entry(subject=organization(reps=[legal_rep(), legal_rep(make_ric(7), "Second Rep")])),
        id="event-two-reps",
    ),
    pytest.param(
        entry(
            subject=person(),
            effective_until=None,
            publication_until=None,
            basis={"decision_no": "x", "issued_by": "y"},
        ),
        id="event-person-open-ended",
    ),
    pytest.param(entry(event_type="DELISTED", version=2, delisting=delisting("COURT_ORDER")), id="event-delisted"),
    pytest.param(_directive(with_source=True), id="directive-apply-with-source"),
    pytest.param(_directive(with_source=False), id="directive-lift-without-source"),
    pytest.param(
        Receipt(
            directive_id="d" * 32,
            agency="aviation",
            status=ReceiptStatus.APPLIED,
            directive_key="k",
            seq=7,
            recorded_at=AT,
        ),
        id="receipt-applied",
    ),
    pytest.param(
        Receipt(
            directive_id="e" * 32, agency="rail", status=ReceiptStatus.REJECTED, reason="FORGED: bad", recorded_at=AT
        ),
        id="receipt-rejected",
    ),
    pytest.param(
        QuarantineRecord(
            reason="UNKNOWN_FINGERPRINT",
            detail="unknown schema fingerprint 0011223344556677",
            source_topic="concord.lists.court",
            source_partition=1,
            source_offset=99,
            key=b"court-2026-000123",
            value=b"\xc3\x01\x00\x11\x22\x33\x44\x55\x66\x77garbage",
            headers=(Header(key="concord-agency", value=b"court"), Header(key="concord-sig", value=b"\x00\xff")),
            quarantined_by="concord-fanout",
            quarantined_at=AT,
        ),
        id="quarantine-full",
    ),
    pytest.param(
        QuarantineRecord(
            reason="UNSIGNED",
            detail="record carries no signature",
            source_topic="concord.lists.market",
            source_partition=0,
            source_offset=0,
            quarantined_by="concord-fanout",
            quarantined_at=AT,
        ),
        id="quarantine-minimal",
    ),
]


@pytest.mark.parametrize("model", ROUND_TRIP)
def test_every_model_round_trips(model: BaseModel) -> None:
    data = REG.encode_model(model)
    back = REG.decode_model(data, type(model))
    assert back == model
    # And the bytes are stable: encoding the decoded model gives the same record.
    assert REG.encode_model(back) == data


@pytest.mark.parametrize("model", ROUND_TRIP)
def test_header_is_marker_plus_the_writer_fingerprint(model: BaseModel) -> None:
    data = REG.encode_model(model)
    assert data[:2] == b"\xc3\x01" == MAGIC
    assert HEADER_LEN == 10
    name = SCHEMA_NAMES[type(model)]
    assert data[2:10] == REG.latest(name).fingerprint
    # The body is plain Avro binary that any reader with the schema can decode.
    parsed = fastavro.parse_schema(json.loads((SCHEMAS / name / "v1.avsc").read_text("utf-8")))
    datum = fastavro.schemaless_reader(io.BytesIO(data[10:]), parsed, None)
    assert type(model).model_validate(datum) == model


def test_decode_reports_the_schema_name() -> None:
    name, datum = REG.decode(encode(entry()))
    assert name == "list_entry_event"
    assert datum["entry_id"] == "court-2026-000123"


def test_a_registry_on_the_same_folder_reads_the_same_records() -> None:
    other = SchemaRegistry(SCHEMAS)
    data = encode(entry())
    assert other.decode_model(data, ListEntryEvent) == entry()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc3", id="one-byte"),
        pytest.param(b"\xc3\x01\x00\x00", id="short-header"),
        pytest.param(b'{"entry_id": "x"}', id="json"),
        pytest.param(b"\xc3\x02" + b"\x00" * 20, id="wrong-second-marker-byte"),
        pytest.param(b"\x00\x01" + b"\x00" * 20, id="wrong-first-marker-byte"),
    ],
)
def test_not_single_object(data: bytes) -> None:
    with pytest.raises(NotSingleObject):
        REG.decode(data)


def test_unknown_fingerprint() -> None:
    data = bytearray(encode(entry()))
    data[2:10] = fingerprint("null")
    with pytest.raises(UnknownFingerprint) as info:
        REG.decode_model(bytes(data), ListEntryEvent)
    assert info.value.reason == "UNKNOWN_FINGERPRINT"
    assert fingerprint("null").hex() in str(info.value)


@pytest.mark.parametrize(
    "model",
    [
        p
        for p in ROUND_TRIP
        if p.id in ("event-listed-org-with-rep", "directive-apply-with-source", "receipt-applied", "quarantine-full")
    ],
)
def test_every_truncation_of_the_body_is_undecodable(model: BaseModel) -> None:
    data = REG.encode_model(model)
    for cut in range(HEADER_LEN, len(data)):
        with pytest.raises(UndecodableBody):
            REG.decode_model(data[:cut], type(model))


@pytest.mark.parametrize("extra", [b"\x00", b"\x02", b"trailing garbage"])
def test_trailing_bytes_are_undecodable(extra: bytes) -> None:
    data = encode(entry()) + extra
    with pytest.raises(UndecodableBody, match="trailing"):
        REG.decode(data)


def test_a_record_of_another_kind_is_refused() -> None:
    receipt = Receipt(directive_id="d", agency="aviation", status=ReceiptStatus.APPLIED, recorded_at=AT)
    with pytest.raises(UndecodableBody, match="expected a list_entry_event"):
        REG.decode_model(REG.encode_model(receipt), ListEntryEvent)


def test_codec_errors_carry_their_quarantine_reason() -> None:
    assert NotSingleObject.reason == "NOT_SINGLE_OBJECT"
    assert UnknownFingerprint.reason == "UNKNOWN_FINGERPRINT"
    assert UndecodableBody.reason == "UNDECODABLE"


# --------------------------------------------------------------------------- properties

_MODELS = list(SCHEMA_NAMES)
_FPS = [REG.latest(n).fingerprint for n in sorted(SCHEMA_NAMES.values())]


def _model(param: pytest.ParameterSet) -> BaseModel:
    (model,) = param.values
    assert isinstance(model, BaseModel)
    return model


_SAMPLES = [REG.encode_model(_model(p)) for p in ROUND_TRIP]


def _decode_only_codec_errors(data: bytes) -> None:
    for cls in _MODELS:
        with contextlib.suppress(CodecError):
            REG.decode_model(data, cls)
    with contextlib.suppress(CodecError):
        REG.decode(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    _decode_only_codec_errors(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fp=st.sampled_from(_FPS), body=st.binary(max_size=300))
def test_arbitrary_bodies_behind_a_known_fingerprint_raise_only_codec_errors(fp: bytes, body: bytes) -> None:
    _decode_only_codec_errors(MAGIC + fp + body)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_records_raise_only_codec_errors(data: st.DataObject) -> None:
    sample = bytearray(data.draw(st.sampled_from(_SAMPLES)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(HEADER_LEN, len(sample) - 1))
        sample[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(HEADER_LEN, len(sample)))
    _decode_only_codec_errors(bytes(sample[:cut]))
