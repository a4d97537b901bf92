"""The subscriber's test material: directives as the fan-out issues them, a feed that numbers them
like a consumer, a store filled with a known set, clients of every scope, and a service whose feed
never starts (the check API then answers from the store alone)."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

from services.core.codec import default_registry
from services.core.intake import SourceCache, admit_directive
from services.core.models import (
    Action,
    Cause,
    Directive,
    Disclosure,
    Identifier,
    MeasureKind,
    Name,
    SourceRecord,
    SubjectKind,
    TargetSubject,
)
from services.core.pseudonyms import pseudonym
from services.core.signing import Domain, Keyring, Signer
from services.core.world import World
from services.kafka_access import KafkaAccess
from services.subscriber.clients import ClientSpec, api_key_hash
from services.subscriber.clients import Scope as ClientScope
from services.subscriber.service import SubscriberService
from services.subscriber.store import DirectiveStore, Incoming, Rejected, Tombstone
from tests.unit.factories import EFFECTIVE_FROM, EFFECTIVE_UNTIL, ENTRY_ID, KNOWN_RIC, KNOWN_RIC_X, KNOWN_USCC, NOW

AVIATION = "aviation.no-air-tickets"
RAIL = "rail.no-high-speed-rail"
TOPIC = "concord.directives.aviation"
GREEN = "customs.green-channel"
SECRET = "s3cret-for-tests"
KEY_HASH = api_key_hash(SECRET)  # one Argon2 hash for every test client (each costs ~0.1 s)
AUDITOR = f"auditor.{SECRET}"


def forwarding(
    d: Directive,
    record: bytes,
    signature: bytes,
    *,
    key_id: str,
    agency: str = "court",
    disclosures: tuple[Disclosure, ...] = (),
) -> Directive:
    """``d`` forwarding ``record`` as ``agency``'s key ``key_id`` sealed it with ``signature`` (read at
    t.lists.court 0:0)."""
    return d.model_copy(
        update={
            "source": SourceRecord(
                topic="t.lists.court",
                partition=0,
                offset=0,
                agency=agency,
                key_id=key_id,
                signature=signature,
                record=record,
                disclosures=disclosures,
            )
        }
    )


def admit_signed(
    value: bytes,
    *,
    fanout: Signer,
    keyring: Keyring,
    at: datetime = NOW,
    sources: SourceCache | None = None,
    world: World | None = None,
    stamped_by_broker: bool | None = None,
) -> Directive:
    """``value`` signed by ``fanout`` and admitted by the aviation subscriber as the broker stamped it at ``at``."""
    return admit_directive(
        agency="aviation",
        value=value,
        headers=fanout.sign(Domain.DIRECTIVE, value).as_kafka(),
        timestamp_ms=int(at.timestamp() * 1000),
        keyring=keyring,
        schemas=default_registry(),
        sources=sources,
        world=world,
        stamped_by_broker=stamped_by_broker,
    )


def directive(
    *,
    action: Action = Action.APPLY,
    seq: int = 1,
    measure: str = AVIATION,
    ref: str = "SUBJECT",
    ids: tuple[tuple[str, str], ...] = (("CN_RIC", KNOWN_RIC),),
    entry_id: str = ENTRY_ID,
    kind: MeasureKind = MeasureKind.PUNISH,
    valid_from: datetime = EFFECTIVE_FROM,
    valid_until: datetime | None = EFFECTIVE_UNTIL,
    cause: Cause | None = None,
) -> Directive:
    key = f"court/{entry_id}|{measure}|{ref}"
    did = hashlib.sha256(f"{key}|s{seq}|{action.value}".encode()).hexdigest()[:32]
    return Directive(
        directive_id=did,
        action=action,
        subscriber="aviation",
        measure_id=measure,
        measure_kind=kind,
        mou_id="mou-judgment-defaulters",
        mou_version=1,
        origin_agency="court",
        entry_id=entry_id,
        entry_version=seq,
        program="court.judgment-defaulters",
        subject_ref=ref,
        target=TargetSubject(
            kind=SubjectKind.PERSON,
            names=(Name(value="Wei Example"),),
            identifiers=tuple(Identifier(scheme=s, value=v) for s, v in ids),
        ),
        valid_from=valid_from,
        valid_until=valid_until,
        seq=seq,
        cause=cause or (Cause.LISTED if action is Action.APPLY else Cause.DELISTED),
        issued_at=NOW,
    )


def topic_key(d: Directive) -> str:
    """The key a directive has on its topic: a pseudonym of its directive key, as the fan-out keys it."""
    return pseudonym(b"test pseudonym secret, 32 bytes!", d.key)


class Feed:
    """Hands out increasing offsets on one partition, like a consumer would."""

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.offset = -1

    def __call__(self, d: Directive) -> Incoming:
        self.offset += 1
        return Incoming(d, TOPIC, self.partition, self.offset, topic_key(d))

    def tombstone(self, d: Directive) -> Tombstone:
        self.offset += 1
        return Tombstone(topic_key(d), TOPIC, self.partition, self.offset)

    def rejected(self, directive_id: str, reason: str = "FORGED: signature was not made by key k") -> Rejected:
        self.offset += 1
        return Rejected(directive_id, reason, TOPIC, self.partition, self.offset)


def client_specs() -> list[ClientSpec]:
    return [
        ClientSpec(
            name="auditor",
            scopes=(ClientScope.CHECK, ClientScope.DETAILS, ClientScope.ENTRIES),
            rate="100000/second",
            api_key=KEY_HASH,
        ),
        ClientSpec(name="counter", scopes=(ClientScope.CHECK,), rate="100000/second", api_key=KEY_HASH),
        ClientSpec(name="slow", scopes=(ClientScope.CHECK,), rate="3/minute", api_key=KEY_HASH),
        ClientSpec(name="desk", scopes=(ClientScope.CHECK,), rate="100000/second", certificate="desk-01"),
    ]


def fill(store: DirectiveStore) -> None:
    feed = Feed()
    store.apply(
        [
            feed(directive()),
            feed(directive(measure=RAIL, valid_until=None)),
            feed(
                directive(measure=GREEN, kind=MeasureKind.INCENT, entry_id="tax-2026-7", ids=(("CN_USCC", KNOWN_USCC),))
            ),
            feed(directive(entry_id="court-2026-9", ids=(("CN_RIC", KNOWN_RIC_X),))),
            feed(directive(entry_id="court-2026-9", action=Action.LIFT, seq=2, ids=(("CN_RIC", KNOWN_RIC_X),))),
        ],
        NOW,
    )


def offline_service(store: DirectiveStore, *, current: bool = True) -> SubscriberService:
    """A subscriber whose feed is never started: the API answers from the store alone; ``current``
    makes it one whose feed was just confirmed (heartbeats not required)."""
    svc = SubscriberService(
        agency="aviation",
        access=KafkaAccess(bootstrap="127.0.0.1:9"),
        store=store,
        keyring=Keyring(),
        schemas=default_registry(),
        signer=Signer.generate("aviation", "aviation-test"),
        directive_topic="t.directives.aviation",
        receipts_topic="t.receipts.aviation",
        require_heartbeats=False,
        stale_after=3600.0,
    )
    if current:
        svc.confirm(time.time())
    return svc
