"""Batch (Merkle-root) signatures through a real broker: the adapter seals its records in
batches, the fan-out admits each member on its own (refusing a tampered one as TAMPERED
while its batch-mates pass) and seals its directives per agency, and subscribers verify
both seals — with single-record signatures still accepted side by side."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.models import ListEntryEvent, SealedListing
from services.core.signing import H_PATH, H_ROOT, H_ROOT_SIG, H_SIG, Domain, SignedHeaders
from services.keystore import load_signer
from services.localstack import LocalStack
from services.topic_metadata import read_to_end
from tests.integration.support import concord, directives, for_entry, publish, quarantined
from tests.support import wait_for
from tests.unit.factories import entry_dict, make_ric, make_uscc, organization, person

pytestmark = pytest.mark.integration


def _cli_publish(stack: LocalStack, agency: str, records: list[dict[str, Any]], tmp: Path, *extra: str) -> None:
    path = tmp / f"{agency}-{len(records)}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = concord(stack.home, "publish", "--agency", agency, str(path), *extra, timeout=120)
    assert done.returncode == 0, done.stderr


def _headers_of(stack: LocalStack, topic: str) -> list[dict[str, bytes]]:
    """The signature headers of every record on ``topic`` but the fan-out's heartbeats (signed singly)."""
    records = asyncio.run(read_to_end(stack.access("concord-admin"), [topic]))
    return [dict(rec.headers) for _, rec in records if default_registry().kind_of(rec.value) != "heartbeat"]


def test_adapter_and_fanout_seal_in_batches_and_subscribers_verify_them(exchange: LocalStack, tmp_path: Path) -> None:
    people = [entry_dict(entry_id=f"batch-p{i}", subject=person(make_ric(100 + i))) for i in range(6)]
    _cli_publish(exchange, "court", people, tmp_path)
    court_topic = exchange.world.topic_name("lists", "court", namespace=exchange.namespace)
    listed = _headers_of(exchange, court_topic)
    assert len(listed) == 6 and all({H_ROOT, H_ROOT_SIG, H_PATH} <= h.keys() and H_SIG not in h for h in listed)
    assert len({h[H_ROOT_SIG] for h in listed}) < 6  # shared root signatures: fewer than one per record

    got = wait_for(
        "an air and a rail ban for each person",
        lambda: [d for d in directives(exchange) if d.entry_id.startswith("batch-p")],
        until=lambda ds: len(ds) >= 12,
        timeout=45,
    )
    assert {d.subscriber for d in got} == {"aviation", "rail"}
    air = exchange.world.topic_name("directives", "aviation", namespace=exchange.namespace)
    assert all(H_ROOT_SIG in h for h in _headers_of(exchange, air))

    def restricted() -> list[bool]:
        with exchange.check_client("aviation") as c:
            return [c.check(make_ric(100 + i)).status == "restricted" for i in range(6)]

    wait_for("aviation answering restricted for every person", restricted, until=all, timeout=45)
    # an agency's batch never holds another agency's directives
    roots = {
        a: {
            h[H_ROOT]
            for h in _headers_of(exchange, exchange.world.topic_name("directives", a, namespace=exchange.namespace))
        }
        for a in ("aviation", "rail")
    }
    assert not roots["aviation"] & roots["rail"]


def test_a_tampered_member_is_quarantined_and_its_batch_mates_pass(fanout_only: LocalStack) -> None:
    signer = load_signer(fanout_only.home / "keys", "court")
    events = [
        ListEntryEvent.model_validate(entry_dict(entry_id=f"seal-{i}", subject=organization(make_uscc(40 + i))))
        for i in range(3)
    ]
    records = [seal_record(ev, default_registry()) for ev in events]
    sealed = signer.sign_batch(Domain.LIST_RECORD, [r.commitments for r in records])
    values = [r.value for r in records]
    altered = bytearray(records[1].commitments)
    altered[-3] ^= 0x01  # after signing
    values[1] = default_registry().encode_model(
        SealedListing(commitments=bytes(altered), disclosures=records[1].disclosures)
    )
    topic = fanout_only.world.topic_name("lists", "court", namespace=fanout_only.namespace)

    async def send() -> None:
        producer = AIOKafkaProducer(**fanout_only.access("court").aiokafka_kwargs(), acks="all")
        await producer.start()
        try:
            for ev, value, headers in zip(events, values, sealed, strict=True):
                await producer.send_and_wait(topic, value=value, key=ev.entry_id.encode(), headers=headers.as_kafka())
        finally:
            await producer.stop()

    asyncio.run(send())
    q = wait_for(
        "the tampered record quarantined",
        lambda: quarantined(fanout_only),
        until=lambda qs: len(qs) >= 1,
        timeout=45,
    )
    assert [r.reason for r in q] == ["TAMPERED"] and q[0].source_offset is not None
    got = wait_for(
        "directives for the two genuine members",
        lambda: directives(fanout_only),
        until=lambda ds: len(for_entry(ds, "seal-0")) >= 3 and len(for_entry(ds, "seal-2")) >= 3,
        timeout=45,
    )
    assert for_entry(got, "seal-1") == []
    # the directives forward each member's whole seal: it verifies on its own
    d = for_entry(got, "seal-0")[0]
    assert d.source is not None
    seal = SignedHeaders.from_seal(d.source.agency, d.source.key_id, sealed[0].digest, d.source.signature)
    assert seal == sealed[0]


def test_single_record_signatures_still_pass_beside_batches(fanout_only: LocalStack, tmp_path: Path) -> None:
    publish(fanout_only, "court", [entry_dict(entry_id="single-1", subject=person(make_ric(300)))])  # one signature
    _cli_publish(
        fanout_only,
        "court",
        [entry_dict(entry_id="single-2", subject=person(make_ric(301)))],
        tmp_path,
        "--signatures",
        "single",
    )
    _cli_publish(fanout_only, "court", [entry_dict(entry_id="batch-3", subject=person(make_ric(302)))], tmp_path)
    got = wait_for(
        "directives for both kinds of signature",
        lambda: directives(fanout_only),
        until=lambda ds: all(len(for_entry(ds, e)) >= 2 for e in ("single-1", "single-2", "batch-3")),
        timeout=45,
    )
    assert quarantined(fanout_only) == []
    assert {d.entry_id for d in got} >= {"single-1", "single-2", "batch-3"}
