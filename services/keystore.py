"""Signing keys on disk, for the local setup and for agencies running the adapter.

Layout under the keys folder (never inside the repository's tracked files):

    <agency>/<key_id>.pem   the private key, PKCS#8, mode 0600
    keyring.json            every public key with its validity window and revocation

In production the keyring is what the signed registry distributes; locally the
setup writes it once and every service reads it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.core.errors import ConfigError
from services.core.signing import Keyring, PublicKey, Signer


def _key_id(agency: str, at: datetime) -> str:
    return f"{agency}-{at:%Y%m%d}-{os.urandom(3).hex()}"


def load_keyring(keys_dir: Path) -> Keyring:
    path = keys_dir / "keyring.json"
    if not path.exists():
        raise ConfigError(f"no keyring at {path}: run `make keys` (or `concord keys init`)")
    return Keyring([PublicKey.from_json(k) for k in json.loads(path.read_text())])


def _write_keyring(keys_dir: Path, ring: Keyring) -> None:
    path = keys_dir / "keyring.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([k.to_json() for k in ring.public_keys()], indent=2))
    tmp.replace(path)


def load_signer(keys_dir: Path, agency: str) -> Signer:
    """The newest usable private key of ``agency``."""
    ring = load_keyring(keys_dir)
    now = datetime.now(UTC)
    usable = [
        k for k in ring.public_keys()
        if k.agency == agency and k.revoked_at is None and (k.valid_until is None or k.valid_until > now)
        and (keys_dir / agency / f"{k.key_id}.pem").exists()
    ]
    if not usable:
        raise ConfigError(f"no usable signing key for agency {agency!r} in {keys_dir}", agency=agency)
    best = max(usable, key=lambda k: k.valid_from)
    return Signer.from_pem(agency, best.key_id, (keys_dir / agency / f"{best.key_id}.pem").read_bytes())


def ensure_keys(keys_dir: Path, agencies: list[str], *, validity_days: int = 365) -> Keyring:
    """Give every agency a signing key if it has none; idempotent."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    path = keys_dir / "keyring.json"
    ring = load_keyring(keys_dir) if path.exists() else Keyring()
    have = {k.agency for k in ring.public_keys()}
    now = datetime.now(UTC).replace(microsecond=0)
    for agency in agencies:
        if agency in have:
            continue
        signer = Signer.generate(agency, _key_id(agency, now))
        folder = keys_dir / agency
        folder.mkdir(exist_ok=True)
        pem = folder / f"{signer.key_id}.pem"
        pem.write_bytes(signer.private_pem())
        os.chmod(pem, 0o600)
        ring.add(PublicKey(agency, signer.key_id, signer.public_bytes(), now - timedelta(days=1),
                           now + timedelta(days=validity_days)))
    _write_keyring(keys_dir, ring)
    return ring


def keyed_hash_secret(keys_dir: Path, owner: str) -> bytes:
    """``owner``'s secret for pseudonyms (:mod:`services.core.pseudonyms`), made on first use.

    Created private from its first byte (``O_EXCL``, mode 0600) under ``<keys>/<owner>/``.
    Every fan-out worker must read the same secret (a directive's key is derived from it),
    so a deployment ships the file with the worker's signing key.
    """
    path = keys_dir / owner / "keyed-hash.key"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
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
    secret = os.urandom(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret
