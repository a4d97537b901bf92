"""The fan-out's directive sender: per agency, one signature per send batch (capped in
size and wait), in order, flushed before faust commits an offset; or one signature per
directive when batching is off."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from services.core.signing import Domain, Keyring, PublicKey, SignedHeaders, Signer
from services.fanout.sending import DirectiveSender

pytestmark = pytest.mark.unit

FANOUT = Signer.generate("concord-fanout", "fanout-k1")
RING = Keyring([PublicKey("concord-fanout", "fanout-k1", FANOUT.public_bytes(), datetime(2025, 1, 1, tzinfo=UTC))])
AT = datetime(2026, 3, 10, tzinfo=UTC)


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int, list[tuple[str, bytes]]]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes, partition: int,
                       headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, key, value, partition, headers))

    def heads(self) -> list[SignedHeaders]:
        out = []
        for _, _, value, _, headers in self.sent:
            h = SignedHeaders.from_kafka(headers)
            out.append(RING.verify(Domain.DIRECTIVE, value, h, expected_agency="concord-fanout", at=AT))
        return out


async def test_batches_are_per_agency_capped_and_in_order() -> None:
    sink = Sink()
    sender = DirectiveSender(signer=FANOUT, send=sink, max_records=3, max_wait=10)
    for i in range(4):
        await sender.send("aviation", "t.directives.aviation", f"a{i}".encode(), f"air {i}".encode(), 0)
        await sender.send("rail", "t.directives.rail", f"r{i}".encode(), f"rail {i}".encode(), 1)
    assert len(sink.sent) == 6  # a full batch of three for each agency
    await sender.flush()
    heads = sink.heads()
    by_topic: dict[str, list[Any]] = {}
    for (topic, key, *_), h in zip(sink.sent, heads, strict=True):
        by_topic.setdefault(topic, []).append((key, h.signature))
    for got in by_topic.values():
        assert len({sig for _, sig in got[:3]}) == 1 and got[3][1] != got[0][1]
    assert {sig for _, sig in by_topic["t.directives.aviation"]}.isdisjoint(
        {sig for _, sig in by_topic["t.directives.rail"]})
    assert [k for k, _ in by_topic["t.directives.aviation"]] == [f"a{i}".encode() for i in range(4)]
    assert (sender.batches, sender.sent) == (4, 8)


async def test_a_waiting_batch_leaves_after_its_wait() -> None:
    sink = Sink()
    sender = DirectiveSender(signer=FANOUT, send=sink, max_wait=0.02)
    task = asyncio.create_task(sender.run())
    try:
        await sender.send("aviation", "t", b"k", b"v", 0)
        assert sink.sent == []
        for _ in range(100):
            if sink.sent:
                break
            await asyncio.sleep(0.01)
        assert len(sink.heads()) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_producer_flush_faust_awaits_before_a_commit_sends_what_waits_first() -> None:
    sink = Sink()
    sender = DirectiveSender(signer=FANOUT, send=sink, max_wait=10)
    order: list[str] = []

    class Producer:
        async def flush(self) -> None:
            order.append(f"producer flushed after {len(sink.sent)} sent")

    producer = Producer()
    sender.guard(producer)
    sender.guard(producer)  # once only
    await sender.send("aviation", "t", b"k", b"v", 0)
    await producer.flush()
    assert order == ["producer flushed after 1 sent"]


async def test_without_batching_each_directive_is_signed_and_sent_at_once() -> None:
    sink = Sink()
    sender = DirectiveSender(signer=FANOUT, send=sink, batch=False)
    await sender.send("aviation", "t", b"k1", b"v1", 0)
    await sender.send("aviation", "t", b"k2", b"v2", 0)
    heads = sink.heads()
    assert len(heads) == 2 and all(h.batch is None for h in heads)
