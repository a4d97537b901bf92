"""Admission of records read from a stream: verify, decode, validate — or refuse.

Authenticity is checked before anything is parsed: a record that is not what its
signer signed is reported as TAMPERED or FORGED, not as whatever parse error its
altered bytes happen to cause.  Every refusal is a :class:`Refused` carrying a
reason code, a :class:`~services.core.reasons.Reason`; the shells put the raw record in quarantine with
that code and go on.

**When a signature is judged.**  A key's validity (from, until, revoked) is judged at the
time the broker appended the record (``LogAppendTime``, which list and directive topics are
configured with), never at a time its producer chose: a stolen key cannot sign records
backdated to before its revocation.  A shell that knows the timestamp's type passes it, and
a record stamped by its producer (``CreateTime``) is then refused as UNTRUSTED_TIMESTAMP.
A list record forwarded inside a directive carries its own broker time
(``SourceRecord.appended_at``) and is judged at it, so a directive re-issued after its
publisher rotated keys, or after the key expired, still verifies; the time may not be later
than the directive's own.

**Which registry.**  A directive names the registry publication it was routed by
(``registry_serial``); a verifier holding an older one refuses it as REGISTRY_BEHIND, which
a shell that follows the registry answers by catching up and trying again, never with a
receipt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from services.core.codec import SchemaRegistry
from services.core.disclosure import DisclosureInvalid, content_digest, reveal, unwrap
from services.core.errors import CodecError, ConcordError, SignatureInvalid
from services.core.models import Directive, ListingCommitments, SourceRecord
from services.core.principals import FANOUT
from services.core.reasons import Reason
from services.core.routing import Accepted
from services.core.signing import Domain, Keyring, SignedHeaders, digest_of
from services.core.validation import context_problems
from services.core.verification import verify_routing
from services.core.world import World

FANOUT_PRINCIPAL = FANOUT  # who signs directives


class Refused(ConcordError):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


def _when(timestamp_ms: int | None, stamped_by_broker: bool | None = None) -> datetime:
    """The time a record is judged at: its broker timestamp; a missing one is now.  A record whose
    producer chose its timestamp (``stamped_by_broker`` False: CreateTime) is refused."""
    if stamped_by_broker is False:
        raise Refused(
            Reason.UNTRUSTED_TIMESTAMP,
            "the record carries its producer's timestamp, not the broker's: its "
            "topic must be configured with message.timestamp.type=LogAppendTime",
        )
    if timestamp_ms is None or timestamp_ms < 0:
        return datetime.now(UTC)
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        raise Refused(
            Reason.INVALID_TIMESTAMP, f"record timestamp {timestamp_ms} ms is not a representable time"
        ) from None


def _verify(
    keyring: Keyring, domain: Domain, value: bytes, headers: SignedHeaders | None, agency: str, at: datetime
) -> SignedHeaders:
    try:
        return keyring.verify(domain, value, headers, expected_agency=agency, at=at)
    except SignatureInvalid as exc:
        raise Refused(exc.reason, exc.message) from None


def _decode_commitments(schemas: SchemaRegistry, value: bytes) -> ListingCommitments:
    try:
        return schemas.decode_model(value, ListingCommitments)
    except CodecError as exc:
        raise Refused(exc.reason, exc.message) from None


def admit_list_record(
    *,
    origin: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] | None,
    timestamp_ms: int | None,
    keyring: Keyring,
    schemas: SchemaRegistry,
    world: World,
    key_partition: int | None = None,
    stamped_by_broker: bool | None = None,
) -> Accepted:
    """A list record from ``origin``'s topic, admitted for routing, or Refused.

    ``key_partition`` is the partition the record's key maps to (the shell computes it with
    Kafka's partitioner): an entry's records must all land on one partition, or its state
    would split between workers and a delisting could miss what a listing applied.
    """
    if value is None:
        raise Refused(Reason.UNDECODABLE, "record has no value")
    try:
        sealed = unwrap(value, schemas)
    except CodecError as exc:
        raise Refused(exc.reason, exc.message) from None
    appended = _when(timestamp_ms, stamped_by_broker)
    signed = _verify(
        keyring, Domain.LIST_RECORD, sealed.commitments, SignedHeaders.from_kafka(headers), origin, appended
    )
    commitments = _decode_commitments(schemas, sealed.commitments)
    try:
        event = reveal(commitments, sealed.disclosures).full_event()
    except DisclosureInvalid as exc:
        raise Refused(exc.reason, str(exc)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Refused(
            Reason.INVALID_RECORD, f"the disclosed record does not read back: {where}: {first['msg']}"
        ) from None
    if key is None:
        raise Refused(Reason.MISSING_KEY, f"entry {event.entry_id} was published without its key (the entry id)")
    if key.decode("utf-8", "replace") != event.entry_id:
        raise Refused(Reason.KEY_MISMATCH, f"record key {key!r} is not its entry id {event.entry_id!r}")
    if key_partition is not None and key_partition != partition:
        raise Refused(
            Reason.WRONG_PARTITION,
            f"entry {event.entry_id} belongs on partition {key_partition}, "
            f"not {partition}: publish with the entry id as key and the default "
            "partitioner",
        )
    problems = context_problems(event, agency=origin, world=world)
    if problems:
        raise Refused(Reason.INVALID_RECORD, "; ".join(str(p) for p in problems))
    # The source carries the whole seal (a batch member's root signature, root and audit path), so
    # that whoever receives the record forwarded can verify the publisher's signature on its own,
    # and every disclosure: the fan-out forwards each agency only those its MOU allows.
    source = SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        agency=signed.agency,
        key_id=signed.key_id,
        signature=signed.seal(),
        record=sealed.commitments,
        disclosures=sealed.disclosures,
        appended_at=appended,
    )
    return Accepted(origin=origin, event=event, source=source, digest=content_digest(commitments, sealed.disclosures))


@dataclass(frozen=True, slots=True)
class _CheckedSource:
    digest: bytes
    commitments: ListingCommitments
    good_from: datetime
    good_until: datetime | None


class SourceCache:
    """Publisher records already verified and decoded, so that the directives forwarding one source
    record (an organisation and its legal representative, several measures of one listing) cost one
    signature check and one decode between them, not one each.

    A hit is keyed by the seal itself (the signature, or a batch member's root signature, root and
    audit path) and still requires the record's bytes to hash to the digest that was verified, the
    signing agency to be the directive's origin, and the key to have been in force at the
    record's time: only the repeated computation is saved.  Bounded, least recently used out:
    the directives of one listing arrive close together.
    """

    def __init__(self, keyring: Keyring, max_entries: int = 8192) -> None:
        self._keys = {(k.agency, k.key_id): k for k in keyring.public_keys()}
        self._max = max_entries
        self._checked: OrderedDict[tuple[str, str, bytes], _CheckedSource] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, agency: str, key_id: str, signature: bytes, digest: bytes, at: datetime) -> _CheckedSource | None:
        key = (agency, key_id, signature)
        hit = self._checked.get(key)
        if (
            hit is None
            or hit.digest != digest
            or at < hit.good_from
            or (hit.good_until is not None and at >= hit.good_until)
        ):
            self.misses += 1
            return None
        self._checked.move_to_end(key)
        self.hits += 1
        return hit

    def put(self, agency: str, key_id: str, signature: bytes, digest: bytes, commitments: ListingCommitments) -> None:
        meta = self._keys.get((agency, key_id))
        if meta is None:
            return
        ends = [t for t in (meta.valid_until, meta.revoked_at) if t is not None]
        self._checked[(agency, key_id, signature)] = _CheckedSource(
            digest, commitments, meta.valid_from, min(ends) if ends else None
        )
        if len(self._checked) > self._max:
            self._checked.popitem(last=False)


def admit_directive(
    *,
    agency: str,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] | None,
    timestamp_ms: int | None,
    keyring: Keyring,
    schemas: SchemaRegistry,
    sources: SourceCache | None = None,
    world: World | None = None,
    stamped_by_broker: bool | None = None,
    registry_serial: int | None = None,
) -> Directive:
    """A directive for ``agency``, with both signatures checked and its routing re-derived, or Refused.

    The fan-out's signature says the exchange issued it; the publisher's signature on the
    forwarded source record says the listing is genuine and unaltered (``sources`` remembers
    records already verified, see :class:`SourceCache`); and with ``world`` (the MOUs, every
    version) the directive must be exactly what routing makes of that record for its key when
    it was issued (:func:`services.core.verification.verify_routing`).  ``registry_serial`` is
    the registry publication ``world`` and ``keyring`` come from (None: files), see the module.
    """
    if value is None:
        raise Refused(Reason.UNDECODABLE, "directive has no value")
    at = _when(timestamp_ms, stamped_by_broker)
    try:
        _verify(keyring, Domain.DIRECTIVE, value, SignedHeaders.from_kafka(headers), FANOUT_PRINCIPAL, at)
        d = schemas.decode_model(value, Directive)
    except CodecError as exc:
        raise Refused(exc.reason, exc.message) from None
    except Refused as r:
        if r.reason == "UNKNOWN_KEY" and registry_serial is not None:
            raise Refused(Reason.REGISTRY_BEHIND, f"{r.detail} in registry serial {registry_serial}") from None
        raise
    if d.registry_serial is not None and registry_serial is not None and d.registry_serial > registry_serial:
        raise Refused(
            Reason.REGISTRY_BEHIND,
            f"directive was routed by registry serial {d.registry_serial}; "
            f"this verifier holds serial {registry_serial}",
        )
    if d.subscriber != agency:
        raise Refused(Reason.WRONG_SUBSCRIBER, f"directive is for {d.subscriber!r}, not {agency!r}")
    src = d.source
    if src is None:
        # Every directive carries the record it follows from: an APPLY to be checked against it, a
        # LIFT to show the delisting, the later version or the period that ends it.
        raise Refused(Reason.SOURCE_MISMATCH, f"a {d.action.value} must carry the publisher's signed record")
    # The publisher's signature is judged when the broker appended the record, which cannot be
    # after the directive forwarding it was appended.
    src_at = src.appended_at or at
    if src_at > at:
        raise Refused(
            Reason.SOURCE_MISMATCH,
            f"the forwarded record claims to be appended at {src_at.isoformat()}, "
            f"after the directive ({at.isoformat()})",
        )
    # The source's digest is recomputed from its bytes: only the signature travels.
    digest = digest_of(src.record)
    hit = sources.get(src.agency, src.key_id, src.signature, digest, src_at) if sources is not None else None
    if hit is not None and src.agency == d.origin_agency:
        commitments = hit.commitments
    else:
        _verify(
            keyring,
            Domain.LIST_RECORD,
            src.record,
            SignedHeaders.from_seal(src.agency, src.key_id, digest, src.signature),
            d.origin_agency,
            src_at,
        )
        commitments = _decode_commitments(schemas, src.record)
        if sources is not None:
            sources.put(src.agency, src.key_id, src.signature, digest, commitments)
    if commitments.entry_id != d.entry_id or commitments.version != d.entry_version:
        raise Refused(
            Reason.SOURCE_MISMATCH,
            f"directive names {d.entry_id} v{d.entry_version}, its source is {commitments.entry_id} "
            f"v{commitments.version}",
        )
    # Every disclosure must be one the publisher signed; the agency sees what they say, no more.
    try:
        event = reveal(commitments, src.disclosures).event()
    except DisclosureInvalid as exc:
        raise Refused(exc.reason, str(exc)) from None
    except ValidationError as exc:
        raise Refused(
            Reason.TAMPERED, f"a disclosed part does not read as what its path names: {exc.errors()[0]['msg']}"
        ) from None
    if world is not None:
        refusal = verify_routing(d, event, world)
        if refusal is not None:
            raise Refused(refusal.reason, refusal.detail)
    return d
