"""The implementing agency's subscriber: follow the directive feed into the store.

The consumer reads *all* partitions of the agency's directive topic by explicit
assignment, not through a consumer group: every replica of a subscriber keeps a
complete store of its own, and resumes from the offsets recorded in that store
(see :mod:`services.subscriber.store`).  An empty store therefore bootstraps from
the beginning of the compacted topic, with progress shown, then follows live.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.codec import SchemaRegistry
from services.core.errors import CodecError
from services.core.intake import Refused, admit_directive
from services.core.models import Directive
from services.core.signing import Domain, Keyring, Signer
from services.subscriber.store import DirectiveStore, Incoming, Rejected
from services.subscriber.types import Health
from services.kafka_access import KafkaAccess

log = logging.getLogger("concord.subscriber")


@dataclass(frozen=True)
class SubscriberMetrics:
    registry: CollectorRegistry
    applied: Counter
    rejected: Counter
    checks: Counter
    lag: Gauge
    active: Gauge
    apply_latency: Histogram

    @classmethod
    def create(cls, agency: str, registry: CollectorRegistry | None = None) -> SubscriberMetrics:
        r = registry or CollectorRegistry()
        lbl = {"agency": agency}
        return cls(
            registry=r,
            applied=Counter("concord_subscriber_directives_total", "Directives applied, by action",
                            ["agency", "action"], registry=r),
            rejected=Counter("concord_subscriber_rejected_total", "Directives refused, by reason",
                             ["agency", "reason"], registry=r),
            checks=Counter("concord_subscriber_checks_total", "Check questions answered", ["agency", "result"],
                           registry=r),
            lag=Gauge("concord_subscriber_lag_records", "Directives not yet read", list(lbl), registry=r),
            active=Gauge("concord_subscriber_active_directives", "Directives in force in the store", list(lbl),
                         registry=r),
            apply_latency=Histogram("concord_subscriber_end_to_end_seconds",
                                    "From the directive's broker timestamp to its application", ["agency"],
                                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r),
        )


@dataclass
class SubscriberService:
    agency: str
    access: KafkaAccess
    store: DirectiveStore
    keyring: Keyring
    schemas: SchemaRegistry
    signer: Signer
    directive_topic: str
    receipts_topic: str
    stale_after: float = 30.0
    progress: bool = True
    metrics: SubscriberMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = SubscriberMetrics.create(self.agency)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._caught_up_at: float | None = None
        self._lag: int | None = None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **self.access.aiokafka_kwargs(), enable_auto_commit=False, group_id=None,
            auto_offset_reset="earliest", max_poll_records=2000, fetch_max_wait_ms=100,
        )
        self._producer = AIOKafkaProducer(**self.access.aiokafka_kwargs(), acks="all", enable_idempotence=True,
                                          linger_ms=5)
        await self._consumer.start()
        await self._producer.start()
        # Explicit assignment needs the partition count; aiokafka's consumer has no public
        # call that waits for one topic's metadata, so ask its client to track the topic.
        await self._consumer._client.add_topic(self.directive_topic)  # noqa: SLF001
        parts = self._consumer.partitions_for_topic(self.directive_topic)
        if not parts:
            await self._consumer.stop()
            await self._producer.stop()
            raise Refused("UNKNOWN_TOPIC", f"directive topic {self.directive_topic} is missing or not readable")
        tps = [TopicPartition(self.directive_topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        held = self.store.positions()
        for tp in tps:
            last = held.get((tp.topic, tp.partition))
            if last is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, last + 1)

    async def stop(self) -> None:
        self._stopping.set()
        if self._producer is not None:
            await self._flush_receipts()
            await self._producer.stop()
        if self._consumer is not None:
            await self._consumer.stop()

    async def run(self) -> None:
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        total = sum(ends.values()) - sum(self.store.positions().values())
        started = time.monotonic()
        shown = 0.0
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            batch: list[Incoming | Rejected] = []
            stamps: list[float] = []
            for tp, records in batches.items():
                for rec in records:
                    batch.append(self._admit(tp, rec))
                    stamps.append(rec.timestamp / 1000)
            if batch:
                now = datetime.now(UTC)
                self.store.apply(batch, now)
                for item, ts in zip(batch, stamps, strict=True):
                    if isinstance(item, Incoming):
                        self.metrics.applied.labels(self.agency, item.directive.action.value).inc()
                        self.metrics.apply_latency.labels(self.agency).observe(max(0.0, now.timestamp() - ts))
                self.metrics.active.labels(self.agency).set(self.store.active_count())
            await self._flush_receipts()
            await self._update_lag()
            if self.progress and self._lag and total > 5000 and time.monotonic() - shown > 1.0:
                shown = time.monotonic()
                done = max(0, total - self._lag)
                rate = done / max(1e-6, shown - started)
                print(f"[{self.agency}] bootstrap: {done:,}/{total:,} directives ({rate:,.0f}/s)",
                      file=sys.stderr, flush=True)

    # --- per record -------------------------------------------------------------

    def _admit(self, tp: TopicPartition, rec: object) -> Incoming | Rejected:
        value = getattr(rec, "value", None)
        offset = int(getattr(rec, "offset", -1))
        try:
            d = admit_directive(agency=self.agency, value=value, headers=getattr(rec, "headers", None),
                                timestamp_ms=getattr(rec, "timestamp", None), keyring=self.keyring,
                                schemas=self.schemas)
            return Incoming(d, tp.topic, tp.partition, offset)
        except Refused as r:
            self.metrics.rejected.labels(self.agency, r.reason).inc()
            log.warning("%s: refused directive at %s[%d]@%d: %s", self.agency, tp.topic, tp.partition, offset, r)
            return Rejected(self._claimed_id(value, tp, offset), f"{r.reason}: {r.detail}", tp.topic,
                            tp.partition, offset)

    def _claimed_id(self, value: bytes | None, tp: TopicPartition, offset: int) -> str:
        """The id a refused directive claims, for its REJECTED receipt."""
        if value:
            try:
                return self.schemas.decode_model(value, Directive).directive_id
            except CodecError:
                pass
        return f"unreadable:{tp.topic}:{tp.partition}:{offset}"

    async def _flush_receipts(self) -> None:
        assert self._producer is not None
        while True:
            pending = self.store.pending_receipts()
            if not pending:
                return
            futures = []
            for _, receipt in pending:
                value = self.schemas.encode_model(receipt)
                signed = self.signer.sign(Domain.RECEIPT, value)
                key = (receipt.directive_key or receipt.directive_id).encode()
                futures.append(await self._producer.send(self.receipts_topic, value=value, key=key,
                                                         headers=signed.as_kafka()))
            await asyncio.gather(*futures)
            self.store.mark_sent([n for n, _ in pending])

    async def _update_lag(self) -> None:
        assert self._consumer is not None
        lag = 0
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is None:
                self._lag = None
                return
            lag += max(0, hw - await self._consumer.position(tp))
        self._lag = lag
        self.metrics.lag.labels(self.agency).set(lag)
        if lag == 0:
            self._caught_up_at = time.time()
            self.ready.set()

    # --- what the API reports ---------------------------------------------------

    def as_of(self) -> str | None:
        if self._caught_up_at is None:
            return None
        return datetime.fromtimestamp(self._caught_up_at, UTC).isoformat().replace("+00:00", "Z")

    def health(self) -> Health:
        common = {
            "agency": self.agency,
            "active_directives": self.store.active_count(),
            "lag": self._lag,
            "as_of": self.as_of(),
            "last_applied_at": self.store.last_applied_at(),
        }
        if self._caught_up_at is None:
            return Health(status="starting", detail="reading the directive feed", **common)
        stale = time.time() - self._caught_up_at
        if stale > self.stale_after:
            return Health(status="degraded", detail=f"feed not confirmed for {stale:.0f}s", **common)
        return Health(status="ok", **common)
