"""The adapter signing in batches: one root signature per batch (capped in size and in
waiting time), records in their order, every record verifiable on its own, and the
ledger's guarantees unchanged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.adapter.ledger import Ledger
from services.adapter.publish import BatchPolicy, Publisher, Report, publish_rows
from services.adapter.sources import read_jsonl
from services.core.codec import default_registry
from services.core.errors import BrokerUnavailable
from services.core.models import ListEntryEvent, SealedListing
from services.core.signing import Domain, SignedHeaders, Signer
from tests.unit.adapter_fakes import TOPIC, FakeProducer, jsonl, records
from tests.unit.factories import keyring, real_world

pytestmark = pytest.mark.unit

WORLD = real_world()
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)
COURT = Signer.generate("court", "court-k1")


def batch_publisher(producer: FakeProducer, ledger: Ledger, **policy: Any) -> Publisher:
    return Publisher(
        producer=producer,
        agency="court",
        topic=TOPIC,
        signer=COURT,
        schemas=default_registry(),
        ledger=ledger,
        commit_interval=0.01,
        batch=BatchPolicy(**policy),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    with Ledger(tmp_path / "court.sqlite", topic=TOPIC) as led:
        yield led


async def publish(lines: list[str], producer: FakeProducer, ledger: Ledger, **policy: Any) -> Report:
    report = Report(file="export.jsonl")
    async with batch_publisher(producer, ledger, **policy) as pub:
        await publish_rows(read_jsonl(lines), publisher=pub, world=WORLD, report=report)
    return report


def verified(sent: list[dict[str, Any]]) -> list[SignedHeaders]:
    ring = keyring(COURT)
    out = []
    for s in sent:
        h = SignedHeaders.from_kafka(s["headers"])
        assert h is not None and h.batch is not None
        # A list record's signature covers its sealed commitments.
        commitments = default_registry().decode_model(s["value"], SealedListing).commitments
        out.append(ring.verify(Domain.LIST_RECORD, commitments, h, expected_agency="court", at=AT))
    return out


async def test_a_batch_shares_one_signature_and_every_record_verifies(ledger: Ledger) -> None:
    producer = FakeProducer()
    report = await publish(jsonl(records(5)), producer, ledger, max_wait=10)
    assert report.published == 5 and ledger.count() == 5
    heads = verified(producer.sent)
    assert len({h.signature for h in heads}) == 1


async def test_batches_are_capped_in_size_and_keep_the_order(ledger: Ledger) -> None:
    producer = FakeProducer()
    await publish(jsonl(records(5)), producer, ledger, max_records=2, max_wait=10)
    heads = verified(producer.sent)
    assert [len({h.signature for h in heads[i : i + 2]}) for i in (0, 2, 4)] == [1, 1, 1]
    assert len({h.signature for h in heads}) == 3
    assert [s["key"] for s in producer.sent] == [f"e-{i}".encode() for i in range(5)]


async def test_a_waiting_batch_is_sealed_after_its_wait(ledger: Ledger) -> None:
    producer = FakeProducer()
    report = Report(file="-")
    async with batch_publisher(producer, ledger, max_wait=0.05) as pub:
        for row in read_jsonl(jsonl(records(2))):
            await pub.submit(row, ListEntryEvent.model_validate(row.raw), report)
        assert producer.sent == []  # waiting for its batch
        for _ in range(100):
            if len(producer.sent) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(producer.sent) == 2  # sealed by time, without a flush
    verified(producer.sent)


async def test_a_repeat_inside_one_batch_is_sent_once(ledger: Ledger) -> None:
    rec = records(1)[0]
    producer = FakeProducer()
    report = await publish(jsonl([rec, rec]), producer, ledger, max_wait=10)
    assert (report.published, report.already_published, len(producer.sent)) == (1, 1, 1)


async def test_records_of_a_failed_batch_are_published_next_time(ledger: Ledger) -> None:
    lines = jsonl(records(3))
    producer = FakeProducer(hold=True)
    report = Report(file="export.jsonl")

    async def publish_one_of_three() -> None:
        async with batch_publisher(producer, ledger, max_wait=10) as pub:
            for row in read_jsonl(lines):
                await pub.submit(row, ListEntryEvent.model_validate(row.raw), report)
            await pub._seal()  # noqa: SLF001 - send the waiting batch now
            producer.ack(producer.futures[0])
            producer.release(fail=True)
            await pub.flush()

    with pytest.raises(BrokerUnavailable):
        await publish_one_of_three()
    assert ledger.count() == 1
    retry = await publish(lines, FakeProducer(), ledger)
    assert (retry.published, retry.already_published) == (2, 1)


def test_a_batch_policy_holds_at_least_one_record() -> None:
    with pytest.raises(ValueError, match="at least one record"):
        BatchPolicy(max_records=0)
