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
operator — and it is the leaf a batch signature commits to.

**Batch signatures** (as X-Road seals its messages): a signer may instead sign the
root of a Merkle tree over the digests of a batch of records
(:mod:`services.core.merkle`), once.  Each record of the batch then travels with

    concord-agency, concord-key, concord-digest   as above
    concord-root      the batch's Merkle root (32 bytes)
    concord-root-sig  Ed25519 signature over the root's signing input
    concord-path      leaf index, tree size and audit path (merkle.encode_proof)

and the header set decides which kind a record carries (a record carrying both
kinds carries neither: it is refused as unsigned).  The root's signing input has
the same length-prefixed structure as a record's, with a batch marker where a
record's schema fingerprint stands, and the tree size beside the root: the marker
is longer than any fingerprint, so a record signature can never be taken for a
root signature or the reverse.  A verifier checks the digest (TAMPERED), then the
audit path up to the root (TAMPERED), then the root signature (FORGED) — but the
last only once per batch: :class:`Keyring` remembers the roots it verified.

A record forwarded inside another (the publisher's list record inside a
directive) carries all of its signature evidence in one byte string, its *seal*
(:meth:`SignedHeaders.seal`): the 64-byte signature itself, or for a batch member
``0x01 || root signature || root || proof``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from services.core import merkle
from services.core.errors import SignatureInvalid
from services.core.reasons import Reason


class Domain(StrEnum):
    LIST_RECORD = "concord/v1/list-record"
    DIRECTIVE = "concord/v1/directive"
    RECEIPT = "concord/v1/receipt"
    REGISTRY = "concord/v1/registry"
    HEARTBEAT = "concord/v1/heartbeat"
    NOTICE = "concord/v1/notice"
    SUBJECT_REPORT = "concord/v1/subject-report"


H_AGENCY = "concord-agency"
H_KEY = "concord-key"
H_DIGEST = "concord-digest"
H_SIG = "concord-sig"
SIGNATURE_HEADERS = (H_AGENCY, H_KEY, H_DIGEST, H_SIG)
H_ROOT = "concord-root"
H_ROOT_SIG = "concord-root-sig"
H_PATH = "concord-path"
BATCH_HEADERS = (H_AGENCY, H_KEY, H_DIGEST, H_ROOT, H_ROOT_SIG, H_PATH)
_ALL_HEADERS = frozenset(SIGNATURE_HEADERS + BATCH_HEADERS)
_BATCH_ONLY = frozenset(BATCH_HEADERS) - frozenset(SIGNATURE_HEADERS)

BATCH_MARKER = b"concord/merkle-root/v1"  # stands where a record's 8-byte fingerprint does
SIGNATURE_LEN = 64
_SEAL_BATCH = 0x01
_SEAL_MIN = 1 + SIGNATURE_LEN + merkle.HASH_LEN + 8


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def signing_input(domain: Domain, agency: str, key_id: str, record: bytes, digest: bytes) -> bytes:
    """The exact bytes Ed25519 signs: every part length-prefixed, so no two inputs collide."""
    fingerprint = record[2:10]
    return b"".join(
        (_lp(domain.value.encode()), _lp(agency.encode()), _lp(key_id.encode()), _lp(fingerprint), _lp(digest))
    )


def batch_signing_input(domain: Domain, agency: str, key_id: str, size: int, root: bytes) -> bytes:
    """The exact bytes Ed25519 signs for a batch: a record's structure, the batch marker in place of
    the schema fingerprint, then the tree size and the Merkle root."""
    return b"".join(
        (
            _lp(domain.value.encode()),
            _lp(agency.encode()),
            _lp(key_id.encode()),
            _lp(BATCH_MARKER),
            _lp(struct.pack(">I", size)),
            _lp(root),
        )
    )


def digest_of(record: bytes) -> bytes:
    return hashlib.sha256(record).digest()


@dataclass(frozen=True, slots=True)
class BatchProof:
    """Where a record sits in a signed batch: the batch's root and the record's encoded audit path
    (kept as received, and decoded when verified, so that a malformed one is refused as TAMPERED)."""

    root: bytes
    proof: bytes


@dataclass(frozen=True)
class SignedHeaders:
    """A record's signature evidence.  ``signature`` is over the record's own signing input, or,
    when ``batch`` is set, over the root of the batch the record belongs to."""

    agency: str
    key_id: str
    digest: bytes
    signature: bytes
    batch: BatchProof | None = None

    def as_kafka(self) -> list[tuple[str, bytes]]:
        if self.batch is not None:
            return [
                (H_AGENCY, self.agency.encode()),
                (H_KEY, self.key_id.encode()),
                (H_DIGEST, self.digest),
                (H_ROOT, self.batch.root),
                (H_ROOT_SIG, self.signature),
                (H_PATH, self.batch.proof),
            ]
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
            if k in _ALL_HEADERS and v is not None:
                found[k] = bytes(v)
        batch_keys = _BATCH_ONLY & found.keys()
        try:
            if not batch_keys and found.keys() == set(SIGNATURE_HEADERS):
                return cls(found[H_AGENCY].decode(), found[H_KEY].decode(), found[H_DIGEST], found[H_SIG])
            if batch_keys and found.keys() == set(BATCH_HEADERS):
                return cls(
                    found[H_AGENCY].decode(),
                    found[H_KEY].decode(),
                    found[H_DIGEST],
                    found[H_ROOT_SIG],
                    BatchProof(found[H_ROOT], found[H_PATH]),
                )
        except UnicodeDecodeError:
            return None
        return None

    def seal(self) -> bytes:
        """All of the signature evidence as one byte string, for a record forwarded inside another."""
        if self.batch is None:
            return self.signature
        return bytes((_SEAL_BATCH,)) + self.signature + self.batch.root + self.batch.proof

    @classmethod
    def from_seal(cls, agency: str, key_id: str, digest: bytes, seal: bytes) -> SignedHeaders:
        """The inverse of :meth:`seal`.  Anything that is not a well-formed batch seal is taken as a
        plain signature, which then fails to verify if it is not one."""
        if len(seal) != SIGNATURE_LEN and len(seal) >= _SEAL_MIN and seal[0] == _SEAL_BATCH:
            sig_end = 1 + SIGNATURE_LEN
            root_end = sig_end + merkle.HASH_LEN
            return cls(agency, key_id, digest, seal[1:sig_end], BatchProof(seal[sig_end:root_end], seal[root_end:]))
        return cls(agency, key_id, digest, seal)


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
    def from_pem(cls, agency: str, key_id: str, pem: bytes, passphrase: bytes | None = None) -> Signer:
        """The key in ``pem`` (PKCS#8), decrypted with ``passphrase`` when it is kept encrypted.

        Raises ValueError when an encrypted key is given no passphrase or a wrong one, or a
        passphrase is given for a key that is not encrypted."""
        try:
            key = load_pem_private_key(pem, password=passphrase)
        except TypeError as exc:  # cryptography's word for a passphrase missing or not needed
            raise ValueError(str(exc)) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureInvalid(Reason.UNKNOWN_KEY, f"signing key {key_id} of {agency} is not an Ed25519 key")
        return cls(agency, key_id, key)

    def private_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8, encrypted with ``passphrase`` (the library's best available scheme) when given."""
        crypt = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
        return self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, crypt)

    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, domain: Domain, record: bytes) -> SignedHeaders:
        digest = digest_of(record)
        sig = self._key.sign(signing_input(domain, self.agency, self.key_id, record, digest))
        return SignedHeaders(self.agency, self.key_id, digest, sig)

    def sign_batch(self, domain: Domain, records: Sequence[bytes]) -> list[SignedHeaders]:
        """One signature over the Merkle root of ``records``; the headers of each, in order."""
        return self.sign_digests(domain, [digest_of(r) for r in records])

    def sign_digests(self, domain: Domain, digests: Sequence[bytes]) -> list[SignedHeaders]:
        """:meth:`sign_batch` for records whose digests are already known.  Refuses an empty batch."""
        tree = merkle.MerkleTree(digests)
        size, root = tree.size, tree.root
        sig = self._key.sign(batch_signing_input(domain, self.agency, self.key_id, size, root))
        encode = merkle.encode_proof
        return [
            SignedHeaders(self.agency, self.key_id, d, sig, BatchProof(root, encode(i, size, tree.path(i))))
            for i, d in enumerate(digests)
        ]


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
    """The public keys a verifier trusts, by (agency, key id).

    Also remembers the batch roots whose signatures it has verified (a bounded LRU of
    ``root_cache`` entries, keyed by everything the root's signing input covers plus the
    signature), so that the records of one batch cost one Ed25519 check between them.
    A remembered root saves only that computation: the key's validity at each record's
    time, its digest and its audit path are checked for every record.
    """

    def __init__(self, keys: Sequence[PublicKey] = (), *, root_cache: int = 4096) -> None:
        self._keys: dict[tuple[str, str], PublicKey] = {}
        self._loaded: dict[tuple[str, str], Ed25519PublicKey] = {}
        self._roots: OrderedDict[tuple[str, str, str, int, bytes, bytes], None] = OrderedDict()
        self._root_cache = root_cache
        self.root_hits = 0
        self.root_misses = 0
        for k in keys:
            self.add(k)

    def add(self, key: PublicKey) -> None:
        self._keys[(key.agency, key.key_id)] = key
        self._loaded[(key.agency, key.key_id)] = Ed25519PublicKey.from_public_bytes(key.public_key)

    def public_keys(self) -> list[PublicKey]:
        """Every key held, in the order added (a key replaced keeps its place)."""
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
            raise SignatureInvalid(
                Reason.KEY_REVOKED, f"key {meta.key_id} was revoked at {meta.revoked_at:%Y-%m-%d %H:%M:%SZ}"
            )
        if at < meta.valid_from:
            raise SignatureInvalid(
                Reason.KEY_NOT_YET_VALID, f"key {meta.key_id} is valid only from {meta.valid_from:%Y-%m-%d %H:%M:%SZ}"
            )
        if meta.valid_until is not None and at >= meta.valid_until:
            raise SignatureInvalid(Reason.KEY_EXPIRED, f"key {meta.key_id} expired at {meta.valid_until:%Y-%m-%d}")
        if not hmac.compare_digest(digest_of(record), headers.digest):
            raise SignatureInvalid(Reason.TAMPERED, "record bytes do not match the signed digest")
        if headers.batch is not None:
            self._verify_batch(domain, headers, headers.batch)
            return headers
        try:
            self._loaded[(headers.agency, headers.key_id)].verify(
                headers.signature, signing_input(domain, headers.agency, headers.key_id, record, headers.digest)
            )
        except InvalidSignature:
            raise SignatureInvalid(
                Reason.FORGED, f"signature was not made by key {headers.key_id} of {headers.agency!r}"
            ) from None
        return headers

    def _verify_batch(self, domain: Domain, headers: SignedHeaders, batch: BatchProof) -> None:
        try:
            index, size, path = merkle.decode_proof(batch.proof)
        except ValueError as exc:
            raise SignatureInvalid(Reason.TAMPERED, f"malformed audit path: {exc}") from None
        if merkle.root_from_path(headers.digest, index, size, path) != batch.root:
            raise SignatureInvalid(
                Reason.TAMPERED, f"the audit path of leaf {index} of {size} does not lead to the signed batch root"
            )
        cache_key = (domain.value, headers.agency, headers.key_id, size, batch.root, headers.signature)
        if cache_key in self._roots:
            self._roots.move_to_end(cache_key)
            self.root_hits += 1
            return
        self.root_misses += 1
        try:
            self._loaded[(headers.agency, headers.key_id)].verify(
                headers.signature, batch_signing_input(domain, headers.agency, headers.key_id, size, batch.root)
            )
        except InvalidSignature:
            raise SignatureInvalid(
                Reason.FORGED, f"batch root signature was not made by key {headers.key_id} of {headers.agency!r}"
            ) from None
        self._roots[cache_key] = None
        if len(self._roots) > self._root_cache:
            self._roots.popitem(last=False)
