"""The signed registry's records: encoding, signing and assembling snapshots (pure).

The registry carries the declared world and the public keys to every service over
the compacted ``<ns>.registry`` topic, one record per thing, keyed ``<kind>/<id>``:

``agency/<agency_id>``, ``program/<program_id>``, ``mou/<mou_id>`` (every version),
``topics/templates``, ``key/<agency>/<key_id>`` and, last, ``manifest/registry``.

Every value is signed by ``concord-admin`` (:attr:`Domain.REGISTRY`). The manifest
names every record of one publication with the SHA-256 of its bytes, a serial number
and the publication time, so a reader assembles a snapshot only when it holds exactly
the records the newest verified manifest names: a half-written publication, a record
left over from an older one or a forged record can never mix into a snapshot.
A manifest whose serial is not newer than the snapshot in hand is ignored (no
rollback), and a snapshot older than the reader's limit is refused as stale: the
publisher republishes periodically to prove the registry is current.

The values are canonical JSON, not Avro: the registry ships the ``topics/``
documents themselves (``World.to_documents``), checked again by the same loader on
the reading side. They are framed like Avro single-object records (two marker bytes
``C3 4A`` and an 8-byte fingerprint, here of the format name) so that the signature,
which covers those 8 bytes, also binds the format.

Errors::

    ConcordError
    ├── RegistryInvalid     a registry record or snapshot cannot be used
    └── RegistryStale       the newest snapshot is older than the reader accepts
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.core.errors import ConcordError, SignatureInvalid, WorldInvalid
from services.core.principals import ADMIN
from services.core.signing import Domain, Keyring, PublicKey, SignedHeaders, Signer
from services.core.world import AGENCY_FILE, MOU_DIR, PROGRAM_FILE, TOPIC_FILE, World, parse_world

FORMAT = "concord.registry/v1+json"
MAGIC = b"\xc3\x4a"
FORMAT_FINGERPRINT = hashlib.sha256(FORMAT.encode()).digest()[:8]
MANIFEST_KEY = "manifest/registry"


class RegistryInvalid(ConcordError):
    pass


class RegistryStale(ConcordError):
    retriable = True


def encode_value(doc: dict[str, Any]) -> bytes:
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return MAGIC + FORMAT_FINGERPRINT + body


def decode_value(raw: bytes) -> dict[str, Any]:
    if raw[:2] != MAGIC or raw[2:10] != FORMAT_FINGERPRINT:
        raise RegistryInvalid("not a Concord registry record (wrong marker or format)")
    try:
        doc = json.loads(raw[10:])
    except ValueError as exc:
        raise RegistryInvalid(f"registry record is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RegistryInvalid("registry record is not a JSON object")
    return doc


def digest_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class RegistryRecord:
    key: str
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def _docs(world: World, keyring: Keyring) -> dict[str, tuple[str, Any]]:
    """``{key: (kind, data)}`` for every record of a publication but the manifest."""
    docs = world.to_documents()
    out: dict[str, tuple[str, Any]] = {}
    for agency in docs[AGENCY_FILE]["agencies"]:
        out[f"agency/{agency['agency_id']}"] = ("agency", agency)
    for program in docs[PROGRAM_FILE]["programs"]:
        out[f"program/{program['program_id']}"] = ("program", program)
    for name, doc in docs.items():
        if name.startswith(f"{MOU_DIR}/"):
            out[f"mou/{doc['mou_id']}"] = ("mou", doc)
    out["topics/templates"] = ("topics", docs[TOPIC_FILE])
    for key in keyring.public_keys():
        out[f"key/{key.agency}/{key.key_id}"] = ("key", key.to_json())
    return out


def registry_records(
    world: World, keyring: Keyring, signer: Signer, *, published_at: datetime, serial: int
) -> list[RegistryRecord]:
    """One signed record per agency, program, MOU, key and the topic templates; the manifest last."""
    if signer.agency != ADMIN:
        raise RegistryInvalid(f"the registry is signed by {ADMIN}, not {signer.agency!r}")
    when = published_at.isoformat()
    records: list[RegistryRecord] = []
    digests: dict[str, str] = {}
    for key, (kind, data) in sorted(_docs(world, keyring).items()):
        value = encode_value({"kind": kind, "key": key, "published_at": when, "data": data})
        digests[key] = digest_hex(value)
        records.append(RegistryRecord(key, value, tuple(signer.sign(Domain.REGISTRY, value).as_kafka())))
    manifest = encode_value(
        {"kind": "manifest", "key": MANIFEST_KEY, "published_at": when, "serial": serial, "records": digests}
    )
    records.append(RegistryRecord(MANIFEST_KEY, manifest, tuple(signer.sign(Domain.REGISTRY, manifest).as_kafka())))
    return records


@dataclass(frozen=True)
class RegistrySnapshot:
    """A complete, verified publication of the registry."""

    world: World
    keyring: Keyring = field(compare=False)
    published_at: datetime
    serial: int

    def age(self, now: datetime) -> timedelta:
        return now - self.published_at


@dataclass
class RegistryState:
    """Accumulates registry records as read from the topic; assembles verified snapshots.

    Records that fail verification are kept out and counted in ``rejected`` with the
    reason: the registry is written by the admin alone, so each one is an incident.
    """

    admin_keyring: Keyring
    records: dict[str, bytes] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    current: RegistrySnapshot | None = None

    def add(
        self, key: str, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None, produced_at: datetime
    ) -> None:
        if value is None:
            self.records.pop(key, None)
            return
        try:
            self.admin_keyring.verify(
                Domain.REGISTRY, value, SignedHeaders.from_kafka(headers), expected_agency=ADMIN, at=produced_at
            )
            doc = decode_value(value)
        except (SignatureInvalid, RegistryInvalid) as exc:
            self.rejected.append(f"{key}: {exc}")
            return
        if doc.get("key") != key:
            self.rejected.append(f"{key}: record names key {doc.get('key')!r}, was published under {key!r}")
            return
        self.records[key] = value

    def snapshot(self) -> RegistrySnapshot | None:
        """The newest complete publication not older than the one in hand, or None."""
        raw = self.records.get(MANIFEST_KEY)
        if raw is None:
            return self.current
        manifest = decode_value(raw)
        serial = int(manifest["serial"])
        if self.current is not None and serial <= self.current.serial:
            return self.current
        wanted: dict[str, str] = manifest["records"]
        docs: dict[str, Any] = {}
        for key, digest in wanted.items():
            value = self.records.get(key)
            if value is None or digest_hex(value) != digest:
                return self.current  # publication not complete yet
            docs[key] = decode_value(value)
        self.current = _assemble(docs, datetime.fromisoformat(manifest["published_at"]), serial)
        return self.current

    def fresh(self, max_age: timedelta, now: datetime) -> RegistrySnapshot:
        """The newest snapshot, or RegistryStale when there is none or it is older than ``max_age``."""
        snapshot = self.snapshot()
        if snapshot is None:
            refused = f" ({len(self.rejected)} record(s) refused; first: {self.rejected[0]})" if self.rejected else ""
            raise RegistryStale(f"no complete, verified registry publication{refused}")
        age = snapshot.age(now)
        if age > max_age:
            raise RegistryStale(
                f"the registry was published {snapshot.published_at.isoformat()} (serial {snapshot.serial}), "
                f"{age.total_seconds():.0f}s ago: older than the {max_age.total_seconds():.0f}s allowed"
            )
        return snapshot


def _assemble(docs: dict[str, Any], published_at: datetime, serial: int) -> RegistrySnapshot:
    def of(kind: str) -> list[Any]:
        return [d["data"] for k, d in sorted(docs.items()) if d["kind"] == kind]

    files: dict[str, Any] = {
        AGENCY_FILE: {"agencies": of("agency")},
        PROGRAM_FILE: {"programs": of("program")},
    }
    topics = of("topics")
    if len(topics) != 1:
        raise RegistryInvalid(f"a publication holds exactly one topics record, not {len(topics)}")
    files[TOPIC_FILE] = topics[0]
    for mou in of("mou"):
        files[f"{MOU_DIR}/{mou['mou_id']}.yaml"] = mou
    try:
        world = parse_world(files)
    except WorldInvalid as exc:
        raise RegistryInvalid(f"the registry's world is invalid: {exc}") from None
    try:
        keyring = Keyring([PublicKey.from_json(k) for k in of("key")])
    except (KeyError, ValueError) as exc:
        raise RegistryInvalid(f"a key record is malformed: {exc}") from None
    return RegistrySnapshot(world, keyring, published_at, serial)


def admin_keyring(keyring: Keyring | Iterable[PublicKey]) -> Keyring:
    """Only the admin's keys: the trust anchor a registry reader is given out of band."""
    keys = keyring.public_keys() if isinstance(keyring, Keyring) else list(keyring)
    return Keyring([k for k in keys if k.agency == ADMIN])
