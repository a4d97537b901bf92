"""Helpers for tests that drive a real exchange: publish as an agency, read what came out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.intake import Refused, admit_directive
from services.core.models import Directive, ListEntryEvent, QuarantineRecord
from services.core.principals import ADMIN
from services.core.signing import Domain
from services.keystore import load_keyring, load_signer
from services.localstack import LocalStack
from services.topic_metadata import read_to_end

T = TypeVar("T")


def publish(stack: LocalStack, agency: str, records: Iterable[dict[str, Any] | ListEntryEvent]) -> int:
    """Seal, sign and produce as ``agency``, in order, in the adapter's wire form (keyed by entry id)."""
    events = [r if isinstance(r, ListEntryEvent) else ListEntryEvent.model_validate(r) for r in records]
    signer = load_signer(stack.home / "keys", agency)
    topic = stack.world.topic_name("lists", agency, namespace=stack.namespace)

    async def go() -> int:
        producer = AIOKafkaProducer(**stack.access(agency).aiokafka_producer_kwargs())
        await producer.start()
        try:
            for ev in events:
                sealed = seal_record(ev, default_registry())
                await producer.send_and_wait(
                    topic,
                    value=sealed.value,
                    key=ev.entry_id.encode(),
                    headers=signer.sign(Domain.LIST_RECORD, sealed.commitments).as_kafka(),
                )
        finally:
            await producer.stop()
        return len(events)

    return asyncio.run(go())


def directives(stack: LocalStack) -> list[Directive]:
    """Every verified directive on every directive topic, in partition order."""
    keyring = load_keyring(stack.home / "keys")
    topics = {s.name: s.agency for s in stack.world.topic_specs(stack.namespace) if s.kind == "directives"}
    out = []
    for topic, rec in asyncio.run(read_to_end(stack.access(ADMIN), topics)):
        if default_registry().kind_of(rec.value) == "heartbeat":
            continue  # the fan-out's sign of life, not a directive
        try:
            out.append(
                admit_directive(
                    agency=str(topics[topic]),
                    value=rec.value,
                    headers=rec.headers,
                    timestamp_ms=rec.timestamp,
                    keyring=keyring,
                    schemas=default_registry(),
                )
            )
        except Refused as exc:
            raise AssertionError(f"a directive on {topic} does not verify: {exc}") from None
    return out


def quarantined(stack: LocalStack) -> list[QuarantineRecord]:
    topic = stack.world.topic_name("quarantine", namespace=stack.namespace)
    return [
        default_registry().decode_model(rec.value, QuarantineRecord)
        for _, rec in asyncio.run(read_to_end(stack.access(ADMIN), [topic]))
    ]


def wait_for(
    fetch: Callable[[], list[T]], done: Callable[[list[T]], bool], *, timeout: float = 45.0, what: str = "condition"
) -> list[T]:
    """Poll ``fetch`` until ``done`` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        got = fetch()
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {got!r:.2000}")
        time.sleep(0.3)


def for_entry(ds: list[Directive], entry_id: str) -> list[Directive]:
    return [d for d in ds if d.entry_id == entry_id]


def summary(ds: Iterable[Directive]) -> set[tuple[str, str, str, str]]:
    """(action, subscriber, measure, subject_ref) of each directive, for readable assertions."""
    return {(d.action.value, d.subscriber, d.measure_id, d.subject_ref) for d in ds}
