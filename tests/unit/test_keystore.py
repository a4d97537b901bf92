"""Signing keys on disk: private from the first byte, optionally encrypted, a keyring the admin signs,
rotation with an overlap and revocation."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.core.errors import ConfigError
from services.core.principals import ADMIN, FANOUT
from services.core.signing import Domain, Signer
from services.keystore import (
    ANCHOR,
    KEYRING,
    ensure_keys,
    load_anchor,
    load_keyring,
    load_signer,
    revoke_key,
    rotate_key,
    usable,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    ensure_keys(folder, ["court", FANOUT])
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_keys_are_private_and_the_folder_is_closed(keys: Path) -> None:
    assert _mode(keys) == 0o700
    pems = list(keys.glob("*/*.pem"))
    assert {p.parent.name for p in pems} == {"court", FANOUT, ADMIN}
    assert all(_mode(p) == 0o600 for p in pems)


def test_the_keyring_is_signed_by_the_registry_key_and_checked_against_the_anchor(keys: Path) -> None:
    ring = load_keyring(keys)
    assert {k.agency for k in ring.public_keys()} == {"court", FANOUT, ADMIN}
    assert [k.agency for k in load_anchor(keys).public_keys()] == [ADMIN]

    doc = json.loads((keys / KEYRING).read_text())
    doc["keys"][0]["valid_until"] = "2099-01-01T00:00:00+00:00"  # an edit without the admin's key
    (keys / KEYRING).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="does not verify against the registry key"):
        load_keyring(keys)


def test_an_unsigned_keyring_is_refused_and_taken_over_by_the_setup(keys: Path) -> None:
    doc = json.loads((keys / KEYRING).read_text())
    (keys / KEYRING).write_text(json.dumps(doc["keys"]))  # the plain list an older setup wrote
    with pytest.raises(ConfigError, match="not signed by the registry key"):
        load_keyring(keys)
    ensure_keys(keys, ["court", FANOUT])
    assert len(load_keyring(keys).public_keys()) == 3


def test_an_anchor_with_another_agencys_key_is_refused(keys: Path) -> None:
    court = next(k for k in load_keyring(keys).public_keys() if k.agency == "court")
    (keys / ANCHOR).write_text(json.dumps([court.to_json()]))
    with pytest.raises(ConfigError, match="must hold concord-admin's public keys"):
        load_anchor(keys)


def test_rotation_adds_a_key_from_now_and_keeps_the_old_one_for_the_overlap(keys: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = load_signer(keys, "court")
    new, ended = rotate_key(keys, "court", overlap=timedelta(hours=2), now=now)
    assert new.valid_from == now and [k.key_id for k in ended] == [old.key_id]
    ring = load_keyring(keys)
    kept = next(k for k in ring.public_keys() if k.key_id == old.key_id)
    assert kept.valid_until == now + timedelta(hours=2)
    assert usable(kept, now + timedelta(hours=1)) and not usable(kept, now + timedelta(hours=2))
    # A signer takes the newest usable key; what either key signs during the overlap verifies.
    assert load_signer(keys, "court", at=now + timedelta(seconds=1)).key_id == new.key_id
    record = b"\xc3\x01" + b"\x00" * 8 + b"body"
    for signer in (old, load_signer(keys, "court", at=now + timedelta(seconds=1))):
        ring.verify(
            Domain.LIST_RECORD,
            record,
            signer.sign(Domain.LIST_RECORD, record),
            expected_agency="court",
            at=now + timedelta(minutes=30),
        )


def test_a_record_appended_in_the_second_of_a_rotation_before_it_is_within_the_old_key(keys: Path) -> None:
    at = datetime.now(UTC).replace(microsecond=600_000)
    old = load_signer(keys, "court")
    rotate_key(keys, "court", overlap=timedelta(0), now=at)
    kept = next(k for k in load_keyring(keys).public_keys() if k.key_id == old.key_id)
    appended = at - timedelta(milliseconds=100)  # the broker's time of a record signed just before
    assert usable(kept, appended) and not usable(kept, at + timedelta(seconds=1))


def test_revocation_refuses_what_is_appended_from_then_on_only(keys: Path) -> None:
    signer = load_signer(keys, "court")
    at = datetime.now(UTC) - timedelta(minutes=5)
    revoked = revoke_key(keys, "court", signer.key_id, at=at)
    assert revoked.revoked_at == at
    ring = load_keyring(keys)
    record = b"\xc3\x01" + b"\x00" * 8 + b"body"
    headers = signer.sign(Domain.LIST_RECORD, record)
    ring.verify(Domain.LIST_RECORD, record, headers, expected_agency="court", at=at - timedelta(seconds=1))
    with pytest.raises(Exception, match="revoked"):
        ring.verify(Domain.LIST_RECORD, record, headers, expected_agency="court", at=at)
    with pytest.raises(ConfigError, match="no usable signing key"):
        load_signer(keys, "court")
    with pytest.raises(ConfigError, match="has no key 'nope'"):
        revoke_key(keys, "court", "nope")


def test_an_encrypted_key_opens_only_with_its_passphrase(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ensure_keys(keys, ["court"], passphrase=b"correct horse")
    pem = next((keys / "court").glob("*.pem"))
    assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert _mode(pem) == 0o600
    with pytest.raises(ConfigError, match="CONCORD_KEY_PASSPHRASE"):
        load_signer(keys, "court")
    with pytest.raises(ConfigError, match="the passphrase does not open it"):
        load_signer(keys, "court", passphrase=b"wrong")
    signer = load_signer(keys, "court", passphrase=b"correct horse")
    assert isinstance(signer, Signer) and signer.agency == "court"
    # Rotation keeps new keys encrypted with the passphrase given (which also opens the admin's key).
    new, _ = rotate_key(keys, "court", passphrase=b"correct horse")
    assert (keys / "court" / f"{new.key_id}.pem").read_bytes().startswith(b"-----BEGIN ENCRYPTED")


def test_a_key_file_is_never_overwritten(keys: Path) -> None:
    pem = next((keys / "court").glob("*.pem"))
    before = pem.read_bytes()
    ensure_keys(keys, ["court", FANOUT])  # idempotent: nobody gets a second first key
    assert pem.read_bytes() == before
    assert len(list((keys / "court").glob("*.pem"))) == 1
