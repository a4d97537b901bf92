"""Measuring whether an agency has drained its directive topic (see
:func:`services.core.draining.drain_status` for the rule).

Why receipts and not consumer offsets: subscribers deliberately use no consumer
group (each replica keeps its own store and resumes from offsets in it), so the
cluster holds no committed offset for them. Receipts are what the agency itself
sends back, signed, after it stored a directive; a receipt for the last record of a
partition proves the agency read that partition to its end. The admin reads both
topics by assignment; nothing is committed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.core.access import feed_topics
from services.core.codec import SchemaRegistry, default_registry
from services.core.draining import DrainStatus, FeedRecord, drain_status, unreadable_id
from services.core.errors import CodecError
from services.core.models import Directive, Receipt
from services.core.world import World
from services.governance.reading import position, read_to_end
from services.kafka_access import KafkaAccess


def _feed(access: KafkaAccess, topic: str, schemas: SchemaRegistry) -> list[FeedRecord]:
    out: list[FeedRecord] = []
    for msg in read_to_end(access, topic):
        (p, off), value = position(msg), msg.value()
        try:
            d = schemas.decode_model(value, Directive) if value is not None else None
        except CodecError:
            d = None
        if d is None:
            out.append(FeedRecord(p, off, unreadable_id(topic, p, off)))
            continue
        out.append(FeedRecord(p, off, d.directive_id, d.key, d.action.value, d.valid_until))
    return out


def _receipted(access: KafkaAccess, topic: str, schemas: SchemaRegistry) -> set[str]:
    ids: set[str] = set()
    for msg in read_to_end(access, topic):
        value = msg.value()
        if value is None:
            continue
        try:
            ids.add(schemas.decode_model(value, Receipt).directive_id)
        except CodecError:
            continue
    return ids


def measure_drain(
    access: KafkaAccess,
    world: World,
    namespace: str,
    agency: str,
    now: datetime | None = None,
    schemas: SchemaRegistry | None = None,
) -> DrainStatus:
    schemas = schemas or default_registry()
    directives, receipts = feed_topics(world, namespace, agency)
    feed = _feed(access, directives, schemas)
    ids = _receipted(access, receipts, schemas) if feed else set()
    return drain_status(agency, directives, feed, ids, now or datetime.now(UTC))
