"""The fan-out's directive sealer: per agency, one signature per batch (capped in size),
in order, everything sealed before the transaction commits; or one signature per
directive when batching is off."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.core.signing import Domain, Keyring, PublicKey, SignedHeaders, Signer
from services.fanout.sending import DirectiveSealer

pytestmark = pytest.mark.unit

FANOUT = Signer.generate("concord-fanout", "fanout-k1")
RING = Keyring([PublicKey("concord-fanout", "fanout-k1", FANOUT.public_bytes(), datetime(2025, 1, 1, tzinfo=UTC))])
AT = datetime(2026, 3, 10, tzinfo=UTC)


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int, list[tuple[str, bytes]]]] = []

    def __call__(self, topic: str, key: bytes, value: bytes, partition: int, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, key, value, partition, headers))

    def heads(self) -> list[SignedHeaders]:
        out = []
        for _, _, value, _, headers in self.sent:
            h = SignedHeaders.from_kafka(headers)
            out.append(RING.verify(Domain.DIRECTIVE, value, h, expected_agency="concord-fanout", at=AT))
        return out


def test_batches_are_per_agency_capped_and_in_order() -> None:
    sink = Sink()
    sealer = DirectiveSealer(signer=FANOUT, produce=sink, max_records=3)
    for i in range(4):
        sealer.add("aviation", "t.directives.aviation", f"a{i}".encode(), f"air {i}".encode(), 0)
        sealer.add("rail", "t.directives.rail", f"r{i}".encode(), f"rail {i}".encode(), 1)
    assert len(sink.sent) == 6  # a full batch of three for each agency
    assert sealer.waiting() == 2
    sealer.seal_all()
    assert sealer.waiting() == 0
    heads = sink.heads()
    by_topic: dict[str, list[Any]] = {}
    for (topic, key, _, partition, _), h in zip(sink.sent, heads, strict=True):
        by_topic.setdefault(topic, []).append((key, h.signature, partition))
    for got in by_topic.values():
        assert len({sig for _, sig, _ in got[:3]}) == 1
        assert got[3][1] != got[0][1]
    assert {sig for _, sig, _ in by_topic["t.directives.aviation"]}.isdisjoint(
        {sig for _, sig, _ in by_topic["t.directives.rail"]}
    )
    assert [k for k, _, _ in by_topic["t.directives.aviation"]] == [f"a{i}".encode() for i in range(4)]
    assert {p for _, _, p in by_topic["t.directives.rail"]} == {1}
    assert (sealer.batches, sealer.sent) == (4, 8)


def test_nothing_leaves_before_it_is_sealed_and_an_abort_forgets_it() -> None:
    sink = Sink()
    sealer = DirectiveSealer(signer=FANOUT, produce=sink)
    sealer.add("aviation", "t", b"k", b"v", 0)
    assert sink.sent == []
    sealer.discard()
    sealer.seal_all()
    assert sink.sent == []
    sealer.add("aviation", "t", b"k", b"v", 0)
    sealer.seal_all()
    assert len(sink.heads()) == 1


def test_without_batching_each_directive_is_signed_and_sent_at_once() -> None:
    sink = Sink()
    sealer = DirectiveSealer(signer=FANOUT, produce=sink, batch=False)
    sealer.add("aviation", "t", b"k1", b"v1", 0)
    sealer.add("aviation", "t", b"k2", b"v2", 0)
    heads = sink.heads()
    assert len(heads) == 2
    assert all(h.batch is None for h in heads)
