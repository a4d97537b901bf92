"""The subscriber's admission with the publisher-signature cache: a hit saves only the
repeated Ed25519 check — tampered bytes, another origin, or a key revoked by the
directive's time are still refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.intake import Refused, SourceCache, admit_directive
from services.core.models import Directive
from services.core.signing import Domain, Keyring, Signer
from tests.unit.factories import NOW, entry, public_key
from tests.unit.subscriber_factories import RAIL, admit_signed, directive, forwarding

pytestmark = pytest.mark.unit

COURT = Signer.generate("court", "court-k1")
FANOUT = Signer.generate("concord-fanout", "fanout-k1")


SEALED = seal_record(entry(), default_registry())


def with_source(d: Directive, record: bytes, signature: bytes, agency: str = "court") -> Directive:
    return forwarding(d, record, signature, key_id=COURT.key_id, agency=agency, disclosures=SEALED.disclosures)


def admit(d: Directive, ring: Keyring, cache: SourceCache, at: datetime = NOW) -> Directive:
    return admit_signed(default_registry().encode_model(d), fanout=FANOUT, keyring=ring, at=at, sources=cache)


@pytest.fixture
def source() -> tuple[bytes, bytes]:
    """A listing's signed commitments and the court's signature over them."""
    return SEALED.commitments, COURT.sign(Domain.LIST_RECORD, SEALED.commitments).signature


def test_directives_forwarding_one_source_verify_it_once(source: tuple[bytes, bytes]) -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    cache = SourceCache(ring)
    first = admit(with_source(directive(), *source), ring, cache)
    second = admit(with_source(directive(measure=RAIL), *source), ring, cache)
    assert (first.measure_id, second.measure_id) == ("aviation.no-air-tickets", RAIL)
    assert (cache.misses, cache.hits) == (1, 1)


def test_cached_signature_on_altered_bytes_is_refused(source: tuple[bytes, bytes]) -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    cache = SourceCache(ring)
    record, sig = source
    admit(with_source(directive(), record, sig), ring, cache)
    altered = record[:-1] + bytes([record[-1] ^ 1])
    with pytest.raises(Refused) as refused:
        admit(with_source(directive(measure=RAIL), altered, sig), ring, cache)
    # A source carries no digest of its own (it is recomputed), so altered bytes read as a forgery.
    assert refused.value.reason == "FORGED"
    assert cache.hits == 0


def test_cached_signature_from_another_origin_is_refused(source: tuple[bytes, bytes]) -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    cache = SourceCache(ring)
    admit(with_source(directive(), *source), ring, cache)
    with pytest.raises(Refused) as refused:
        admit(with_source(directive(measure=RAIL), *source, agency="market"), ring, cache)
    assert refused.value.reason == "WRONG_AGENCY"


def test_key_revoked_by_the_directive_time_is_refused_even_when_cached(source: tuple[bytes, bytes]) -> None:
    revoked = NOW + timedelta(days=1)
    ring = Keyring([public_key(COURT, revoked_at=revoked), public_key(FANOUT)])
    cache = SourceCache(ring)
    admit(with_source(directive(), *source), ring, cache)
    with pytest.raises(Refused) as refused:
        admit(with_source(directive(measure=RAIL), *source), ring, cache, at=revoked + timedelta(seconds=1))
    assert refused.value.reason == "KEY_REVOKED"
    assert cache.hits == 0


# --- when a signature is judged: the broker's time, the forwarded record's own ----------------------


def with_appended(d: Directive, appended: datetime | None) -> Directive:
    assert d.source is not None
    return d.model_copy(update={"source": d.source.model_copy(update={"appended_at": appended})})


def test_a_directive_re_issued_after_its_publisher_rotated_keys_verifies(source: tuple[bytes, bytes]) -> None:
    """The court's key ended (rotated out) a day after the listing; the fan-out re-issues the directive
    later (a resync, an MOU change) with the record's own broker time, at which the key was good."""
    listed = NOW
    rotated_out = NOW + timedelta(days=1)
    ring = Keyring([public_key(COURT, valid_until=rotated_out), public_key(FANOUT)])
    later = rotated_out + timedelta(days=3)
    reissued = with_appended(with_source(directive(), *source), listed)
    assert admit(reissued, ring, SourceCache(ring), at=later).source is not None
    # Without the record's own time it would be judged at the directive's, and refused.
    with pytest.raises(Refused) as refused:
        admit(with_appended(reissued, None), ring, SourceCache(ring), at=later)
    assert refused.value.reason == "KEY_EXPIRED"


def test_a_forwarded_record_cannot_claim_a_time_after_its_directive(source: tuple[bytes, bytes]) -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    d = with_appended(with_source(directive(), *source), NOW + timedelta(minutes=1))
    with pytest.raises(Refused) as refused:
        admit(d, ring, SourceCache(ring), at=NOW)
    assert refused.value.reason == "SOURCE_MISMATCH"


def test_a_forwarded_record_appended_after_its_keys_revocation_is_refused(source: tuple[bytes, bytes]) -> None:
    revoked = NOW - timedelta(hours=1)
    ring = Keyring([public_key(COURT, revoked_at=revoked), public_key(FANOUT)])
    with pytest.raises(Refused) as refused:
        admit(with_appended(with_source(directive(), *source), NOW), ring, SourceCache(ring), at=NOW)
    assert refused.value.reason == "KEY_REVOKED"


def test_a_directive_stamped_by_its_producer_is_refused(source: tuple[bytes, bytes]) -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    value = default_registry().encode_model(with_source(directive(), *source))
    with pytest.raises(Refused) as refused:
        admit_signed(value, fanout=FANOUT, keyring=ring, stamped_by_broker=False)
    assert refused.value.reason == "UNTRUSTED_TIMESTAMP"


def test_a_directive_routed_by_a_newer_registry_waits_for_it(source: tuple[bytes, bytes]) -> None:
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    d = with_source(directive(), *source).model_copy(update={"registry_serial": 7})
    value = default_registry().encode_model(d)
    headers = FANOUT.sign(Domain.DIRECTIVE, value).as_kafka()

    def verify(serial: int | None) -> Directive:
        return admit_directive(
            agency="aviation",
            value=value,
            headers=headers,
            timestamp_ms=int(NOW.timestamp() * 1000),
            keyring=ring,
            schemas=default_registry(),
            registry_serial=serial,
        )

    with pytest.raises(Refused) as refused:
        verify(6)
    assert refused.value.reason == "REGISTRY_BEHIND"
    assert verify(7).registry_serial == 7
    assert verify(8).registry_serial == 7
    assert verify(None).registry_serial == 7  # a verifier on files does not compare serials


def test_a_fanout_key_not_yet_in_hand_reads_as_a_registry_behind_not_a_forgery(source: tuple[bytes, bytes]) -> None:
    rotated = Signer.generate("concord-fanout", "fanout-k2")
    ring = Keyring([public_key(COURT), public_key(FANOUT)])
    value = default_registry().encode_model(with_source(directive(), *source))
    headers = rotated.sign(Domain.DIRECTIVE, value).as_kafka()
    kw: dict[str, Any] = {
        "agency": "aviation",
        "value": value,
        "headers": headers,
        "timestamp_ms": int(NOW.timestamp() * 1000),
        "keyring": ring,
        "schemas": default_registry(),
    }
    with pytest.raises(Refused) as refused:
        admit_directive(**kw, registry_serial=3)
    assert refused.value.reason == "REGISTRY_BEHIND"
    with pytest.raises(Refused) as refused:
        admit_directive(**kw)
    assert refused.value.reason == "UNKNOWN_KEY"
