"""Which partition a keyed record belongs on: Kafka's default partitioner, in one place.

Publishers key list records by entry id and let the Java-compatible default partitioner
(murmur2) place them; the fan-out refuses a record found elsewhere, and subscribers send
their receipts to the same partition number, so that one fan-out worker owns an entry's
records, its state and the receipts for its directives.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def entry_partition(entry_id: str | bytes, partitions: int) -> int:
    """The partition of an entry's list records (keyed by entry id), and of its receipts."""
    return key_partition(entry_id.encode() if isinstance(entry_id, str) else entry_id, partitions)
