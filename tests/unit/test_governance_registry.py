"""The signed registry's records, pure: round trip, verification, completeness, rollback, staleness."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from services.core.registry import (
    MANIFEST_KEY,
    RegistryInvalid,
    RegistryRecord,
    RegistryStale,
    RegistryState,
    admin_keyring,
    decode_value,
    encode_value,
    registry_records,
)
from services.core.signing import Domain, Keyring, Signer
from services.core.world import World, parse_world
from tests.unit.factories import keyring, real_world

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 10, 12, tzinfo=UTC)
ADMIN = Signer.generate("concord-admin", "concord-admin-k1")
COURT = Signer.generate("court", "court-k1")
FANOUT = Signer.generate("concord-fanout", "fanout-k1")
RING = keyring(ADMIN, COURT, FANOUT)


def _records(serial: int = 1, at: datetime = AT, world: World | None = None) -> list[RegistryRecord]:
    return registry_records(world or real_world(), RING, ADMIN, published_at=at, serial=serial)


def _state(records: list[RegistryRecord], trust: Keyring | None = None) -> RegistryState:
    state = RegistryState(trust or admin_keyring(RING))
    for r in records:
        state.add(r.key, r.value, list(r.headers), AT)
    return state


def test_a_publication_round_trips_to_the_same_world_and_keys() -> None:
    snap = _state(_records()).snapshot()
    assert snap is not None
    assert snap.world == real_world()
    assert {(k.agency, k.key_id, k.public_key) for k in snap.keyring.public_keys()} == {
        (k.agency, k.key_id, k.public_key) for k in RING.public_keys()
    }
    assert snap.serial == 1 and snap.published_at == AT


def test_records_are_keyed_by_kind_and_id_with_the_manifest_last() -> None:
    keys = [r.key for r in _records()]
    assert keys[-1] == MANIFEST_KEY
    assert {
        "agency/court",
        "program/court.judgment-defaulters",
        "mou/mou-food-safety",
        "topics/templates",
        "key/court/court-k1",
    } <= set(keys)
    assert len(keys) == len(set(keys))


def test_only_the_admin_signs_the_registry() -> None:
    with pytest.raises(RegistryInvalid, match="signed by concord-admin"):
        registry_records(real_world(), RING, COURT, published_at=AT, serial=1)


def test_an_incomplete_publication_gives_no_snapshot() -> None:
    assert _state(_records()[:-1]).snapshot() is None  # no manifest yet
    records = _records()
    assert _state(records[1:]).snapshot() is None  # manifest names a record not read


def test_a_forged_record_is_refused_and_never_mixed_in() -> None:
    records = _records()
    court = next(r for r in records if r.key == "agency/court")
    doc = decode_value(court.value or b"")
    doc["data"]["name"] = "Forged court"
    value = encode_value(doc)
    impostor = Signer.generate("concord-admin", "concord-admin-k1")
    forged = RegistryRecord(court.key, value, tuple(impostor.sign(Domain.REGISTRY, value).as_kafka()))
    state = _state([*records, forged])
    snap = state.snapshot()
    assert snap is not None and snap.world.agencies["court"].name == real_world().agencies["court"].name
    assert state.rejected and state.rejected[0].startswith("agency/court: ")


def test_a_tampered_record_is_refused() -> None:
    records = _records()
    court = next(r for r in records if r.key == "agency/court")
    tampered = RegistryRecord(court.key, (court.value or b"").replace(b"court", b"cou7t"), court.headers)
    state = _state([tampered])
    assert state.rejected and "do not match the signed digest" in state.rejected[0]


def test_a_record_under_another_key_is_refused() -> None:
    court = next(r for r in _records() if r.key == "agency/court")
    state = _state([RegistryRecord("agency/market", court.value, court.headers)])
    assert "was published under 'agency/market'" in state.rejected[0]


def test_a_signer_other_than_the_admin_is_refused() -> None:
    records = registry_records(real_world(), RING, ADMIN, published_at=AT, serial=1)
    state = _state(records, trust=keyring(COURT))
    assert state.snapshot() is None and len(state.rejected) == len(records)


def test_a_newer_publication_replaces_and_an_older_one_cannot_roll_back() -> None:
    docs = copy.deepcopy(real_world().to_documents())
    docs["mous/mou-food-safety.yaml"]["versions"][0]["terminated_on"] = "2026-03-01"
    newer_world = parse_world(docs)
    state = _state(_records(serial=1))
    for r in _records(serial=2, at=AT + timedelta(hours=1), world=newer_world):
        state.add(r.key, r.value, list(r.headers), AT)
    snap = state.snapshot()
    assert snap is not None and snap.serial == 2 and snap.world == newer_world
    for r in _records(serial=1):
        state.add(r.key, r.value, list(r.headers), AT)
    assert state.snapshot() is snap


def test_a_stale_registry_is_refused() -> None:
    state = _state(_records())
    assert state.fresh(timedelta(hours=1), AT + timedelta(minutes=59)).serial == 1
    with pytest.raises(RegistryStale, match="older than the 3600s allowed"):
        state.fresh(timedelta(hours=1), AT + timedelta(hours=2))
    with pytest.raises(RegistryStale, match="no complete, verified registry publication"):
        RegistryState(admin_keyring(RING)).fresh(timedelta(hours=1), AT)


def test_values_carry_a_format_marker() -> None:
    value = encode_value({"a": 1})
    assert decode_value(value) == {"a": 1}
    with pytest.raises(RegistryInvalid, match="not a Concord registry record"):
        decode_value(b'{"a": 1}')


def test_a_tombstone_removes_a_record() -> None:
    state = _state(_records())
    state.add("agency/court", None, None, AT)
    assert "agency/court" not in state.records
