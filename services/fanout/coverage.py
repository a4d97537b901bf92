"""Enforcement coverage: which agencies acted on which directives, and who is late.

Receipts are read from every implementing agency's receipts topic *from the
beginning* by explicit assignment (no consumer group), into a map of directive id
to its latest receipt.  The view is therefore derived from the log alone and
rebuilt on every start — it cannot drift from what the agencies actually signed.
A receipt is accepted only with a valid signature of the agency whose topic it is
on; anything else is counted and ignored.

Coverage is computed against the fan-out's own entry states: for each entry, the
latest directive of every key is either answered (a receipt with its id exists) or
outstanding since it was issued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core.codec import SchemaRegistry
from services.core.errors import CodecError, SignatureInvalid
from services.core.models import Receipt, ReceiptStatus
from services.core.routing import EntryState
from services.core.signing import Domain, Keyring, SignedHeaders
from services.kafka_access import KafkaAccess

log = logging.getLogger("concord.fanout.coverage")


@dataclass
class Outstanding:
    count: int = 0
    oldest_seconds: float = 0.0


@dataclass
class Coverage:
    answered: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    outstanding: dict[tuple[str, str], Outstanding] = field(default_factory=dict)  # (subscriber, mou)
    late_entries: list[dict[str, object]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "answered": self.answered,
            "by_status": self.by_status,
            "outstanding": [
                {"subscriber": s, "mou_id": m, "count": o.count, "oldest_seconds": round(o.oldest_seconds, 3)}
                for (s, m), o in sorted(self.outstanding.items())
            ],
            "late_entries": self.late_entries,
        }


class ReceiptView:
    def __init__(self, *, access: KafkaAccess, topics: dict[str, str], keyring: Keyring,
                 schemas: SchemaRegistry) -> None:
        self.access = access
        self.topics = topics  # topic -> agency
        self.keyring = keyring
        self.schemas = schemas
        self.latest: dict[str, Receipt] = {}
        self.refused = 0
        self.caught_up = asyncio.Event()

    async def follow(self, stopping: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(**self.access.aiokafka_kwargs(), group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = []
            for topic in self.topics:
                await consumer._client.add_topic(topic)  # noqa: SLF001 - see SubscriberService.start
                tps += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while not stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    for rec in records:
                        self._take(tp.topic, rec.value, rec.headers, rec.timestamp)
                if not self.caught_up.is_set():
                    positions = [await consumer.position(tp) for tp in ends]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, ends, strict=True)):
                        self.caught_up.set()
        finally:
            await consumer.stop()

    def _take(self, topic: str, value: bytes | None, headers: object, ts_ms: int) -> None:
        agency = self.topics[topic]
        if value is None:
            return
        try:
            self.keyring.verify(Domain.RECEIPT, value, SignedHeaders.from_kafka(headers),  # type: ignore[arg-type]
                                expected_agency=agency, at=datetime.fromtimestamp(ts_ms / 1000, UTC))
            receipt = self.schemas.decode_model(value, Receipt)
        except (SignatureInvalid, CodecError) as exc:
            self.refused += 1
            log.warning("ignored a receipt on %s: %s", topic, exc)
            return
        if receipt.agency != agency:
            self.refused += 1
            return
        self.latest[receipt.directive_id] = receipt

    def coverage(self, states: Iterable[EntryState], now: datetime, late_after: float = 60.0,
                 max_late: int = 100) -> Coverage:
        cov = Coverage()
        for state in states:
            for d in state.directives.values():
                r = self.latest.get(d.directive_id)
                if r is not None:
                    cov.answered += 1
                    cov.by_status[r.status.value] = cov.by_status.get(r.status.value, 0) + 1
                    continue
                age = max(0.0, (now - d.issued_at).total_seconds())
                o = cov.outstanding.setdefault((d.subscriber, d.mou_id), Outstanding())
                o.count += 1
                o.oldest_seconds = max(o.oldest_seconds, age)
                if age >= late_after and len(cov.late_entries) < max_late:
                    cov.late_entries.append({"entry": f"{d.origin_agency}/{d.entry_id}", "subscriber": d.subscriber,
                                             "measure_id": d.measure_id, "action": d.action.value,
                                             "directive_id": d.directive_id, "waiting_seconds": round(age, 1)})
        return cov

    def status_of(self, directive_id: str) -> ReceiptStatus | None:
        r = self.latest.get(directive_id)
        return r.status if r else None
