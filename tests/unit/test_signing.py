"""Ed25519 record signatures: a record verifies only as signed, by the key and
agency it names, inside that key's validity, in the domain it was signed for;
every refusal carries the reason code the quarantine counts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.errors import SignatureInvalid
from services.core.reasons import SIGNATURE_REASONS, Reason
from services.core.signing import (
    H_AGENCY,
    H_DIGEST,
    H_KEY,
    H_SIG,
    SIGNATURE_HEADERS,
    Domain,
    Keyring,
    PublicKey,
    SignedHeaders,
    Signer,
    digest_of,
    signing_input,
)
from tests.unit.factories import KEY_VALID_FROM, days, entry, keyring, public_key, signed_record

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
COURT = Signer.generate("court", "court-k1")
MARKET = Signer.generate("market", "market-k1")
SIGNED = signed_record(signer=COURT)
RING = keyring(COURT, MARKET)


def _refusal(
    ring: Keyring,
    record: bytes,
    headers: SignedHeaders | None,
    *,
    expected: str | None = "court",
    at: datetime = AT,
    domain: Domain = Domain.LIST_RECORD,
) -> Reason:
    with pytest.raises(SignatureInvalid) as info:
        ring.verify(domain, record, headers, expected_agency=expected, at=at)
    return info.value.reason


def _flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[i] ^= mask
    return bytes(out)


# --------------------------------------------------------------------------- acceptance


def test_round_trip() -> None:
    got = RING.verify(Domain.LIST_RECORD, SIGNED.record, SIGNED.headers, expected_agency="court", at=AT)
    assert got == SIGNED.headers
    assert got.agency == "court" and got.key_id == "court-k1"
    assert got.digest == digest_of(SIGNED.record)
    assert len(got.signature) == 64


def test_any_channel_when_no_agency_is_expected() -> None:
    assert RING.verify(Domain.LIST_RECORD, SIGNED.record, SIGNED.headers, expected_agency=None, at=AT)


def test_signature_covers_agency_key_fingerprint_and_digest() -> None:
    si = signing_input(Domain.LIST_RECORD, "court", "court-k1", SIGNED.record, SIGNED.headers.digest)
    assert b"concord/v1/list-record" in si
    assert b"court-k1" in si
    assert SIGNED.record[2:10] in si
    assert SIGNED.headers.digest in si


def test_signer_survives_a_pem_round_trip() -> None:
    again = Signer.from_pem("court", "court-k1", COURT.private_pem())
    assert again.public_bytes() == COURT.public_bytes()
    headers = again.sign(Domain.LIST_RECORD, SIGNED.record)
    assert RING.verify(Domain.LIST_RECORD, SIGNED.record, headers, expected_agency="court", at=AT)


def test_public_key_json_round_trip() -> None:
    key = public_key(COURT, valid_until=AT + days(365), revoked_at=AT + days(30))
    assert PublicKey.from_json(key.to_json()) == key


# --------------------------------------------------------------------------- each reason code


def _other_court_key() -> Signer:
    return Signer.generate("court", "court-k1")  # same name, different key material


# What each case builds: the keyring, the record, its headers, and the keyword arguments of the check.
Case = tuple[Keyring, bytes, SignedHeaders | None, dict[str, Any]]

CASES = [
    pytest.param(lambda: (RING, SIGNED.record, None, {}), Reason.UNSIGNED, id="UNSIGNED"),
    pytest.param(
        lambda: (RING, _flip(SIGNED.record, len(SIGNED.record) // 2), SIGNED.headers, {}),
        Reason.TAMPERED,
        id="TAMPERED-record-byte",
    ),
    pytest.param(
        lambda: (
            RING,
            SIGNED.record,
            SignedHeaders("court", "court-k1", SIGNED.headers.digest, _flip(SIGNED.headers.signature, 5)),
            {},
        ),
        Reason.FORGED,
        id="FORGED-signature-byte",
    ),
    pytest.param(
        lambda: (RING, SIGNED.record, _other_court_key().sign(Domain.LIST_RECORD, SIGNED.record), {}),
        Reason.FORGED,
        id="FORGED-by-an-impostor-key-with-a-known-id",
    ),
    pytest.param(
        lambda: (RING, SIGNED.record, Signer.generate("court", "court-k9").sign(Domain.LIST_RECORD, SIGNED.record), {}),
        Reason.UNKNOWN_KEY,
        id="UNKNOWN_KEY",
    ),
    pytest.param(
        lambda: (RING, SIGNED.record, SIGNED.headers, {"expected": "market"}),
        Reason.WRONG_AGENCY,
        id="WRONG_AGENCY-court-key-on-market-channel",
    ),
    pytest.param(
        lambda: (
            RING,
            SIGNED.record,
            Signer.from_pem("market", "court-k1", COURT.private_pem()).sign(Domain.LIST_RECORD, SIGNED.record),
            {"expected": "market"},
        ),
        Reason.WRONG_AGENCY,
        id="WRONG_AGENCY-court-key-id-claimed-by-market",
    ),
    pytest.param(
        lambda: (keyring(COURT, valid_until=AT), SIGNED.record, SIGNED.headers, {}),
        Reason.KEY_EXPIRED,
        id="KEY_EXPIRED-at-valid_until",
    ),
    pytest.param(
        lambda: (keyring(COURT, valid_until=AT - days(1)), SIGNED.record, SIGNED.headers, {}),
        Reason.KEY_EXPIRED,
        id="KEY_EXPIRED-after-valid_until",
    ),
    pytest.param(
        lambda: (keyring(COURT, valid_from=AT + days(1)), SIGNED.record, SIGNED.headers, {}),
        Reason.KEY_NOT_YET_VALID,
        id="KEY_NOT_YET_VALID",
    ),
    pytest.param(
        lambda: (keyring(COURT, revoked_at=AT), SIGNED.record, SIGNED.headers, {}),
        Reason.KEY_REVOKED,
        id="KEY_REVOKED-at-revoked_at",
    ),
    pytest.param(
        lambda: (keyring(COURT, revoked_at=AT - days(3)), SIGNED.record, SIGNED.headers, {}),
        Reason.KEY_REVOKED,
        id="KEY_REVOKED-after-revoked_at",
    ),
]


@pytest.mark.parametrize(("build", "reason"), CASES)
def test_each_refusal_has_its_reason(build: Callable[[], Case], reason: Reason) -> None:
    ring, record, headers, kw = build()
    assert _refusal(ring, record, headers, **kw) is reason


def test_reason_codes_are_all_covered() -> None:
    covered = {p.values[1] for p in CASES}
    assert covered == set(SIGNATURE_REASONS)


def test_record_signed_before_revocation_still_verifies() -> None:
    ring = keyring(COURT, revoked_at=AT)
    before = AT - days(1)
    assert ring.verify(Domain.LIST_RECORD, SIGNED.record, SIGNED.headers, expected_agency="court", at=before)
    # ...and one microsecond before is still before.
    assert ring.verify(
        Domain.LIST_RECORD,
        SIGNED.record,
        SIGNED.headers,
        expected_agency="court",
        at=datetime(2026, 3, 10, 11, 59, 59, 999999, tzinfo=UTC),
    )


def test_key_is_valid_from_its_first_instant() -> None:
    ring = keyring(COURT, valid_from=AT)
    assert ring.verify(Domain.LIST_RECORD, SIGNED.record, SIGNED.headers, expected_agency="court", at=AT)
    assert _refusal(ring, SIGNED.record, SIGNED.headers, at=KEY_VALID_FROM) is Reason.KEY_NOT_YET_VALID


def test_refusal_is_a_signature_error_with_a_message() -> None:
    with pytest.raises(SignatureInvalid) as info:
        RING.verify(Domain.LIST_RECORD, SIGNED.record, SIGNED.headers, expected_agency="market", at=AT)
    assert "court" in str(info.value) and "market" in str(info.value)


# --------------------------------------------------------------------------- domain separation


@pytest.mark.parametrize("other", [Domain.DIRECTIVE, Domain.RECEIPT, Domain.REGISTRY])
def test_list_record_signature_is_not_valid_in_another_domain(other: Domain) -> None:
    assert _refusal(RING, SIGNED.record, SIGNED.headers, domain=other) is Reason.FORGED


def test_directive_signature_is_not_valid_as_list_record() -> None:
    fanout = Signer.generate("concord-fanout", "fanout-k1")
    ring = keyring(fanout)
    headers = fanout.sign(Domain.DIRECTIVE, SIGNED.record)
    assert ring.verify(Domain.DIRECTIVE, SIGNED.record, headers, expected_agency="concord-fanout", at=AT)
    assert _refusal(ring, SIGNED.record, headers, expected="concord-fanout") is Reason.FORGED


# --------------------------------------------------------------------------- properties

_SIG_LEN = 64


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_in_the_record_is_refused(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(SIGNED.record) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    assert _refusal(RING, _flip(SIGNED.record, i, mask), SIGNED.headers) is Reason.TAMPERED


@settings(max_examples=200, deadline=None)
@given(i=st.integers(0, _SIG_LEN - 1), mask=st.integers(1, 255))
def test_any_single_byte_change_in_the_signature_is_refused(i: int, mask: int) -> None:
    h = SIGNED.headers
    forged = SignedHeaders(h.agency, h.key_id, h.digest, _flip(h.signature, i, mask))
    assert _refusal(RING, SIGNED.record, forged) is Reason.FORGED


@settings(max_examples=100, deadline=None)
@given(i=st.integers(0, 31), mask=st.integers(1, 255))
def test_any_single_byte_change_in_the_digest_is_refused(i: int, mask: int) -> None:
    h = SIGNED.headers
    altered = SignedHeaders(h.agency, h.key_id, _flip(h.digest, i, mask), h.signature)
    assert _refusal(RING, SIGNED.record, altered) in (Reason.TAMPERED, Reason.FORGED)


@settings(max_examples=50, deadline=None)
@given(version=st.integers(1, 2**31 - 1), reason=st.text(min_size=1, max_size=50).filter(str.strip))
def test_every_signed_record_verifies(version: int, reason: str) -> None:
    record = signed_record(entry(version=version, reason=reason), signer=COURT)
    assert RING.verify(Domain.LIST_RECORD, record.record, record.headers, expected_agency="court", at=AT)


# --------------------------------------------------------------------------- Kafka headers


def test_headers_round_trip_through_kafka_form() -> None:
    kafka = SIGNED.headers.as_kafka()
    assert [k for k, _ in kafka] == list(SIGNATURE_HEADERS)
    assert all(isinstance(v, bytes) for _, v in kafka)
    assert SignedHeaders.from_kafka(kafka) == SIGNED.headers


def test_from_kafka_ignores_other_headers_and_order() -> None:
    kafka = [("traceparent", b"00-abc"), *reversed(SIGNED.headers.as_kafka()), ("x", b"")]
    assert SignedHeaders.from_kafka(kafka) == SIGNED.headers


def test_from_kafka_accepts_bytearrays() -> None:
    kafka = [(k, bytearray(v)) for k, v in SIGNED.headers.as_kafka()]
    assert SignedHeaders.from_kafka(kafka) == SIGNED.headers  # type: ignore[arg-type]  # what a client may hand over


@pytest.mark.parametrize("missing", SIGNATURE_HEADERS)
def test_from_kafka_without_one_header_is_unsigned(missing: str) -> None:
    kafka = [(k, v) for k, v in SIGNED.headers.as_kafka() if k != missing]
    assert SignedHeaders.from_kafka(kafka) is None
    assert _refusal(RING, SIGNED.record, SignedHeaders.from_kafka(kafka)) is Reason.UNSIGNED


@pytest.mark.parametrize("headers", [None, [], [(H_AGENCY, None), (H_KEY, b"k"), (H_DIGEST, b"d"), (H_SIG, b"s")]])
def test_from_kafka_without_headers_is_none(headers: Any) -> None:  # whatever a client hands over
    assert SignedHeaders.from_kafka(headers) is None


@pytest.mark.parametrize("name", [H_AGENCY, H_KEY])
def test_from_kafka_with_undecodable_text_is_none(name: str) -> None:
    kafka = [(k, b"\xff\xfe" if k == name else v) for k, v in SIGNED.headers.as_kafka()]
    assert SignedHeaders.from_kafka(kafka) is None
