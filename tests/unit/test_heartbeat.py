"""Heartbeat admission: recognised by schema alone, verified as the fan-out's, bound to its partition and agency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.core.codec import default_registry
from services.core.heartbeat import admit_heartbeat, is_heartbeat
from services.core.intake import Refused
from services.core.models import Heartbeat, Receipt, ReceiptStatus
from services.core.signing import Domain, Keyring, PublicKey, Signer

pytestmark = pytest.mark.unit

FANOUT = Signer.generate("concord-fanout", "fanout-1")
COURT = Signer.generate("court", "court-1")
RING = Keyring(
    [PublicKey(s.agency, s.key_id, s.public_bytes(), datetime(2020, 1, 1, tzinfo=UTC)) for s in (FANOUT, COURT)]
)
TS = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp() * 1000)


def beat(partition: int = 1, subscriber: str = "aviation") -> bytes:
    return default_registry().encode_model(
        Heartbeat(
            subscriber=subscriber,
            partition=partition,
            issued_by="w1",
            issued_at=datetime(2026, 3, 10, tzinfo=UTC),
            interval_ms=5000,
        )
    )


def admit(value: bytes, headers: list[tuple[str, bytes]], partition: int = 1) -> Heartbeat:
    return admit_heartbeat(
        agency="aviation",
        partition=partition,
        value=value,
        headers=headers,
        timestamp_ms=TS,
        keyring=RING,
        schemas=default_registry(),
    )


def test_a_heartbeat_is_recognised_by_its_schema_alone() -> None:
    receipt = default_registry().encode_model(
        Receipt(directive_id="d", agency="aviation", status=ReceiptStatus.APPLIED, recorded_at=datetime.now(UTC))
    )
    assert is_heartbeat(default_registry(), beat())
    assert not is_heartbeat(default_registry(), receipt)
    assert not is_heartbeat(default_registry(), b"garbage") and not is_heartbeat(default_registry(), None)


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_the_fanouts_heartbeat_is_admitted(batch: bool) -> None:
    value = beat()
    headers = FANOUT.sign_batch(Domain.HEARTBEAT, [value])[0] if batch else FANOUT.sign(Domain.HEARTBEAT, value)
    assert admit(value, headers.as_kafka()).partition == 1


@pytest.mark.parametrize(
    ("value", "signer", "domain", "partition", "reason"),
    [
        (beat(), COURT, Domain.HEARTBEAT, 1, "WRONG_AGENCY"),
        (beat(), FANOUT, Domain.DIRECTIVE, 1, "FORGED"),  # a directive's signature is not a heartbeat's
        (beat(subscriber="rail"), FANOUT, Domain.HEARTBEAT, 1, "WRONG_SUBSCRIBER"),
        (beat(partition=0), FANOUT, Domain.HEARTBEAT, 1, "WRONG_PARTITION"),
    ],
    ids=["not-the-fanout", "other-domain", "other-agency", "other-partition"],
)
def test_anything_else_is_refused(value: bytes, signer: Signer, domain: Domain, partition: int, reason: str) -> None:
    with pytest.raises(Refused) as caught:
        admit(value, signer.sign(domain, value).as_kafka(), partition)
    assert caught.value.reason == reason


def test_an_unsigned_heartbeat_is_refused() -> None:
    with pytest.raises(Refused) as caught:
        admit(beat(), [])
    assert caught.value.reason == "UNSIGNED"
