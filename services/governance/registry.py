"""Publishing the signed registry and following it (see :mod:`services.core.registry`).

``publish_registry`` (the admin, ``concord registry publish``) writes one publication:
every record, tombstones for records a previous publication had and this one has not
(so compaction forgets them), then the manifest. ``follow_registry`` (any principal
with READ on the registry: every agency and the fan-out) yields a verified snapshot
once it has read to the end, and a new one for each newer complete publication; it
raises :class:`RegistryStale` rather than hand out a registry older than ``max_age``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from services.core.errors import BrokerUnavailable
from services.core.registry import (
    MANIFEST_KEY,
    RegistrySnapshot,
    RegistryStale,
    RegistryState,
    admin_keyring,
    decode_value,
    registry_records,
)
from services.core.signing import Keyring, Signer
from services.core.world import World
from services.governance.reading import read_to_end
from services.kafka_access import KafkaAccess
from services.topic_metadata import topic_partitions

TIMEOUT = 30.0
DEFAULT_MAX_AGE = timedelta(hours=24)
_log = logging.getLogger("concord.rdkafka")


def registry_topic(world: World, namespace: str) -> str:
    return world.topic_name("registry", namespace=namespace)


@dataclass(frozen=True)
class Publication:
    topic: str
    serial: int
    records: int
    tombstones: int
    published_at: datetime


def publish_registry(
    access: KafkaAccess, namespace: str, world: World, keyring: Keyring, signer: Signer, *, at: datetime | None = None
) -> Publication:
    """Publish the world and keyring, signed by ``signer`` (the admin's key)."""
    topic = registry_topic(world, namespace)
    # Only a manifest this admin key verifies counts towards the serial: a forged one
    # must not push the numbering (and so the readers' anti-rollback check) around.
    state = RegistryState(admin_keyring(keyring))
    held: set[str] = set()
    for msg in read_to_end(access, topic):
        key = (msg.key() or b"").decode("utf-8", "replace")
        if msg.value() is None:
            held.discard(key)
        else:
            held.add(key)
        ts = msg.timestamp()[1]
        raw = msg.headers() or []
        headers = [(k, v) for k, v in (raw.items() if isinstance(raw, dict) else raw) if isinstance(v, bytes)]
        state.add(key, msg.value(), headers, datetime.fromtimestamp(ts / 1000, UTC))
    manifest = state.records.get(MANIFEST_KEY)
    serial = int(decode_value(manifest)["serial"]) if manifest is not None else 0
    published_at = (at or datetime.now(UTC)).replace(microsecond=0)
    records = registry_records(world, keyring, signer, published_at=published_at, serial=serial + 1)
    gone = sorted(held - {r.key for r in records})
    # One request in flight keeps the manifest after the records it names; a retried
    # duplicate is harmless (compaction keeps one of each, readers check digests).
    producer = Producer({**access.confluent_producer_config(), "max.in.flight.requests.per.connection": 1}, logger=_log)
    errors: list[str] = []

    def done(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for key in gone:
        producer.produce(topic, key=key.encode(), value=None, on_delivery=done)
    for rec in records:
        producer.produce(topic, key=rec.key.encode(), value=rec.value, headers=list(rec.headers), on_delivery=done)
    if producer.flush(TIMEOUT) or errors:
        raise BrokerUnavailable(f"registry not published: {'; '.join(errors) or 'timed out'}", topic=topic)
    return Publication(topic, serial + 1, len(records), len(gone), published_at)


async def follow_registry(
    access: KafkaAccess,
    ns: str,
    keyring_of_admin: Keyring,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    topic: str | None = None,
    poll_ms: int = 500,
) -> AsyncIterator[RegistrySnapshot]:
    """Verified snapshots of the registry: the current one, then each newer publication.

    Raises :class:`RegistryStale` when, after reading to the end, there is no complete
    publication or the newest is older than ``max_age``, and later whenever the snapshot
    in hand grows older than ``max_age`` without a newer one arriving.
    """
    topic = topic or f"{ns}.registry"
    state = RegistryState(keyring_of_admin)
    consumer = AIOKafkaConsumer(
        **access.aiokafka_kwargs(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while not await _at_end(consumer, ends):
            await _read(consumer, state, poll_ms)
        snapshot = state.fresh(max_age, datetime.now(UTC))
        yield snapshot
        while True:
            await _read(consumer, state, poll_ms)
            newer = state.fresh(max_age, datetime.now(UTC))
            if newer.serial != snapshot.serial:
                snapshot = newer
                yield snapshot
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        parts = await topic_partitions(consumer, topic)
        if parts:
            return parts
        if asyncio.get_running_loop().time() > deadline:
            raise RegistryStale(f"registry topic {topic} is missing or not readable", topic=topic)
        await asyncio.sleep(0.2)


async def _at_end(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def _read(consumer: AIOKafkaConsumer, state: RegistryState, poll_ms: int) -> None:
    batches = await consumer.getmany(timeout_ms=poll_ms)
    for records in batches.values():
        for rec in records:
            key = (rec.key or b"").decode("utf-8", "replace")
            state.add(key, rec.value, list(rec.headers or ()), datetime.fromtimestamp(rec.timestamp / 1000, UTC))
