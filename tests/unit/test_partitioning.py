"""Kafka's default partitioner, as the fan-out and the subscribers compute it."""

from __future__ import annotations

import pytest

from services.partitioning import entry_partition, key_partition

pytestmark = pytest.mark.unit

# Apache Kafka's own vectors for Utils.murmur2 (clients' UtilsTest), as signed 32-bit values.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "murmur2"), JAVA_MURMUR2.items(), ids=[k.decode() for k in JAVA_MURMUR2])
@pytest.mark.parametrize("partitions", [1, 3, 7, 12])
def test_the_partition_is_the_java_partitioners(key: bytes, murmur2: int, partitions: int) -> None:
    # DefaultPartitioner / BuiltInPartitioner: toPositive(murmur2(key)) % numPartitions
    assert key_partition(key, partitions) == (murmur2 & 0x7FFFFFFF) % partitions


def test_an_entry_id_is_partitioned_as_its_key() -> None:
    assert entry_partition("court-2026-000123", 3) == key_partition(b"court-2026-000123", 3)
    assert entry_partition(b"court-2026-000123", 3) == key_partition(b"court-2026-000123", 3)
