"""A topic's partitions, as an aiokafka consumer sees them.

aiokafka's consumer answers ``partitions_for_topic`` only for the topics its client
already tracks, and has no public call that adds a topic and waits for its metadata
(``topics()`` fetches into a copy of its own).  Explicit assignment needs the
partitions, so :func:`topic_partitions` is the one place Concord asks the client itself.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partitions of ``topic``, sorted; empty while it is missing or not readable."""
    await consumer._client.add_topic(topic)  # noqa: SLF001 - no public call waits for one topic's metadata
    return sorted(consumer.partitions_for_topic(topic) or ())
