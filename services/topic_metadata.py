"""A topic's partitions and its end, as an aiokafka consumer sees them; reading topics to their end.

aiokafka's consumer answers ``partitions_for_topic`` only for the topics its client
already tracks, and has no public call that adds a topic and waits for its metadata
(``topics()`` fetches into a copy of its own).  Explicit assignment needs the
partitions, so :func:`topic_partitions` is the one place Concord asks the client itself.

Reading "to the end" means to the end a topic had when reading started (under
``read_committed``, its last stable offset): :func:`read_to_end` for a bounded read,
:func:`reached` for a reader that goes on following.  The confluent-kafka counterpart
is :mod:`services.governance.reading`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.kafka_access import KafkaAccess


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partitions of ``topic``, sorted; empty while it is missing or not readable."""
    await consumer._client.add_topic(topic)  # noqa: SLF001 - no public call waits for one topic's metadata
    return sorted(consumer.partitions_for_topic(topic) or ())


async def reached(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    """Whether ``consumer`` has read every partition of ``ends`` up to its end offset."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def read_to_end(access: KafkaAccess, topics: Iterable[str]) -> list[tuple[str, ConsumerRecord[bytes, bytes]]]:
    """Every committed record of ``topics`` up to their current end, in partition order, by assignment.

    It waits for the broker as long as it takes: a caller with a deadline wraps it in ``asyncio.timeout``.
    """
    consumer = AIOKafkaConsumer(
        **access.aiokafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        for topic in topics:
            tps += [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp: end for tp, end in ends.items() if end > 0}
        out: list[tuple[str, ConsumerRecord[bytes, bytes]]] = []
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batches.items():
                out += [(tp.topic, r) for r in records if r.offset < ends[tp]]
            for tp in list(pending):
                if await reached(consumer, {tp: pending[tp]}):
                    del pending[tp]
        return out
    finally:
        await consumer.stop()
