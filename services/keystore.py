"""Signing keys on disk: creating, rotating and revoking them, and the signed keyring.

Layout under the keys folder (never inside the repository's tracked files; 0700)::

    registry-key.json       the admin's public keys: the trust anchor, handed to every service
                            out of band, that the registry and this keyring are checked against
    keyring.json            every public key with its validity window and revocation, signed
                            by the admin (the registry key)
    <agency>/<key_id>.pem   a private key, PKCS#8, 0600 from its first byte; encrypted with a
                            passphrase when one is given (``CONCORD_KEY_PASSPHRASE_FILE`` or
                            ``CONCORD_KEY_PASSPHRASE``, in the environment of the service that
                            signs with it)

The keyring file is what the operator edits (``concord keys rotate | revoke``) and publishes in
the signed registry (``concord registry publish``), from which running services take their keys
live; a local run without a registry reads it directly, and refuses it unless the admin's
signature verifies against the anchor.

**Rotation** adds a key valid from now and keeps the agency's current keys for an overlap
period (their ``valid_until`` becomes now + overlap), so records signed with either verify while
every signer moves to the new key; a signer uses the newest key its keyring knows (services
following the registry switch when the publication that carries it reaches them).  **Revocation**
sets ``revoked_at``: records appended to the log (by the broker's clock) at or after it are
refused; what the key signed before stays valid.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.core.errors import ConfigError, SignatureInvalid
from services.core.principals import ADMIN
from services.core.registry import encode_value
from services.core.signing import Domain, Keyring, PublicKey, SignedHeaders, Signer, digest_of
from services.files import create_private, private_folder, write_atomic

KEYRING = "keyring.json"
ANCHOR = "registry-key.json"
KEYRING_FORMAT = "concord.keyring/v1"
DEFAULT_OVERLAP = timedelta(days=7)


def _keys(ring: Keyring) -> list[PublicKey]:
    return ring.public_keys()


def _key_id(agency: str, at: datetime) -> str:
    return f"{agency}-{at:%Y%m%d}-{os.urandom(3).hex()}"


# --- the anchor and the signed keyring -------------------------------------------------------


def load_anchor(keys_dir: Path, path: Path | None = None) -> Keyring:
    """The admin's public keys (``registry-key.json``): what the registry and keyring are checked against."""
    path = path or keys_dir / ANCHOR
    if not path.exists():
        raise ConfigError(
            f"no registry key at {path}: the admin's public key comes with the setup (`make run` writes it)"
        )
    try:
        keys = [PublicKey.from_json(k) for k in json.loads(path.read_text())]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a list of public keys ({exc})") from None
    if not keys or any(k.agency != ADMIN for k in keys):
        raise ConfigError(f"{path}: must hold {ADMIN}'s public keys, and only those")
    return Keyring(keys)


def _keyring_value(keys: Sequence[dict[str, Any]], signed_at: str) -> bytes:
    return encode_value({"kind": "keyring", "key": KEYRING, "signed_at": signed_at, "keys": list(keys)})


def _read_file(path: Path) -> tuple[list[PublicKey], dict[str, Any] | None]:
    """The keys of a keyring file and its signature block (None: an unsigned keyring of an older setup)."""
    try:
        doc = json.loads(path.read_text())
        if isinstance(doc, list):
            return [PublicKey.from_json(k) for k in doc], None
        return [PublicKey.from_json(k) for k in doc["keys"]], doc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a Concord keyring ({exc})") from None


def load_keyring(keys_dir: Path, *, anchor: Keyring | None = None) -> Keyring:
    """The keyring file, once its admin signature verifies against the anchor."""
    path = keys_dir / KEYRING
    if not path.exists():
        raise ConfigError(f"no keyring at {path}: `make run` makes one (or `concord keys rotate`)")
    keys, doc = _read_file(path)
    if doc is None or doc.get("format") != KEYRING_FORMAT:
        raise ConfigError(f"{path} is not signed by the registry key: `make run` takes it over and signs it")
    anchor = anchor or load_anchor(keys_dir)
    try:
        sig = doc["signature"]
        value = _keyring_value(doc["keys"], doc["signed_at"])
        headers = SignedHeaders(sig["agency"], sig["key_id"], digest_of(value), base64.b64decode(sig["signature"]))
        anchor.verify(
            Domain.REGISTRY, value, headers, expected_agency=ADMIN, at=datetime.fromisoformat(doc["signed_at"])
        )
    except SignatureInvalid as exc:
        raise ConfigError(f"{path}: its signature does not verify against the registry key ({exc.message})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: malformed signature block ({exc})") from None
    return Keyring(keys)


def write_keyring(
    keys_dir: Path, ring: Keyring, *, passphrase: bytes | None = None, now: datetime | None = None
) -> None:
    """Write the keyring signed by the admin's newest usable key, and the anchor beside it."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    admin = load_signer(keys_dir, ADMIN, passphrase=passphrase, keyring=ring, at=now)
    admins = [k for k in _keys(ring) if k.agency == ADMIN]
    write_atomic(keys_dir / ANCHOR, json.dumps([k.to_json() for k in admins], indent=2))
    keys = [k.to_json() for k in sorted(ring.public_keys(), key=lambda k: (k.agency, k.valid_from, k.key_id))]
    signed_at = now.isoformat()
    headers = admin.sign(Domain.REGISTRY, _keyring_value(keys, signed_at))
    doc = {
        "format": KEYRING_FORMAT,
        "signed_at": signed_at,
        "keys": keys,
        "signature": {
            "agency": headers.agency,
            "key_id": headers.key_id,
            "signature": base64.b64encode(headers.signature).decode(),
        },
    }
    write_atomic(keys_dir / KEYRING, json.dumps(doc, indent=2))


# --- private keys ------------------------------------------------------------------------------


def _pem_path(keys_dir: Path, agency: str, key_id: str) -> Path:
    return keys_dir / agency / f"{key_id}.pem"


def _new_key(
    keys_dir: Path, agency: str, valid_from: datetime, valid_until: datetime | None, passphrase: bytes | None
) -> PublicKey:
    signer = Signer.generate(agency, _key_id(agency, valid_from))
    private_folder(keys_dir / agency)
    create_private(_pem_path(keys_dir, agency, signer.key_id), signer.private_pem(passphrase))
    return PublicKey(agency, signer.key_id, signer.public_bytes(), valid_from, valid_until)


def usable(key: PublicKey, at: datetime) -> bool:
    """Whether ``key`` may sign at ``at``."""
    return (
        key.valid_from <= at
        and (key.valid_until is None or at < key.valid_until)
        and (key.revoked_at is None or at < key.revoked_at)
    )


def load_signer(
    keys_dir: Path,
    agency: str,
    *,
    passphrase: bytes | None = None,
    keyring: Keyring | None = None,
    at: datetime | None = None,
) -> Signer:
    """The newest key of ``agency`` that ``keyring`` (default: the verified keyring file) lets it sign
    with at ``at`` (default now) and whose private key is here."""
    ring = keyring if keyring is not None else load_keyring(keys_dir)
    at = at or datetime.now(UTC)
    candidates = [
        k
        for k in _keys(ring)
        if k.agency == agency and usable(k, at) and _pem_path(keys_dir, agency, k.key_id).exists()
    ]
    if not candidates:
        raise ConfigError(f"no usable signing key for agency {agency!r} in {keys_dir}", agency=agency)
    best = max(candidates, key=lambda k: (k.valid_from, k.key_id))
    path = _pem_path(keys_dir, agency, best.key_id)
    try:
        return Signer.from_pem(agency, best.key_id, path.read_bytes(), passphrase)
    except ValueError as exc:
        hint = (
            "set CONCORD_KEY_PASSPHRASE_FILE (or CONCORD_KEY_PASSPHRASE) for the service that signs"
            if passphrase is None
            else "the passphrase does not open it"
        )
        raise ConfigError(f"cannot open the private key {path}: {exc}; {hint}", agency=agency) from None


def ensure_keys(
    keys_dir: Path, agencies: Iterable[str], *, validity_days: int = 365, passphrase: bytes | None = None
) -> Keyring:
    """Give every agency (and the admin) a signing key if it has none; sign the keyring; idempotent.

    An unsigned keyring of an older local setup is taken over and signed.
    """
    private_folder(keys_dir)
    path = keys_dir / KEYRING
    ring = Keyring(_read_file(path)[0]) if path.exists() else Keyring()
    have = {k.agency for k in _keys(ring)}
    now = datetime.now(UTC).replace(microsecond=0)
    for agency in [ADMIN, *agencies]:
        if agency in have:
            continue
        have.add(agency)
        ring.add(_new_key(keys_dir, agency, now - timedelta(days=1), now + timedelta(days=validity_days), passphrase))
    write_keyring(keys_dir, ring, passphrase=passphrase, now=now)
    return ring


def rotate_key(
    keys_dir: Path,
    agency: str,
    *,
    overlap: timedelta = DEFAULT_OVERLAP,
    validity_days: int = 365,
    passphrase: bytes | None = None,
    now: datetime | None = None,
) -> tuple[PublicKey, list[PublicKey]]:
    """A new key for ``agency`` valid from now; its current keys end after ``overlap``.

    Returns the new key and the old keys as they now stand.  The keyring is signed again (with
    the admin's newest key, which for the admin's own rotation is the new one); ``passphrase``
    encrypts the new private key and opens the admin's.
    """
    ring = load_keyring(keys_dir)
    at = now or datetime.now(UTC)
    now = at.replace(microsecond=0)  # keyring times are kept to the second
    # The old keys end no earlier than this instant, rounded up: a record the broker appended in the
    # second of the rotation, before it, is still judged within its key's validity.
    ends = now if at == now else now + timedelta(seconds=1)
    if not any(k.agency == agency for k in _keys(ring)):
        raise ConfigError(
            f"{agency!r} has no key to rotate; known: {', '.join(sorted({k.agency for k in _keys(ring)}))}"
        )
    new = _new_key(keys_dir, agency, now, now + timedelta(days=validity_days), passphrase)
    ended = []
    for k in _keys(ring):
        if k.agency != agency or not usable(k, now):
            continue
        until = ends + overlap
        if k.valid_until is not None and k.valid_until < until:
            until = k.valid_until
        old = PublicKey(k.agency, k.key_id, k.public_key, k.valid_from, until, k.revoked_at)
        ring.add(old)
        ended.append(old)
    ring.add(new)
    write_keyring(keys_dir, ring, passphrase=passphrase, now=now)
    return new, ended


def revoke_key(
    keys_dir: Path, agency: str, key_id: str, *, at: datetime | None = None, passphrase: bytes | None = None
) -> PublicKey:
    """Revoke ``key_id`` of ``agency`` from ``at`` (default now); ``passphrase`` opens the admin's key,
    which signs the keyring again."""
    ring = load_keyring(keys_dir)
    meta = next((k for k in _keys(ring) if k.agency == agency and k.key_id == key_id), None)
    if meta is None:
        mine = sorted(k.key_id for k in _keys(ring) if k.agency == agency)
        raise ConfigError(f"{agency!r} has no key {key_id!r}; its keys: {', '.join(mine) or 'none'}")
    when = (at or datetime.now(UTC)).astimezone(UTC)
    if meta.revoked_at is not None and meta.revoked_at <= when:
        return meta
    revoked = PublicKey(meta.agency, meta.key_id, meta.public_key, meta.valid_from, meta.valid_until, when)
    ring.add(revoked)
    write_keyring(keys_dir, ring, passphrase=passphrase)
    return revoked


def keyed_hash_secret(keys_dir: Path, owner: str) -> bytes:
    """``owner``'s secret for pseudonyms (:mod:`services.core.pseudonyms`), made on first use.

    Created private from its first byte (``O_EXCL``, mode 0600) under ``<keys>/<owner>/``.
    Every fan-out worker must read the same secret (a directive's key is derived from it),
    so a deployment ships the file with the worker's signing key.
    """
    path = keys_dir / owner / "keyed-hash.key"
    secret = os.urandom(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path, secret)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) < 32:
            raise ConfigError(f"{path} holds {len(secret)} bytes, not a 32-byte secret") from None
        return secret
    except OSError as e:
        raise ConfigError(
            f"{owner}'s pseudonym secret {path} is missing and cannot be created here ({e.strerror}); "
            f"every {owner} worker needs the same file: ship it with {owner}'s signing key"
        ) from None
    return secret
