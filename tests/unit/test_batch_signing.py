"""Batch (Merkle-root) signatures: every member of a batch verifies on its own, with the
same reason codes as a record signature, one Ed25519 check per batch; nothing about a
member can be changed without refusal, and a root signature is never a record's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import merkle
from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.errors import SignatureInvalid
from services.core.intake import Refused, SourceCache, admit_directive, admit_list_record
from services.core.models import Directive
from services.core.reasons import Reason
from services.core.signing import (
    BATCH_HEADERS,
    H_PATH,
    H_ROOT,
    H_ROOT_SIG,
    H_SIG,
    BatchProof,
    Domain,
    Keyring,
    SignedHeaders,
    Signer,
    batch_signing_input,
    digest_of,
    signing_input,
)
from tests.unit.factories import NOW, entry, keyring, public_key, real_world
from tests.unit.subscriber_factories import RAIL, admit_signed, directive, forwarding

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
COURT = Signer.generate("court", "court-k1")
MARKET = Signer.generate("market", "market-k1")
FANOUT = Signer.generate("concord-fanout", "fanout-k1")
SEALED = [
    seal_record(entry(entry_id=f"court-2026-{i:06d}", event_id=f"court:court-2026-{i:06d}:1"), default_registry())
    for i in range(7)
]
RECORDS = [s.commitments for s in SEALED]  # what a publisher signs of a list record
BATCH = COURT.sign_batch(Domain.LIST_RECORD, RECORDS)


def _ring() -> Keyring:
    return keyring(COURT, MARKET)


def _reason(
    ring: Keyring,
    record: bytes,
    headers: SignedHeaders | None,
    *,
    domain: Domain = Domain.LIST_RECORD,
    expected: str = "court",
    at: datetime = AT,
) -> Reason | None:
    try:
        ring.verify(domain, record, headers, expected_agency=expected, at=at)
    except SignatureInvalid as exc:
        reason = exc.reason
    else:
        return None
    assert isinstance(reason, Reason)
    return reason


def _flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[i] ^= mask
    return bytes(out)


# --------------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_every_member_verifies_with_one_ed25519_check_per_batch(n: int) -> None:
    records = (RECORDS * 10)[:n]
    signed = COURT.sign_batch(Domain.LIST_RECORD, records)
    assert len({h.signature for h in signed}) == 1 and len({h.batch.root for h in signed if h.batch}) == 1
    ring = _ring()
    for record, headers in zip(records, signed, strict=True):
        assert ring.verify(Domain.LIST_RECORD, record, headers, expected_agency="court", at=AT) == headers
    assert (ring.root_misses, ring.root_hits) == (1, n - 1)


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        COURT.sign_batch(Domain.LIST_RECORD, [])


def test_headers_round_trip_through_kafka_and_the_header_set_decides() -> None:
    kafka = BATCH[3].as_kafka()
    assert [k for k, _ in kafka] == list(BATCH_HEADERS)
    assert SignedHeaders.from_kafka(kafka) == BATCH[3]
    single = COURT.sign(Domain.LIST_RECORD, RECORDS[3])
    assert SignedHeaders.from_kafka(single.as_kafka()) == single and single.batch is None
    # both kinds at once, or a batch set missing one header: no signature at all
    assert SignedHeaders.from_kafka([*kafka, (H_SIG, single.signature)]) is None
    for missing in (H_ROOT, H_ROOT_SIG, H_PATH):
        assert SignedHeaders.from_kafka([(k, v) for k, v in kafka if k != missing]) is None
    assert (
        _reason(_ring(), RECORDS[3], SignedHeaders.from_kafka([*kafka, (H_SIG, single.signature)])) is Reason.UNSIGNED
    )


@pytest.mark.parametrize("i", [0, 3])
def test_seals_carry_everything_and_round_trip(i: int) -> None:
    single = COURT.sign(Domain.LIST_RECORD, RECORDS[i])
    for h in (single, BATCH[i]):
        back = SignedHeaders.from_seal(h.agency, h.key_id, h.digest, h.seal())
        assert back == h
        assert _reason(_ring(), RECORDS[i], back) is None
    assert single.seal() == single.signature


# --------------------------------------------------------------------------- refusals, reason by reason


def test_a_path_for_one_record_never_verifies_another() -> None:
    ring = _ring()
    h3, h4 = BATCH[3], BATCH[4]
    swapped = SignedHeaders(h4.agency, h4.key_id, h4.digest, h4.signature, h3.batch)
    assert _reason(ring, RECORDS[4], swapped) is Reason.TAMPERED
    # nor does another record's digest with this record's path
    assert (
        _reason(ring, RECORDS[3], SignedHeaders(h3.agency, h3.key_id, h4.digest, h3.signature, h3.batch))
        is Reason.TAMPERED
    )


def test_malformed_path_is_tampered() -> None:
    h = BATCH[2]
    assert h.batch is not None
    for proof in (b"", h.batch.proof[:-1], h.batch.proof + b"\x00"):
        bad = SignedHeaders(h.agency, h.key_id, h.digest, h.signature, BatchProof(h.batch.root, proof))
        assert _reason(_ring(), RECORDS[2], bad) is Reason.TAMPERED


def test_a_root_signature_is_not_a_record_signature_and_back() -> None:
    ring = _ring()
    root_sig = BATCH[0].signature
    assert _reason(ring, RECORDS[0], SignedHeaders("court", COURT.key_id, BATCH[0].digest, root_sig)) is Reason.FORGED
    # a one-record batch: its root commits to exactly the record's digest, and still the two inputs differ
    one = COURT.sign_batch(Domain.LIST_RECORD, [RECORDS[0]])[0]
    single = COURT.sign(Domain.LIST_RECORD, RECORDS[0])
    assert one.batch is not None
    as_root = SignedHeaders(one.agency, one.key_id, one.digest, single.signature, one.batch)
    assert _reason(ring, RECORDS[0], as_root) is Reason.FORGED
    assert signing_input(Domain.LIST_RECORD, "court", COURT.key_id, RECORDS[0], one.digest) != batch_signing_input(
        Domain.LIST_RECORD, "court", COURT.key_id, 1, one.batch.root
    )


def test_a_root_verified_in_one_domain_is_not_accepted_in_another() -> None:
    ring = keyring(COURT, FANOUT)
    assert _reason(ring, RECORDS[0], BATCH[0]) is None  # the root is now cached for LIST_RECORD
    assert _reason(ring, RECORDS[1], BATCH[1], domain=Domain.DIRECTIVE) is Reason.FORGED


def test_a_cached_root_still_needs_the_key_in_force_and_the_right_agency() -> None:
    revoked = AT + timedelta(hours=1)
    ring = keyring(COURT, MARKET, revoked_at=revoked)
    assert _reason(ring, RECORDS[0], BATCH[0]) is None
    assert _reason(ring, RECORDS[1], BATCH[1], at=revoked) is Reason.KEY_REVOKED
    assert _reason(ring, RECORDS[1], BATCH[1], expected="market") is Reason.WRONG_AGENCY
    assert _reason(ring, RECORDS[1], BATCH[1]) is None


def test_the_root_cache_is_bounded_lru() -> None:
    ring = Keyring([public_key(COURT)], root_cache=2)
    batches = [COURT.sign_batch(Domain.LIST_RECORD, RECORDS[:k]) for k in (1, 2, 3)]
    for b in batches:
        ring.verify(Domain.LIST_RECORD, RECORDS[0], b[0], expected_agency="court", at=AT)
    assert ring.root_misses == 3
    ring.verify(Domain.LIST_RECORD, RECORDS[0], batches[0][0], expected_agency="court", at=AT)
    assert ring.root_misses == 4  # the oldest was forgotten
    ring.verify(Domain.LIST_RECORD, RECORDS[0], batches[2][0], expected_agency="court", at=AT)
    assert ring.root_hits == 1


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_single_byte_change_in_a_member_is_refused(data: st.DataObject) -> None:
    """Record, digest, root, path (index, size and hashes) and root signature: every byte counts,
    whether or not the batch's root is already cached."""
    i = data.draw(st.integers(0, len(RECORDS) - 1))
    h = BATCH[i]
    assert h.batch is not None
    ring = _ring()
    if data.draw(st.booleans()):
        assert _reason(ring, RECORDS[(i + 1) % len(RECORDS)], BATCH[(i + 1) % len(RECORDS)]) is None  # cache it
    part = data.draw(st.sampled_from(["record", "digest", "root", "path", "signature"]))
    mask = data.draw(st.integers(1, 255))
    record, digest, sig, root, proof = RECORDS[i], h.digest, h.signature, h.batch.root, h.batch.proof

    def at(b: bytes) -> int:
        return int(data.draw(st.integers(0, len(b) - 1)))

    if part == "record":
        record = _flip(record, at(record), mask)
    elif part == "digest":
        digest = _flip(digest, at(digest), mask)
    elif part == "root":
        root = _flip(root, at(root), mask)
    elif part == "path":
        proof = _flip(proof, at(proof), mask)
    else:
        sig = _flip(sig, at(sig), mask)
    got = _reason(ring, record, SignedHeaders(h.agency, h.key_id, digest, sig, BatchProof(root, proof)))
    expected = {
        "record": {Reason.TAMPERED},
        "digest": {Reason.TAMPERED},
        "root": {Reason.TAMPERED},
        "path": {Reason.TAMPERED, Reason.FORGED},  # a changed tree size may still lead to the root
        "signature": {Reason.FORGED},
    }[part]
    assert got in expected


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_single_byte_change_in_a_batch_seal_is_refused(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(RECORDS) - 1))
    seal = BATCH[i].seal()
    at = data.draw(st.integers(0, len(seal) - 1))
    altered = _flip(seal, at, data.draw(st.integers(1, 255)))
    headers = SignedHeaders.from_seal("court", COURT.key_id, BATCH[i].digest, altered)
    assert _reason(_ring(), RECORDS[i], headers) in (Reason.TAMPERED, Reason.FORGED)


# --------------------------------------------------------------------------- admission


def test_a_batch_signed_list_record_is_admitted_and_its_source_carries_the_seal() -> None:
    ring = keyring(COURT)
    acc = admit_list_record(
        origin="court",
        topic="t.lists.court",
        partition=0,
        offset=5,
        key=b"court-2026-000003",
        value=SEALED[3].value,
        headers=BATCH[3].as_kafka(),
        timestamp_ms=int(AT.timestamp() * 1000),
        keyring=ring,
        schemas=default_registry(),
        world=real_world(),
    )
    assert acc.source.signature == BATCH[3].seal()
    assert acc.source.record == RECORDS[3]
    sealed = SignedHeaders.from_seal("court", COURT.key_id, digest_of(acc.source.record), acc.source.signature)
    assert sealed == BATCH[3]


def _with_source(d: Directive, record: bytes, seal: bytes) -> Directive:
    return forwarding(d, record, seal, key_id=COURT.key_id)


def _sealed(event_id: str = "court:court-2026-000123:1", entry_id: str = "court-2026-000123") -> bytes:
    return seal_record(entry(entry_id=entry_id, event_id=event_id), default_registry()).commitments


def test_batch_signed_directives_forwarding_batch_signed_sources_are_admitted() -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    record = _sealed()
    src = COURT.sign_batch(Domain.LIST_RECORD, [record])[0]
    ds = [_with_source(directive(), record, src.seal()), _with_source(directive(measure=RAIL), record, src.seal())]
    values = [default_registry().encode_model(d) for d in ds]
    signed = FANOUT.sign_batch(Domain.DIRECTIVE, values)
    cache = SourceCache(ring)
    got = [
        admit_directive(
            agency="aviation",
            value=v,
            headers=h.as_kafka(),
            timestamp_ms=int(NOW.timestamp() * 1000),
            keyring=ring,
            schemas=default_registry(),
            sources=cache,
        )
        for v, h in zip(values, signed, strict=True)
    ]
    assert [d.measure_id for d in got] == ["aviation.no-air-tickets", RAIL]
    assert (cache.misses, cache.hits) == (1, 1)
    assert ring.root_misses == 2  # one directive batch, one source batch


@pytest.mark.parametrize("part", ["root", "path", "signature"])
def test_a_directive_whose_forwarded_seal_was_altered_is_refused(part: str) -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    records = [_sealed(), _sealed("court:court-2026-000999:1", "court-2026-000999")]
    src = COURT.sign_batch(Domain.LIST_RECORD, records)[0]
    assert src.batch is not None
    where = {"signature": 1, "root": 1 + 64, "path": 1 + 64 + 32 + 8}[part]
    seal = _flip(src.seal(), where)
    value = default_registry().encode_model(_with_source(directive(), records[0], seal))
    with pytest.raises(Refused) as refused:
        admit_signed(value, fanout=FANOUT, keyring=ring)
    assert refused.value.reason == ("FORGED" if part == "signature" else "TAMPERED")


def test_merkle_leaf_is_the_record_digest() -> None:
    h = BATCH[5]
    assert h.batch is not None
    index, size, path = merkle.decode_proof(h.batch.proof)
    assert (index, size) == (5, len(RECORDS))
    assert merkle.verify(h.digest, index, path, h.batch.root, size)
