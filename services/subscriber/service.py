"""The implementing agency's subscriber: follow the directive feed into the store.

The consumer reads *all* partitions of the agency's directive topic by explicit
assignment, not through a consumer group: every replica of a subscriber keeps a
complete store of its own, and resumes from the offsets recorded in that store
(see :mod:`services.subscriber.store`).  An empty store therefore bootstraps from
the beginning of the compacted topic, with progress shown, then follows live.

Receipts leave through the store's outbox on a task of their own.  While the
store is rebuilt from the topic (bootstrap) that task waits: receipts are durable
in the outbox and each costs a signature, so the store answers correctly first
and the receipts follow as soon as it has caught up.

The check API is served before Kafka is reached, from what the store holds: an
exchange that is down makes the subscriber *starting* or *degraded*, never mute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.codec import SchemaRegistry
from services.core.errors import CodecError
from services.core.intake import REASONS, Refused, SourceCache, admit_directive
from services.core.models import Action, Directive
from services.core.signing import Domain, Keyring, Signer
from services.subscriber.store import DirectiveStore, Incoming, Rejected
from services.subscriber.types import Health
from services.kafka_access import KafkaAccess

log = logging.getLogger("concord.subscriber")


@dataclass(frozen=True)
class SubscriberMetrics:
    """The subscriber's metrics on an explicit registry; every series carries the agency.

    Counters are created for every known action, result and refusal reason at start,
    so a first refusal shows in ``rate()`` and alerts can name reasons that have not
    happened yet.  Freshness, the receipts outbox and the connection are read when
    scraped (:meth:`bind`), so they are never stale themselves.
    """

    registry: CollectorRegistry
    applied: Counter
    rejected: Counter
    checks: Counter
    lag: Gauge
    active: Gauge
    apply_latency: Histogram
    freshness: Gauge
    outbox: Gauge
    connected: Gauge

    @classmethod
    def create(cls, agency: str, registry: CollectorRegistry | None = None) -> SubscriberMetrics:
        r = registry or CollectorRegistry()
        lbl = {"agency": agency}
        m = cls(
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
            freshness=Gauge("concord_subscriber_freshness_seconds",
                            "Seconds since the store last confirmed it had read its whole directive feed "
                            "(since start, while it never has)", list(lbl), registry=r),
            outbox=Gauge("concord_subscriber_receipts_outbox", "Receipts stored but not yet sent", list(lbl),
                         registry=r),
            connected=Gauge("concord_subscriber_connected", "1 while the directive feed is connected to Kafka",
                            list(lbl), registry=r),
        )
        for action in Action:
            m.applied.labels(agency, action.value)
        for reason in REASONS:
            m.rejected.labels(agency, reason)
        for result in ("restricted", "clear"):
            m.checks.labels(agency, result)
        m.lag.labels(agency)
        m.active.labels(agency)
        m.apply_latency.labels(agency)
        return m

    def bind(self, svc: SubscriberService) -> None:
        """Read freshness, outbox and connection from ``svc`` whenever the registry is collected."""
        started = svc.clock()

        def freshness() -> float:
            since = svc._caught_up_at if svc._caught_up_at is not None else started  # noqa: SLF001
            return max(0.0, svc.clock() - since)

        self.freshness.labels(svc.agency).set_function(freshness)
        self.outbox.labels(svc.agency).set_function(lambda: float(svc.store.pending_count()))
        self.connected.labels(svc.agency).set_function(lambda: 1.0 if svc._connected else 0.0)  # noqa: SLF001


def assess_health(*, agency: str, now: float, connected: bool, caught_up_at: float | None, lag: int | None,
                  stale_after: float, active: int, last_applied_at: str | None) -> Health:
    """How fresh the store's answers are, as ``/healthz`` reports it.

    *starting* until the feed has been read to its end once; then *ok* while the
    end of the feed was confirmed within ``stale_after`` seconds, else *degraded*
    (the store still answers, from what it holds; ``as_of`` says since when).
    """
    as_of = iso_or_none(float(int(caught_up_at))) if caught_up_at is not None else None
    common = {"agency": agency, "active_directives": active, "lag": lag, "as_of": as_of,
              "last_applied_at": last_applied_at}
    if caught_up_at is None:
        detail = "reading the directive feed" if connected else "connecting to the exchange"
        return Health(status="starting", detail=detail, **common)
    stale = now - caught_up_at
    if stale > stale_after:
        return Health(status="degraded", detail=f"feed not confirmed for {stale:.0f}s", **common)
    return Health(status="ok", **common)


def iso_or_none(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


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
    progress_threshold: int = 5000
    batch_size: int = 500
    clock: Callable[[], float] = time.time
    metrics: SubscriberMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = SubscriberMetrics.create(self.agency)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._connected = False
        self._caught_up_at: float | None = None
        self._as_of: str | None = None
        self._lag: int | None = None
        self._stopping = asyncio.Event()
        self._outbox = asyncio.Event()
        self._sources = SourceCache(self.keyring)
        self.ready = asyncio.Event()
        self.checks_restricted = self.metrics.checks.labels(self.agency, "restricted")
        self.checks_clear = self.metrics.checks.labels(self.agency, "clear")
        self.metrics.bind(self)

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Reach the directive topic and position on it; retried until it works or we stop."""
        delay = 0.5
        while True:
            try:
                await self._connect()
                return
            except (KafkaError, OSError) as exc:
                await self._close_clients()
                log.warning("%s: cannot reach the exchange (%s); retrying in %.0fs", self.agency, exc, delay)
            if self._stopping.is_set():
                raise asyncio.CancelledError
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _connect(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **self.access.aiokafka_kwargs(), enable_auto_commit=False, group_id=None,
            auto_offset_reset="earliest", max_poll_records=self.batch_size, fetch_max_wait_ms=100,
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
            await self._close_clients()
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
        self._connected = True

    async def _close_clients(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        self._consumer = self._producer = None
        self._connected = False

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Stop the clients; receipts not sent within ``flush_timeout`` stay in the outbox for next time."""
        self._stopping.set()
        if self._producer is not None:
            with contextlib.suppress(TimeoutError, KafkaError):
                await asyncio.wait_for(self._flush_receipts(), flush_timeout)
        await self._close_clients()

    async def run(self) -> None:
        """Follow the feed until stopped: the store first, then the receipts it owes."""
        receipts = asyncio.create_task(self._receipts_loop())
        try:
            await self._feed_loop()
        finally:
            receipts.cancel()
            await asyncio.gather(receipts, return_exceptions=True)

    async def _feed_loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        held = self.store.positions()
        total = sum(max(0, ends[tp] - max(begins[tp], held.get((tp.topic, tp.partition), -1) + 1)) for tp in tps)
        show = self.progress and total > self.progress_threshold
        started = shown = time.monotonic()
        done = 0
        if show:
            self._say(f"bootstrap: reading {total:,} directives from {self.directive_topic}")
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
            batch: list[Incoming | Rejected] = []
            stamps: list[float] = []
            for tp, records in batches.items():
                for rec in records:
                    batch.append(self._admit(tp, rec))
                    stamps.append(rec.timestamp / 1000)
            if batch:
                now = datetime.now(UTC)
                if self.store.apply(batch, now):
                    self._outbox.set()
                applied = self.metrics.applied
                for item, ts in zip(batch, stamps, strict=True):
                    if isinstance(item, Incoming):
                        applied.labels(self.agency, item.directive.action.value).inc()
                        self.metrics.apply_latency.labels(self.agency).observe(max(0.0, now.timestamp() - ts))
                self.metrics.active.labels(self.agency).set(self.store.active_count())
                done += len(batch)
            first = self._caught_up_at is None
            await self._update_lag()
            if show and first:
                t = time.monotonic()
                if self._caught_up_at is not None:
                    took = t - started
                    self._say(f"bootstrap: done, {done:,} directives in {took:.1f}s "
                              f"({done / max(took, 1e-6):,.0f}/s); {self.store.active_count():,} active")
                elif t - shown >= 1.0:
                    shown = t
                    self._say(f"bootstrap: {min(done, total):,}/{total:,} directives "
                              f"({done / max(t - started, 1e-6):,.0f}/s)")
            # Let the API answer between batches, however long the backlog.
            await asyncio.sleep(0)

    def _say(self, message: str) -> None:
        print(f"[{self.agency}] {message}", file=sys.stderr, flush=True)

    # --- per record -------------------------------------------------------------

    def _admit(self, tp: TopicPartition, rec: object) -> Incoming | Rejected:
        value = getattr(rec, "value", None)
        offset = int(getattr(rec, "offset", -1))
        try:
            d = admit_directive(agency=self.agency, value=value, headers=getattr(rec, "headers", None),
                                timestamp_ms=getattr(rec, "timestamp", None), keyring=self.keyring,
                                schemas=self.schemas, sources=self._sources)
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

    # --- receipts ---------------------------------------------------------------

    async def _receipts_loop(self) -> None:
        self._outbox.set()  # whatever a previous run left in the outbox goes first
        while not self._stopping.is_set():
            await self._outbox.wait()
            if self._caught_up_at is None:
                # Bootstrapping: the store first; the receipts wait, durable, in the outbox.
                await asyncio.sleep(0.5)
                continue
            self._outbox.clear()
            try:
                await self._flush_receipts()
            except KafkaError as exc:
                log.warning("%s: receipts not sent yet (%s); they stay in the outbox", self.agency, exc)
                self._outbox.set()
                await asyncio.sleep(1.0)

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
            self.caught_up(self.clock())

    def caught_up(self, now: float) -> None:
        """The whole feed has been read as of ``now``: answers are current to that moment."""
        if self._caught_up_at is None or int(now) != int(self._caught_up_at):
            self._as_of = iso_or_none(float(int(now)))
        self._caught_up_at = now
        self.ready.set()

    # --- what the API reports ---------------------------------------------------

    def as_of(self) -> str | None:
        """When the store last confirmed it had read its whole feed (to the second, kept ready-made)."""
        return self._as_of

    def health(self) -> Health:
        return assess_health(agency=self.agency, now=self.clock(), connected=self._connected,
                             caught_up_at=self._caught_up_at, lag=self._lag, stale_after=self.stale_after,
                             active=self.store.active_count(), last_applied_at=self.store.last_applied_at())
