"""Which partition a key lands on: Kafka's default partitioner, in one place.

Kafka's Java producer (and librdkafka's ``murmur2_random``, and aiokafka's default)
place a keyed record on ``toPositive(murmur2(key)) % partitions``.  Concord relies on
that placement across topics: publishers key list records by entry id, the fan-out
refuses a list record found on another partition than its key's, and a receipt goes
to the receipts partition with the number of its entry's list partition, so that one
fan-out worker owns an entry's records, its state and the receipts for its directives.
Whoever writes such a record names the partition itself, with :func:`partition_for`,
rather than trusting that every client library's default agrees.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["partition_for"]


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    raw = key.encode() if isinstance(key, str) else key
    return (int(murmur2(raw)) & 0x7FFFFFFF) % partitions
