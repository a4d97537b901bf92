"""Property-based fuzzing of everything that reads bytes from the wire: whatever arrives,
the only way out is a value or a typed refusal — never another exception.

Targets: the record decoder (:mod:`services.core.codec`), signature headers
(``SignedHeaders.from_kafka`` / ``from_seal`` and a verification with them), Merkle
audit paths (``merkle.decode_proof`` / ``root_from_path``) and the directive decoder
(``decode_model(..., Directive)`` and ``intake.admit_directive``, also on list records
through ``admit_list_record``).

Inputs are of three kinds: arbitrary bytes; valid records mutated (bytes flipped,
inserted, deleted, truncated); and bodies that are valid Avro for the schema but carry
any values (generated from the ``.avsc`` itself), so that decoding gets past fastavro
and reaches the models.  Records are signed after mutation where the point is to reach
the decoder behind the signature check.

Budget: ``derandomize=True`` (the same examples on every run, so CI is reproducible),
``max_examples`` per property below (``FUZZ_EXAMPLES``, 150 by default; raise it to
search longer, e.g. ``CONCORD_FUZZ_EXAMPLES=20000``), a 2 s deadline per example.  The
whole file takes about 3 s here at the default budget.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core import merkle
from services.core.codec import MAGIC, SCHEMA_NAMES, default_registry, default_schema_root
from services.core.errors import CodecError, SignatureInvalid
from services.core.intake import Refused, SourceCache, admit_directive, admit_list_record
from services.core.models import Directive, SourceRecord
from services.core.reasons import RECORD_REASONS
from services.core.signing import BATCH_HEADERS, SIGNATURE_HEADERS, Domain, Keyring, SignedHeaders, Signer
from tests.unit.factories import NOW, entry, public_key, real_world
from tests.unit.subscriber_factories import directive

pytestmark = pytest.mark.unit

FUZZ_EXAMPLES = int(os.environ.get("CONCORD_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(seconds=2),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SCHEMAS = default_registry()
COURT = Signer.generate("court", "court-k1")
FANOUT = Signer.generate("concord-fanout", "fanout-k1")
RING = Keyring([public_key(COURT), public_key(FANOUT)])
AT_MS = int(NOW.timestamp() * 1000)
WORLD = real_world()


# --------------------------------------------------------------------------- inputs


def _valid_records() -> list[bytes]:
    src = SCHEMAS.encode_model(entry())
    seal = COURT.sign_batch(Domain.LIST_RECORD, [src, SCHEMAS.encode_model(entry(version=2))])[0].seal()
    d = directive().model_copy(
        update={
            "source": SourceRecord(
                topic="t", partition=0, offset=0, agency="court", key_id=COURT.key_id, signature=seal, record=src
            )
        }
    )
    return [src, SCHEMAS.encode_model(d), SCHEMAS.encode_model(directive())]


VALID = _valid_records()


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes] = VALID) -> bytes:
    """A valid record with a few bytes flipped, set, inserted or deleted, or cut short."""
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate")))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "string": st.text(max_size=40),
    "bytes": st.binary(max_size=40),
}


def _avro_datum(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any value fastavro writes for ``schema``: the Avro is valid, the content anything."""
    if isinstance(schema, str):
        primitive = _PRIMITIVES.get(schema)
        if primitive is not None:
            return primitive
        return st.deferred(lambda: _avro_datum(named[schema.split(".")[-1]], named))
    if isinstance(schema, list):
        return st.one_of([_avro_datum(s, named) for s in schema])
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return st.fixed_dictionaries({f["name"]: _avro_datum(f["type"], named) for f in schema["fields"]})
    if kind == "enum":
        named[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(_avro_datum(schema["items"], named), max_size=3)
    return _avro_datum(kind, named)  # a primitive with a logical type: its raw value, any in range


def _valid_avro(name: str) -> st.SearchStrategy[bytes]:
    raw = json.loads((default_schema_root() / name / f"v{SCHEMAS.latest(name).version}.avsc").read_text())
    sv = SCHEMAS.latest(name)

    def encode(datum: Any) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC + sv.fingerprint)
        fastavro.schemaless_writer(buf, sv.schema, datum)
        return buf.getvalue()

    return _avro_datum(raw, {}).map(encode)


WIRE = st.one_of(st.binary(max_size=600), mutated(), *(_valid_avro(n) for n in SCHEMAS.names()))


def _signed(domain: Domain, signer: Signer, value: bytes, batch: bool) -> list[tuple[str, bytes]]:
    if batch:
        return signer.sign_batch(domain, [value, b"another record"])[0].as_kafka()
    return signer.sign(domain, value).as_kafka()


def _refused(fn: Callable[[], object], *allowed: type[BaseException]) -> BaseException | None:
    """Run ``fn``; the refusal it raised, if one of ``allowed``; any other exception fails the property."""
    try:
        fn()
    except allowed as exc:
        return exc
    return None


def _admit_as_aviation(value: bytes, headers: list[tuple[str, bytes]]) -> Directive:
    """``value`` admitted (or refused) by the aviation subscriber, with a fresh cache of source records."""
    return admit_directive(
        agency="aviation",
        value=value,
        headers=headers,
        timestamp_ms=AT_MS,
        keyring=RING,
        schemas=SCHEMAS,
        sources=SourceCache(RING),
    )


def _reason_known(refusal: BaseException | None) -> bool:
    return refusal is None or getattr(refusal, "reason", None) in RECORD_REASONS


# --------------------------------------------------------------------------- the record decoder


@FUZZ
@given(WIRE, st.sampled_from([*SCHEMA_NAMES]))
def test_decoding_any_bytes_gives_a_model_or_a_codec_error(data: bytes, model: type[Any]) -> None:
    assert _reason_known(_refused(lambda: SCHEMAS.decode(data), CodecError))
    decoded: list[Any] = []
    assert _reason_known(_refused(lambda: decoded.append(SCHEMAS.decode_model(data, model)), CodecError))
    assert all(isinstance(d, tuple(SCHEMA_NAMES)) for d in decoded)


# --------------------------------------------------------------------------- signature headers

HEADER_NAMES = st.sampled_from([*SIGNATURE_HEADERS, *BATCH_HEADERS, "other", ""])
HEADERS = st.one_of(
    st.none(),
    st.lists(st.tuples(HEADER_NAMES, st.one_of(st.binary(max_size=120), st.none())), max_size=9),
)


@FUZZ
@given(HEADERS, st.sampled_from(VALID), st.booleans())
def test_any_headers_parse_to_evidence_or_none_and_verify_or_refuse(
    headers: list[tuple[str, Any]] | None, record: bytes, mix: bool
) -> None:
    if mix and headers is not None:  # start from real evidence, then add the fuzzed headers to it
        headers = [*_signed(Domain.LIST_RECORD, COURT, record, batch=True), *headers]
    parsed = SignedHeaders.from_kafka(headers)
    if parsed is None:
        return
    assert isinstance(parsed.agency, str) and isinstance(parsed.key_id, str)
    _refused(lambda: RING.verify(Domain.LIST_RECORD, record, parsed, expected_agency="court", at=NOW), SignatureInvalid)


@FUZZ
@given(
    st.one_of(st.binary(max_size=1500), mutated([COURT.sign_batch(Domain.LIST_RECORD, VALID)[1].seal()])),
    st.sampled_from(VALID),
)
def test_any_seal_verifies_or_is_refused(seal: bytes, record: bytes) -> None:
    headers = SignedHeaders.from_seal("court", COURT.key_id, merkle_digest(record), seal)
    _refused(
        lambda: RING.verify(Domain.LIST_RECORD, record, headers, expected_agency="court", at=NOW), SignatureInvalid
    )


def merkle_digest(record: bytes) -> bytes:
    from services.core.signing import digest_of

    return digest_of(record)


# --------------------------------------------------------------------------- audit paths


@FUZZ
@given(st.binary(max_size=1200))
def test_any_proof_bytes_decode_or_raise_value_error(data: bytes) -> None:
    try:
        index, size, path = merkle.decode_proof(data)
    except ValueError:
        return
    assert all(len(p) == merkle.HASH_LEN for p in path)
    assert merkle.root_from_path(b"\x00" * 32, index, size, path) is None or size >= 1


@FUZZ
@given(
    st.binary(max_size=64),
    st.integers(-(2**40), 2**40),
    st.integers(-(2**40), 2**40),
    st.lists(st.binary(max_size=40), max_size=40),
)
def test_root_from_any_path_is_bytes_or_none(leaf: bytes, index: int, size: int, path: list[bytes]) -> None:
    root = merkle.root_from_path(leaf, index, size, path)
    assert root is None or len(root) == merkle.HASH_LEN


@FUZZ
@given(st.integers(1, 64), st.data())
def test_a_real_path_proves_only_its_own_leaf(size: int, data: st.DataObject) -> None:
    leaves = [bytes([i]) * 32 for i in range(size)]
    tree = merkle.MerkleTree(leaves)
    i = data.draw(st.integers(0, size - 1))
    j = data.draw(st.integers(0, size - 1))
    assert merkle.verify(leaves[i], i, tree.path(i), tree.root, size)
    assert merkle.verify(leaves[j], i, tree.path(i), tree.root, size) is (leaves[j] == leaves[i])


# --------------------------------------------------------------------------- admission


@FUZZ
@given(WIRE, st.booleans(), st.booleans())
def test_any_directive_is_admitted_or_refused_with_a_reason(value: bytes, sign: bool, batch: bool) -> None:
    """Signed by the fan-out (so decoding and the source checks are reached) or not."""
    headers = _signed(Domain.DIRECTIVE, FANOUT, value, batch) if sign else []
    admitted: list[Directive] = []
    refusal = _refused(
        lambda: admitted.append(_admit_as_aviation(value, headers)),
        Refused,
    )
    assert _reason_known(refusal)
    assert all(d.subscriber == "aviation" for d in admitted)


@st.composite
def directives_with_fuzzed_sources(draw: st.DrawFn) -> bytes:
    """A well-formed directive whose forwarded record is fuzzed and then signed by the court,
    so that the publisher's signature holds and the record's decoder is what is tested."""
    record = draw(WIRE)
    batch = draw(st.booleans())
    signed = COURT.sign_batch(Domain.LIST_RECORD, [record])[0] if batch else COURT.sign(Domain.LIST_RECORD, record)
    seal = draw(st.one_of(st.just(signed.seal()), mutated([signed.seal()])))
    d = directive().model_copy(
        update={
            "source": SourceRecord(
                topic="t", partition=0, offset=0, agency="court", key_id=COURT.key_id, signature=seal, record=record
            )
        }
    )
    return SCHEMAS.encode_model(d)


@FUZZ
@given(directives_with_fuzzed_sources())
def test_any_forwarded_record_is_admitted_or_refused_with_a_reason(value: bytes) -> None:
    headers = FANOUT.sign(Domain.DIRECTIVE, value).as_kafka()
    refusal = _refused(lambda: _admit_as_aviation(value, headers), Refused)
    assert _reason_known(refusal)


# Record timestamps over the whole int64 range: one past year 9999 (found by this fuzzer: 2**62
# stopped admission) is refused as INVALID_TIMESTAMP.
TIMESTAMPS = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))


@FUZZ
@given(WIRE, st.one_of(st.none(), st.binary(max_size=40)), st.booleans(), TIMESTAMPS)
def test_any_list_record_is_admitted_or_refused_with_a_reason(
    value: bytes, key: bytes | None, batch: bool, timestamp_ms: int | None
) -> None:
    headers = _signed(Domain.LIST_RECORD, COURT, value, batch)
    refusal = _refused(
        lambda: admit_list_record(
            origin="court",
            topic="t.lists.court",
            partition=0,
            offset=0,
            key=key,
            value=value,
            headers=headers,
            timestamp_ms=timestamp_ms,
            keyring=RING,
            schemas=SCHEMAS,
            world=WORLD,
        ),
        Refused,
    )
    assert _reason_known(refusal)


def test_the_budget_is_fixed_and_reproducible() -> None:
    assert FUZZ.derandomize and FUZZ.max_examples == FUZZ_EXAMPLES and FUZZ.database is None
    assert datetime.now(UTC) > NOW - timedelta(days=36500)  # NOW is a fixed instant, not the clock
