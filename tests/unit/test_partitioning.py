"""The partition function shared by writers that co-partition by entry id: Kafka's own."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.partitioning import partition_for

pytestmark = pytest.mark.unit

# Utils.murmur2 of the Java client (its UtilsTest), as signed 32-bit ints.
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2)
@pytest.mark.parametrize("partitions", [1, 3, 7, 12])
def test_matches_the_java_default_partitioner(key: bytes, java: int, partitions: int) -> None:
    assert partition_for(key, partitions) == (java & 0x7FFFFFFF) % partitions
    assert partition_for(key.decode(), partitions) == partition_for(key, partitions)


def test_matches_the_producer_of_the_subscriber_library() -> None:
    keys = [f"court-2026-{n:06d}".encode() for n in range(200)]
    assert [partition_for(k, 3) for k in keys] == [DefaultPartitioner()(k, [0, 1, 2], [0, 1, 2]) for k in keys]


def test_a_topic_has_partitions() -> None:
    with pytest.raises(ValueError, match="at least one"):
        partition_for("x", 0)
