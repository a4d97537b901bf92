"""Ed25519 signatures on Concord records.

A signature never covers raw bytes alone: it covers a domain-separation tag (so a
list record's signature can never be replayed as a directive's or a receipt's),
the signing agency, the key id, the schema fingerprint and the SHA-256 digest of
the whole single-object record.  Records travel with four headers:

    concord-agency   who signed
    concord-key      which of that agency's keys
    concord-digest   SHA-256 of the record bytes as signed
    concord-sig      Ed25519 signature over the signing input

Carrying the digest separately lets a verifier tell *tampered* (the bytes no
longer hash to the signed digest) from *forged* (the digest matches, but the
signature was not made by the named key) — two different incidents for an
operator — and it is the leaf a batch signature will commit to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from services.core.errors import SignatureInvalid


class Domain(StrEnum):
    LIST_RECORD = "concord/v1/list-record"
    DIRECTIVE = "concord/v1/directive"
    RECEIPT = "concord/v1/receipt"
    REGISTRY = "concord/v1/registry"


class Reason(StrEnum):
    """Why a record was refused; each is its own quarantine reason code."""

    UNSIGNED = "UNSIGNED"
    TAMPERED = "TAMPERED"
    FORGED = "FORGED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    WRONG_AGENCY = "WRONG_AGENCY"
    KEY_NOT_YET_VALID = "KEY_NOT_YET_VALID"
    KEY_EXPIRED = "KEY_EXPIRED"
    KEY_REVOKED = "KEY_REVOKED"


H_AGENCY = "concord-agency"
H_KEY = "concord-key"
H_DIGEST = "concord-digest"
H_SIG = "concord-sig"
SIGNATURE_HEADERS = (H_AGENCY, H_KEY, H_DIGEST, H_SIG)


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def signing_input(domain: Domain, agency: str, key_id: str, record: bytes, digest: bytes) -> bytes:
    """The exact bytes Ed25519 signs: every part length-prefixed, so no two inputs collide."""
    fingerprint = record[2:10]
    return b"".join(
        (_lp(domain.value.encode()), _lp(agency.encode()), _lp(key_id.encode()), _lp(fingerprint), _lp(digest))
    )


def digest_of(record: bytes) -> bytes:
    return hashlib.sha256(record).digest()


@dataclass(frozen=True)
class SignedHeaders:
    agency: str
    key_id: str
    digest: bytes
    signature: bytes

    def as_kafka(self) -> list[tuple[str, bytes]]:
        return [
            (H_AGENCY, self.agency.encode()),
            (H_KEY, self.key_id.encode()),
            (H_DIGEST, self.digest),
            (H_SIG, self.signature),
        ]

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes]] | None) -> SignedHeaders | None:
        found: dict[str, bytes] = {}
        for k, v in headers or ():
            if k in SIGNATURE_HEADERS and v is not None:
                found[k] = bytes(v)
        if set(found) != set(SIGNATURE_HEADERS):
            return None
        try:
            return cls(found[H_AGENCY].decode(), found[H_KEY].decode(), found[H_DIGEST], found[H_SIG])
        except UnicodeDecodeError:
            return None


class Signer:
    """One agency's signing key. The private key never leaves this object."""

    def __init__(self, agency: str, key_id: str, private_key: Ed25519PrivateKey) -> None:
        self.agency = agency
        self.key_id = key_id
        self._key = private_key

    @classmethod
    def generate(cls, agency: str, key_id: str) -> Signer:
        return cls(agency, key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, agency: str, key_id: str, pem: bytes) -> Signer:
        key = load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureInvalid("UNKNOWN_KEY", f"signing key {key_id} of {agency} is not an Ed25519 key")
        return cls(agency, key_id, key)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, domain: Domain, record: bytes) -> SignedHeaders:
        digest = digest_of(record)
        sig = self._key.sign(signing_input(domain, self.agency, self.key_id, record, digest))
        return SignedHeaders(self.agency, self.key_id, digest, sig)


@dataclass(frozen=True)
class PublicKey:
    agency: str
    key_id: str
    public_key: bytes
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "agency": self.agency,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, str | None]) -> PublicKey:
        def ts(v: str | None) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        vf = ts(d["valid_from"])
        if vf is None:
            raise ValueError("valid_from is required")
        return cls(
            agency=str(d["agency"]),
            key_id=str(d["key_id"]),
            public_key=base64.b64decode(str(d["public_key"])),
            valid_from=vf,
            valid_until=ts(d.get("valid_until")),
            revoked_at=ts(d.get("revoked_at")),
        )


class Keyring:
    """The public keys a verifier trusts, by (agency, key id)."""

    def __init__(self, keys: Sequence[PublicKey] = ()) -> None:
        self._keys: dict[tuple[str, str], PublicKey] = {}
        self._loaded: dict[tuple[str, str], Ed25519PublicKey] = {}
        for k in keys:
            self.add(k)

    def add(self, key: PublicKey) -> None:
        self._keys[(key.agency, key.key_id)] = key
        self._loaded[(key.agency, key.key_id)] = Ed25519PublicKey.from_public_bytes(key.public_key)

    def keys(self) -> list[PublicKey]:
        return list(self._keys.values())

    def owner_of(self, key_id: str) -> str | None:
        for agency, kid in self._keys:
            if kid == key_id:
                return agency
        return None

    def verify(
        self,
        domain: Domain,
        record: bytes,
        headers: SignedHeaders | None,
        *,
        expected_agency: str | None,
        at: datetime,
    ) -> SignedHeaders:
        """Return the headers if the record is signed as claimed, else raise SignatureInvalid.

        ``expected_agency`` is who may sign on this channel (the owner of the list
        topic); ``at`` is when the record was produced, so that a key revoked later
        does not invalidate what it signed while it was good.
        """
        if headers is None:
            raise SignatureInvalid(Reason.UNSIGNED, "record carries no signature")
        if expected_agency is not None and headers.agency != expected_agency:
            raise SignatureInvalid(
                Reason.WRONG_AGENCY,
                f"signed as {headers.agency!r} on a channel of {expected_agency!r}",
                agency=headers.agency,
            )
        meta = self._keys.get((headers.agency, headers.key_id))
        if meta is None:
            owner = self.owner_of(headers.key_id)
            if owner is not None and owner != headers.agency:
                raise SignatureInvalid(
                    Reason.WRONG_AGENCY,
                    f"key {headers.key_id} belongs to {owner!r}, not {headers.agency!r}",
                    agency=headers.agency,
                )
            raise SignatureInvalid(
                Reason.UNKNOWN_KEY, f"unknown key {headers.key_id!r} for {headers.agency!r}", agency=headers.agency
            )
        if meta.revoked_at is not None and at >= meta.revoked_at:
            raise SignatureInvalid(Reason.KEY_REVOKED, f"key {meta.key_id} was revoked at {meta.revoked_at:%Y-%m-%d %H:%M:%SZ}")
        if at < meta.valid_from:
            raise SignatureInvalid(Reason.KEY_NOT_YET_VALID, f"key {meta.key_id} is valid only from {meta.valid_from:%Y-%m-%d}")
        if meta.valid_until is not None and at >= meta.valid_until:
            raise SignatureInvalid(Reason.KEY_EXPIRED, f"key {meta.key_id} expired at {meta.valid_until:%Y-%m-%d}")
        if not hmac.compare_digest(digest_of(record), headers.digest):
            raise SignatureInvalid(Reason.TAMPERED, "record bytes do not match the signed digest")
        try:
            self._loaded[(headers.agency, headers.key_id)].verify(
                headers.signature, signing_input(domain, headers.agency, headers.key_id, record, headers.digest)
            )
        except InvalidSignature:
            raise SignatureInvalid(
                Reason.FORGED, f"signature was not made by key {headers.key_id} of {headers.agency!r}"
            ) from None
        return headers
