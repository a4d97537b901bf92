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

**The signed registry** (``registry``): the MOUs every directive is verified against, the
keys, and the agency's own signing key come from each newer publication, live.  A directive
routed by a newer publication than the one in hand (or signed by a key it does not know yet)
makes the feed catch up with the registry and try again; the feed waits rather than refuse
it.  While the registry is older than its maximum age every check answers ``unknown``: which
measures apply depends on the MOUs in force and the keys, and the fan-out withholds APPLYs
meanwhile, so neither ``restricted`` nor ``clear`` can be vouched for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from services.core.codec import SchemaRegistry
from services.core.draining import unreadable_id
from services.core.errors import CodecError
from services.core.heartbeat import admit_heartbeat, is_heartbeat
from services.core.intake import Refused, SourceCache, admit_directive
from services.core.models import Action, Directive
from services.core.reasons import Reason
from services.core.registry import RegistrySnapshot
from services.core.signing import Domain, Keyring, Signer
from services.core.world import World
from services.governance.registry import RegistryWatch
from services.kafka_access import KafkaAccess
from services.partitioning import partition_for
from services.subscriber.metrics import SubscriberMetrics
from services.subscriber.store import DirectiveStore, Incoming, Passed, Rejected, Tombstone
from services.subscriber.types import CHECK_RESULTS, Health
from services.topic_metadata import reached, topic_partitions

LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it

log = logging.getLogger("concord.subscriber")


def assess_health(
    *,
    agency: str,
    now: float,
    connected: bool,
    confirmed_at: float | None,
    heartbeats: Mapping[int, float | None] | None,
    lag: int | None,
    stale_after: float,
    active: int,
    last_applied_at: str | None,
    registry: str | None = None,
    registry_problem: str | None = None,
) -> Health:
    """How current the store's answers are, as ``/healthz`` reports it and checks answer.

    *starting* until a round trip to the broker has confirmed once that the store holds
    the whole feed (bootstrapping); then *ok* while that was confirmed within
    ``stale_after`` seconds and — unless ``heartbeats`` is None (not required) — every
    directive partition has carried a fan-out heartbeat stamped by the broker within
    ``stale_after`` seconds; else *degraded*.  Anything but *ok* makes checks answer
    ``unknown``: the store still holds what it held, but nobody can say it is current.
    ``registry_problem`` (the signed registry is not current) makes it *degraded* too.
    """
    as_of = iso_or_none(float(int(confirmed_at))) if confirmed_at is not None else None
    oldest = None
    if heartbeats:
        ages = [now - ts if ts is not None else float("inf") for ts in heartbeats.values()]
        oldest = max(ages)
    ok = Health(
        status="ok",
        agency=agency,
        active_directives=active,
        lag=lag,
        as_of=as_of,
        last_applied_at=last_applied_at,
        heartbeat_age=round(oldest, 3) if oldest is not None and oldest != float("inf") else None,
        registry=registry,
    )
    if registry_problem is not None:
        return ok.model_copy(
            update={"status": "degraded" if confirmed_at is not None else "starting", "detail": registry_problem}
        )
    if confirmed_at is None:
        detail = "reading the directive feed" if connected else "connecting to the exchange"
        return ok.model_copy(update={"status": "starting", "detail": detail})
    stale = now - confirmed_at
    if stale > stale_after:
        return ok.model_copy(
            update={"status": "degraded", "detail": f"feed not confirmed by the broker for {stale:.0f}s"}
        )
    if heartbeats is not None:
        silent = sorted(p for p, ts in heartbeats.items() if ts is None or now - ts > stale_after)
        if silent or not heartbeats:
            which = ", ".join(map(str, silent)) if silent else "any"
            detail = f"no fan-out heartbeat within {stale_after:.0f}s on partition {which}"
            return ok.model_copy(update={"status": "degraded", "detail": detail})
    return ok


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
    require_heartbeats: bool = True
    # The MOUs (every version): each directive must be what routing makes of its record under them.
    world: World | None = None
    lifted_retention_days: float = 30.0
    purge_interval: float = 3600.0
    # The signed registry, when the world and keys come from it (see the module), and how the
    # agency picks its signing key from a keyring.
    registry: RegistryWatch | None = None
    signer_for: Callable[[Keyring], Signer] | None = None
    topics_for: Callable[[World], tuple[str, str]] | None = None  # the directive and receipts topics
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
        self._confirmed_at: float | None = None
        #: While a bootstrap is shown: when it started and how many records it has read.
        self._bootstrap: tuple[float, int] | None = None
        self._as_of: str | None = None
        self._lag: int | None = None
        self._partitions: tuple[int, ...] = ()
        self._heartbeats: dict[int, float] = {}
        self._fresh_until = float("-inf")
        self._offsets: deque[tuple[float, float]] = deque(maxlen=64)
        self._receipt_partitions: int | None = None
        self._stopping = asyncio.Event()
        self._outbox = asyncio.Event()
        self._sources = SourceCache(self.keyring)
        self._serial: int | None = None
        self._published_at: datetime | None = None
        self._registry_until = float("inf")  # when the registry in hand grows too old (inf: files)
        self._credentials = self.access.watch_credentials()
        self._behind_since: float | None = None
        if self.registry is not None:
            self._registry_until = float("-inf")
            self.metrics.registry_age.bind(self.registry)
            if self.registry.snapshot is not None:
                self.take(self.registry.snapshot)
        self.ready = asyncio.Event()
        self.checks = {result: self.metrics.checks.labels(self.agency, result) for result in CHECK_RESULTS}
        self.metrics.bind(self)

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Reach the directive topic and position on it; retried until it works or we stop."""
        delay = 0.5
        while self.registry is not None and self._serial is None:
            snapshot = await asyncio.to_thread(self.registry.wait_first, 1.0)
            if snapshot is not None:
                self.take(snapshot)
            elif self._stopping.is_set():
                raise asyncio.CancelledError
        while True:
            try:
                await self._connect()
            except (KafkaError, OSError) as exc:
                await self._close_clients()
                log.warning("%s: cannot reach the exchange (%s); retrying in %.0fs", self.agency, exc, delay)
            else:
                return
            if self._stopping.is_set():
                raise asyncio.CancelledError
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _connect(self) -> None:
        # read_committed: the fan-out writes directives in Kafka transactions with the entry's
        # state and its source offset; what an aborted transaction wrote never reaches the store.
        self._consumer = AIOKafkaConsumer(
            **self.access.aiokafka_kwargs(),
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            fetch_max_wait_ms=100,
            isolation_level="read_committed",
        )
        self._producer = AIOKafkaProducer(
            **self.access.aiokafka_kwargs(), acks="all", enable_idempotence=True, linger_ms=5
        )
        await self._consumer.start()
        await self._producer.start()
        parts = await topic_partitions(self._consumer, self.directive_topic)
        if not parts:
            await self._close_clients()
            raise Refused(Reason.UNKNOWN_TOPIC, f"directive topic {self.directive_topic} is missing or not readable")
        tps = [TopicPartition(self.directive_topic, p) for p in parts]
        self._consumer.assign(tps)
        self.expect_partitions(parts)
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
        """Follow the feed until stopped: the store first, then the receipts it owes; confirm beside it."""
        others = [
            asyncio.create_task(self._receipts_loop()),
            asyncio.create_task(self._confirm_loop()),
            asyncio.create_task(self._purge_loop()),
            asyncio.create_task(self._follow_loop()),
        ]
        try:
            await self._feed_loop()
        finally:
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    async def bootstrap(self) -> None:
        """Read the feed until the store is confirmed to hold all of it, and no further.

        Receipts stay queued in the outbox for :meth:`run`; ``make bench-subscriber`` times this.
        """
        tasks = [asyncio.create_task(self._feed_loop()), asyncio.create_task(self._confirm_loop())]
        try:
            await self.ready.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _feed_loop(self) -> None:
        if self._consumer is None:
            raise RuntimeError("the directive feed is not connected (start() first)")
        consumer = self._consumer
        tps = list(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        held = self.store.positions()
        total = sum(max(0, ends[tp] - max(begins[tp], held.get((tp.topic, tp.partition), -1) + 1)) for tp in tps)
        started = shown = time.monotonic()
        self._bootstrap = (started, 0) if self.progress and total > self.progress_threshold else None
        if self._bootstrap is not None:
            self._say(f"bootstrap: reading {total:,} directives from {self.directive_topic}")
        applied = {a: self.metrics.applied.labels(self.agency, a.value) for a in Action}
        latency = self.metrics.apply_latency.labels(self.agency)
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=self.batch_size)
            batch: list[Incoming | Rejected | Passed | Tombstone] = []
            stamps: list[float] = []
            received = self.clock()
            behind = None
            for tp, records in batches.items():
                hw = consumer.highwater(tp)
                for rec in records:
                    item = self._admit(tp, rec, received, hw)
                    if item is None:
                        # Routed by a registry publication not in hand yet: read this partition again
                        # from here once the registry has caught up.
                        consumer.seek(tp, rec.offset)
                        behind = tp
                        break
                    batch.append(item)
                    stamps.append(rec.timestamp / 1000)
            if batch:
                now = datetime.now(UTC)
                if self.store.apply(batch, now):
                    self._outbox.set()
                for item, ts in zip(batch, stamps, strict=True):
                    if isinstance(item, Incoming):
                        applied[item.directive.action].inc()
                        latency.observe(max(0.0, now.timestamp() - ts))
                self.metrics.active.labels(self.agency).set(self.store.active_count())
                if self._bootstrap is not None:
                    self._bootstrap = (started, self._bootstrap[1] + len(batch))
            await self._update_lag()
            if behind is not None:
                await self._wait_for_registry(behind)
            if self._bootstrap is not None and (t := time.monotonic()) - shown >= 1.0:
                shown, done = t, self._bootstrap[1]
                self._say(
                    f"bootstrap: {min(done, total):,}/{total:,} directives ({done / max(t - started, 1e-6):,.0f}/s)"
                )
            # Let the API answer between batches, however long the backlog.
            await asyncio.sleep(0)

    async def _confirm_loop(self) -> None:
        """Ask the broker for the end of every directive partition, again and again.

        The store is *confirmed* current as of the moment a request was sent when the
        answer shows nothing beyond what the store has read: a real round trip, so a
        broker that is gone stops confirming, whatever the fetch responses last said.
        Under read_committed the end is the last stable offset.
        """
        every = max(0.05, min(1.0, self.stale_after / 4))
        while not self._stopping.is_set():
            consumer = self._consumer
            if consumer is not None:
                tps = sorted(consumer.assignment())
                sent = self.clock()
                try:
                    ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout=max(every, 5.0))
                    caught_up = await reached(consumer, ends)
                except (KafkaError, TimeoutError, OSError) as exc:
                    log.debug("%s: end offsets not confirmed: %s", self.agency, exc)
                else:
                    if tps and caught_up:
                        self.confirm(sent)
            await asyncio.sleep(every)

    def _say(self, message: str) -> None:
        print(f"[{self.agency}] {message}", file=sys.stderr, flush=True)

    # --- per record -------------------------------------------------------------

    def _admit(
        self, tp: TopicPartition, rec: ConsumerRecord[bytes, bytes], received: float, highwater: int | None
    ) -> Incoming | Rejected | Passed | Tombstone | None:
        """What to store for one record, or None when it needs a newer registry publication first."""
        value = rec.value
        offset = rec.offset
        if value is None:
            # The fan-out's tombstone: the entry behind this key ended and its retention is over.
            if rec.key is None:
                return Passed(tp.topic, tp.partition, offset)
            return Tombstone(rec.key.decode("ascii", "replace"), tp.topic, tp.partition, offset)
        if value is not None and is_heartbeat(self.schemas, value):
            try:
                admit_heartbeat(
                    agency=self.agency,
                    partition=tp.partition,
                    value=value,
                    headers=rec.headers,
                    timestamp_ms=rec.timestamp,
                    keyring=self.keyring,
                    schemas=self.schemas,
                )
            except Refused as r:
                if r.reason is Reason.UNKNOWN_KEY and self.registry is not None:
                    # Signed with a key of a registry publication not in hand yet: catch up first.
                    self._behind_since = self._behind_since or self.clock()
                    return None
                self.metrics.rejected.labels(self.agency, r.reason).inc()
                log.warning("%s: refused heartbeat at %s[%d]@%d: %s", self.agency, tp.topic, tp.partition, offset, r)
            else:
                broker_ts = rec.timestamp / 1000
                self.heard(tp.partition, broker_ts)
                # Only a record stamped by the broker (LogAppendTime) and read at the end of its
                # partition (a transaction's marker follows it) measures this clock against the broker's.
                if rec.timestamp_type == LOG_APPEND_TIME and highwater is not None and offset >= highwater - 3:
                    self._offsets.append((received, received - broker_ts))
            return Passed(tp.topic, tp.partition, offset)
        try:
            d = admit_directive(
                agency=self.agency,
                value=value,
                headers=rec.headers,
                timestamp_ms=rec.timestamp,
                keyring=self.keyring,
                schemas=self.schemas,
                sources=self._sources,
                world=self.world,
                stamped_by_broker=rec.timestamp_type == LOG_APPEND_TIME,
                registry_serial=self._serial,
            )
            key = rec.key.decode("ascii", "replace") if rec.key is not None else None
            self._behind_since = None
            return Incoming(d, tp.topic, tp.partition, offset, key)
        except Refused as r:
            if r.reason is Reason.REGISTRY_BEHIND:
                if self._behind_since is None:
                    self._behind_since = self.clock()
                    log.info(
                        "%s: %s[%d]@%d: %s; catching up with the registry",
                        self.agency,
                        tp.topic,
                        tp.partition,
                        offset,
                        r.detail,
                    )
                return None
            self.metrics.rejected.labels(self.agency, r.reason).inc()
            log.warning("%s: refused directive at %s[%d]@%d: %s", self.agency, tp.topic, tp.partition, offset, r)
            claimed, entry = self._claimed(value, tp, offset)
            return Rejected(claimed, f"{r.reason}: {r.detail}", tp.topic, tp.partition, offset, entry)

    def _claimed(self, value: bytes | None, tp: TopicPartition, offset: int) -> tuple[str, str | None]:
        """The id and entry a refused directive claims, for its REJECTED receipt."""
        if value:
            with contextlib.suppress(CodecError):
                d = self.schemas.decode_model(value, Directive)
                return d.directive_id, d.entry_id
        return unreadable_id(tp.topic, tp.partition, offset), None

    # --- the signed registry and the credentials, followed live ------------------

    def take(self, snapshot: RegistrySnapshot) -> None:
        """Verify against ``snapshot`` from now on: its MOUs, its keys, and the agency's newest key in it."""
        ns_topic = self.directive_topic
        self.world = snapshot.world
        self.keyring = snapshot.keyring
        self._sources = SourceCache(self.keyring)
        if self.signer_for is not None:
            signer = self.signer_for(snapshot.keyring)
            if signer.key_id != self.signer.key_id:
                log.info(
                    "%s: signing receipts with key %s from registry serial %d",
                    self.agency,
                    signer.key_id,
                    snapshot.serial,
                )
            self.signer = signer
        if self.topics_for is not None:
            self.directive_topic, self.receipts_topic = self.topics_for(snapshot.world)
            if ns_topic and ns_topic != self.directive_topic:
                log.warning(
                    "%s: registry serial %d names directive topic %s (was %s); takes effect on reconnect",
                    self.agency,
                    snapshot.serial,
                    self.directive_topic,
                    ns_topic,
                )
        if self.registry is not None:
            self._registry_until = snapshot.published_at.timestamp() + self.registry.max_age.total_seconds()
        self._serial = snapshot.serial
        self._published_at = snapshot.published_at

    async def _follow_loop(self) -> None:
        """Take each newer registry publication and a rotated password as they come."""
        while not self._stopping.is_set():
            snapshot = self.registry.snapshot if self.registry is not None else None
            if snapshot is not None and snapshot.serial != self._serial:
                self.take(snapshot)
                log.info("%s: verifying against registry serial %d", self.agency, snapshot.serial)
            if self._credentials is not None:
                password = self._credentials.changed()
                if password is not None:
                    self.access = self.access.with_password(password)
                    self.access.refresh_aiokafka(self._consumer, self._producer)
                    if self.registry is not None:
                        self.registry.refresh_credentials(self.access)
                    log.info("%s: the credentials changed: connections opened from now on use them", self.agency)
            await asyncio.sleep(0.25)

    async def _wait_for_registry(self, tp: TopicPartition) -> None:
        """A directive needs a newer registry publication: catch up, take it, and read on (or wait)."""
        if self.registry is None:
            return
        snapshot = await asyncio.to_thread(self.registry.catch_up, 5.0)
        if snapshot is not None and snapshot.serial != self._serial:
            self.take(snapshot)
            return
        waited = self.clock() - (self._behind_since or self.clock())
        if waited > 10:
            log.warning(
                "%s: %s[%d] waits for a registry publication not in hand for %.0fs (serial %s held)",
                self.agency,
                tp.topic,
                tp.partition,
                waited,
                self._serial,
            )
        await asyncio.sleep(1.0)

    # --- receipts ---------------------------------------------------------------

    async def _receipts_loop(self) -> None:
        self._outbox.set()  # whatever a previous run left in the outbox goes first
        while not self._stopping.is_set():
            await self._outbox.wait()
            if self._confirmed_at is None:
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
        """Send what the outbox holds, each receipt to its entry's partition (see services.partitioning)."""
        if self._producer is None:
            raise RuntimeError("the directive feed is not connected (start() first)")
        if self._receipt_partitions is None:
            parts = await self._producer.partitions_for(self.receipts_topic)
            self._receipt_partitions = len(parts)
        partitions = self._receipt_partitions
        while True:
            pending = self.store.pending_receipts()
            if not pending:
                return
            futures = []
            values = [self.schemas.encode_model(p.receipt) for p in pending]
            # One signature over the Merkle root of the batch: the fan-out verifies one per batch too.
            for p, value, signed in zip(pending, values, self.signer.sign_batch(Domain.RECEIPT, values), strict=True):
                receipt = p.receipt
                # Keyed by the directive's topic key (a pseudonym), never by what names the subject.
                key = (receipt.directive_key or receipt.directive_id).encode()
                futures.append(
                    await self._producer.send(
                        self.receipts_topic,
                        value=value,
                        key=key,
                        headers=signed.as_kafka(),
                        partition=partition_for(p.entry_id or receipt.directive_id, partitions),
                    )
                )
            await asyncio.gather(*futures)
            self.store.mark_sent([p.n for p in pending])

    async def _purge_loop(self) -> None:
        """Lifted directives and their history leave the store after their retention."""
        while not self._stopping.is_set():
            try:
                n = await asyncio.to_thread(self.store.purge, datetime.now(UTC), self.lifted_retention_days)
            except sqlite3.Error as exc:
                log.warning("%s: purge of lifted directives failed: %s", self.agency, exc)
            else:
                self.metrics.purge.purged.labels("subscriber", "lifted_directives").inc(n)
                self.metrics.purge.last_run.labels("subscriber").set(self.clock())
                if n:
                    log.info("%s: purged %d lifted directive(s) past their retention", self.agency, n)
            await asyncio.sleep(self.purge_interval)

    async def _update_lag(self) -> None:
        if self._consumer is None:
            raise RuntimeError("the directive feed is not connected (start() first)")
        lag = 0
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is None:
                self._lag = None
                return
            lag += max(0, hw - await self._consumer.position(tp))
        self._lag = lag
        self.metrics.lag.labels(self.agency).set(lag)

    # --- freshness --------------------------------------------------------------

    def expect_partitions(self, partitions: Iterable[int]) -> None:
        """The directive partitions whose heartbeats answers depend on."""
        self._partitions = tuple(partitions)
        self._heartbeats = {p: ts for p, ts in self._heartbeats.items() if p in self._partitions}
        self._refresh()

    def confirm(self, at: float) -> None:
        """A round trip sent at ``at`` showed the store holds the whole feed: answers are current to then."""
        if self._confirmed_at is not None and at <= self._confirmed_at:
            return
        if self._confirmed_at is None or int(at) != int(self._confirmed_at):
            self._as_of = iso_or_none(float(int(at)))
        self._confirmed_at = at
        self._refresh()
        self.ready.set()
        if self._bootstrap is not None:
            # Said the moment answers become current, so the log never lags what /healthz shows.
            started, done = self._bootstrap
            self._bootstrap = None
            took = time.monotonic() - started
            self._say(
                f"bootstrap: done, {done:,} records in {took:.1f}s "
                f"({done / max(took, 1e-6):,.0f}/s); {self.store.active_count():,} active"
            )

    def heard(self, partition: int, broker_ts: float) -> None:
        """A verified heartbeat of ``partition``, stamped ``broker_ts`` by the broker."""
        if broker_ts > self._heartbeats.get(partition, float("-inf")):
            self._heartbeats[partition] = broker_ts
            self._refresh()

    def _refresh(self) -> None:
        """Until when answers are current, kept ready so that a check costs one comparison."""
        if self._confirmed_at is None:
            self._fresh_until = float("-inf")
            return
        since = self._confirmed_at
        if self.require_heartbeats:
            beats = [self._heartbeats.get(p) for p in self._partitions]
            since = min(since, *(b if b is not None else float("-inf") for b in beats)) if beats else float("-inf")
        self._fresh_until = since + self.stale_after

    def current(self, now: float) -> bool:
        """Whether answers at ``now`` may say restricted or clear (else: unknown)."""
        return now <= self._fresh_until and now <= self._registry_until

    def clock_offset(self) -> float:
        """This clock minus the broker's, in seconds (NaN until measured): the smallest recent
        difference between receiving a heartbeat and the broker's stamp on it, as NTP filters."""
        horizon = self.clock() - 120.0
        recent = [d for t, d in self._offsets if t >= horizon]
        return min(recent) if recent else float("nan")

    @property
    def connected(self) -> bool:
        """Whether the service holds its Kafka clients, assigned to the directive partitions."""
        return self._connected

    @property
    def sources(self) -> SourceCache:
        """The listings whose signatures this service has checked, with its hit and miss counts."""
        return self._sources

    @property
    def confirmed_at(self) -> float | None:
        """When a round trip last showed the store holds the whole feed (None until it has)."""
        return self._confirmed_at

    def last_heartbeats(self) -> dict[int, float | None]:
        """The broker's stamp on the newest verified heartbeat of each expected directive partition."""
        return {p: self._heartbeats.get(p) for p in self._partitions}

    # --- what the API reports ---------------------------------------------------

    def as_of(self) -> str | None:
        """When the store last confirmed it had read its whole feed (to the second, kept ready-made)."""
        return self._as_of

    def health(self) -> Health:
        beats = self.last_heartbeats() if self.require_heartbeats else None
        registry = problem = None
        if self.registry is not None:
            status = self.registry.status()
            if self._serial is not None and self._published_at is not None:  # the publication verified against
                registry = f"serial {self._serial}, published {self._published_at.isoformat()}"
            if not status.fresh:
                problem = f"answers are unknown: {status.reason}"
        return assess_health(
            agency=self.agency,
            now=self.clock(),
            connected=self._connected,
            confirmed_at=self._confirmed_at,
            heartbeats=beats,
            lag=self._lag,
            stale_after=self.stale_after,
            active=self.store.active_count(),
            last_applied_at=self.store.last_applied_at(),
            registry=registry,
            registry_problem=problem,
        )
