"""The fan-out: a faust-streaming app that turns list records into directives.

One agent reads every publishing agency's list topic plus the fan-out's own
``ticks`` topic.  All of them have the same partition count as the ``entries``
table, so an entry's records, its ticks and its state share one partition and one
worker (faust co-partitioning).  Per record the agent admits (verifies, decodes,
validates) it, runs the pure transition from :mod:`services.core.routing`, stores
the new state in the changelog-backed table, and sends the emitted directives,
signed by the fan-out, to each implementing agency's directive topic — by default
in batches per agency signed once over their Merkle root
(:mod:`services.fanout.sending`).

Sends are attached to the source offset by faust and flushed before the offset is
committed, so a crash can only cause a record to be processed again — which the
routing core answers by re-sending the entry's latest directives with their
original ids.

Why a ``ticks`` topic: faust only lets a table change inside stream iteration,
because the change must go to the changelog partition of the record being
processed.  The expiry timer therefore does not change state itself; it sends a
tick for a due entry to the entry's partition, and the agent handles the tick like
any other record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.core.codec import SchemaRegistry
from services.core.intake import Refused, admit_list_record
from services.core.models import Directive, Header, QuarantineRecord
from services.core.routing import EntryState, Outcome, Transition, on_record, on_tick, world_revision
from services.core.signing import Domain, Keyring, Signer
from services.core.world import World
from services.fanout.coverage import ReceiptView
from services.fanout.metrics import FanoutMetrics, unlifted_expiries, world_routes
from services.fanout.sending import DirectiveSender
from services.kafka_access import KafkaAccess

log = logging.getLogger("concord.fanout")


@dataclass
class FanoutConfig:
    access: KafkaAccess
    world: World
    keyring: Keyring
    schemas: SchemaRegistry
    signer: Signer
    namespace: str = "concord"
    tick_interval: float = 0.5
    rescan_interval: float = 30.0
    coverage_interval: float = 5.0
    web_port: int | None = None
    metrics: FanoutMetrics = field(default_factory=FanoutMetrics.create)
    batch_signatures: bool = True  # one signature per send batch of an agency's directives
    batch_max: int = 512
    batch_wait: float = 0.02

    @property
    def app_id(self) -> str:
        return f"{self.namespace}-fanout"

    @property
    def ticks_topic(self) -> str:
        return f"{self.app_id}-ticks"


def entry_partition(table_key: str, partitions: int) -> int:
    """Directive partition for an entry: all of one entry's directives stay in order."""
    return zlib.crc32(table_key.encode()) % partitions


@dataclass(frozen=True)
class _Record:
    """A record read outside faust, shaped like the faust message the agent handles."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: float


def _watermark_key(topic: str, partition: int) -> bytes:
    return f"\x00watermark/{topic}/{partition}".encode()


def _is_entry(key: bytes) -> bool:
    return not key.startswith(b"\x00")


def _view(handler: Any) -> Any:
    """A plain function for faust's page decorator, which binds it to its View class."""

    async def page(view: Any, request: Any) -> Any:
        return await handler(view, request)

    return page


class Fanout:
    """Builds the faust app and holds what its agent and timer share."""

    def __init__(self, cfg: FanoutConfig) -> None:
        self.cfg = cfg
        specs = {s.name: s for s in cfg.world.topic_specs(cfg.namespace)}
        self.list_topics = {
            s.name: s.agency for s in specs.values() if s.kind == "lists" and s.agency is not None
        }
        partitions = {specs[t].partitions for t in self.list_topics}
        if len(partitions) != 1:
            raise ValueError("all list topics must have the same partition count")
        self.partitions = partitions.pop()
        self.directive_partitions = {
            s.agency: s.partitions for s in specs.values() if s.kind == "directives" and s.agency
        }
        self.quarantine_topic = cfg.world.topic_name("quarantine", namespace=cfg.namespace)
        self.app = faust.App(
            cfg.app_id,
            **cfg.access.faust_kwargs(),
            store="memory://",
            topic_partitions=self.partitions,
            topic_replication_factor=1,
            topic_disable_leader=True,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            processing_guarantee="at_least_once",
            producer_acks=-1,
            web_enabled=cfg.web_port is not None,
            web_port=cfg.web_port or 6066,
            web_bind="127.0.0.1",
            broker_commit_interval=0.5,
            # A worker killed without leaving the group holds its partitions until its
            # session expires: keep that short so a restart takes over in seconds.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.entries = self.app.Table(
            "entries", default=None, partitions=self.partitions, key_type=bytes, value_type=bytes,
        )
        self.source = self.app.topic(
            *self.list_topics, self.cfg.ticks_topic, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw",
        )
        self._out: dict[str, faust.TopicT] = {}
        self.due: dict[bytes, tuple[datetime, int]] = {}
        self._indexed_for: frozenset[Any] | None = None
        self._last_scan = 0.0
        self.world_rev = world_revision(cfg.world)
        self.receipts = ReceiptView(
            access=cfg.access,
            topics={s.name: s.agency for s in specs.values() if s.kind == "receipts" and s.agency},
            keyring=cfg.keyring, schemas=cfg.schemas,
        )
        self._stopping = asyncio.Event()
        self._next: dict[tuple[str, int], int] = {}  # per source partition: the next offset to process
        self._next_generation = -1
        self._gap_reader: AIOKafkaConsumer | None = None
        self._decoded: dict[bytes, tuple[bytes, EntryState]] = {}
        self._directive_topics = {
            agency: cfg.world.topic_name("directives", agency, namespace=cfg.namespace)
            for agency in self.directive_partitions
        }
        self.sender = DirectiveSender(signer=cfg.signer, send=self._produce, batch=cfg.batch_signatures,
                                      max_records=cfg.batch_max, max_wait=cfg.batch_wait)
        self.app.agent(self.source, name="route")(self._route)
        self.app.timer(interval=cfg.tick_interval)(self._tick_due)
        self.app.timer(interval=cfg.coverage_interval)(self._update_coverage)
        self.app.task(self._follow_receipts)
        if cfg.batch_signatures:
            self.app.task(self._seal_batches)
        if cfg.web_port is not None:
            from faust.sensors.prometheus import setup_prometheus_sensors

            setup_prometheus_sensors(self.app, "/metrics", registry=cfg.metrics.registry,
                                     name_prefix="concord_faust")
            self.app.page("/coverage")(_view(self._coverage_page))
            self.app.page("/healthz")(_view(self._health_page))

    # --- helpers ---------------------------------------------------------------

    def _topic(self, name: str) -> faust.TopicT:
        t = self._out.get(name)
        if t is None:
            t = self._out[name] = self.app.topic(name, key_serializer="raw", value_serializer="raw")
        return t

    async def _send_directive(self, d: Directive) -> None:
        value = self.cfg.schemas.encode_model(d)
        partition = entry_partition(f"{d.origin_agency}/{d.entry_id}", self.directive_partitions[d.subscriber])
        self._tune_producer()
        await self.sender.send(d.subscriber, self._directive_topics[d.subscriber], d.key.encode(), value, partition)
        self.cfg.metrics.directive_out(d)

    async def _produce(self, topic: str, key: bytes, value: bytes, partition: int,
                       headers: list[tuple[str, bytes]]) -> None:
        # Straight to the producer: faust's Topic.send wraps each message in futures, callbacks and
        # sensor calls that cost more than the send itself; key and value are bytes already.
        await self.app.producer.send(topic, key, value, partition, None, headers)

    async def _seal_batches(self) -> None:
        self._tune_producer()
        await self.sender.run()

    def _tune_producer(self) -> None:
        producer = self.app.producer
        if self.sender.batch:
            self.sender.guard(producer)
        # faust's buffer of table (changelog) writes pauses the agent, and logs a warning, each time
        # it holds more than 100 messages — every 50 records here (state and watermark).
        producer.buffer.max_messages = 2000

    async def _quarantine(self, msg: Any, reason: str, detail: str) -> None:
        rec = QuarantineRecord(
            reason=reason, detail=detail[:2000], source_topic=msg.topic, source_partition=msg.partition,
            source_offset=msg.offset, key=msg.key, value=msg.value,
            headers=tuple(Header(key=k, value=bytes(v or b"")) for k, v in (msg.headers or ())),
            quarantined_by=self.cfg.signer.agency, quarantined_at=datetime.now(UTC),
        )
        value = self.cfg.schemas.encode_model(rec)
        signed = self.cfg.signer.sign(Domain.DIRECTIVE, value)
        await self._topic(self.quarantine_topic).send(key=msg.key, value=value, headers=signed.as_kafka())
        self.cfg.metrics.quarantined(reason)
        log.warning("quarantined %s[%d]@%d: %s: %s", msg.topic, msg.partition, msg.offset, reason, detail)

    def _load(self, key: bytes) -> EntryState | None:
        raw = self.entries.get(key)
        return self._decode_state(key, raw) if raw else None

    def _decode_state(self, key: bytes, raw: bytes) -> EntryState:
        """The table's value for ``key``, parsed once per value it takes.

        The table holds each entry's state as JSON (what its changelog carries); the
        expiry index and the coverage timer read every entry's state, every few seconds,
        which re-parsed them all.  Parsed states are remembered beside the value they were
        parsed from, and reused only while the table still holds that very value.
        """
        hit = self._decoded.get(key)
        if hit is not None and (hit[0] is raw or hit[0] == raw):
            return hit[1]
        state = EntryState.model_validate_json(raw)
        src = state.source  # directives forwarding the entry's own record share its object, not a copy
        if any(d.source is not src and d.source == src for d in state.directives.values()):
            state = state.model_copy(update={"directives": {
                k: d.model_copy(update={"source": src}) if d.source == src else d
                for k, d in state.directives.items()}})
        self._decoded[key] = (raw, state)
        return state

    def _index(self, key: bytes, state: EntryState | None) -> None:
        deadline = state.next_deadline() if state else None
        if state is not None and state.world_rev != self.world_rev:
            deadline = datetime.min.replace(tzinfo=UTC)  # evaluated against another world: re-evaluate now
        if deadline is None:
            self.due.pop(key, None)
        else:
            self.due[key] = (deadline, state.source.partition if state else 0)

    # --- the agent ---------------------------------------------------------------

    async def _expected(self, msg: Any) -> int:
        """The next offset this worker must process on ``msg``'s partition."""
        generation = self.app.consumer_generation_id
        if generation != self._next_generation:  # assignment changed: the table is the truth again
            self._next.clear()
            self._next_generation = generation
        tp = (msg.topic, msg.partition)
        expected = self._next.get(tp)
        if expected is None:
            mark = self.entries.get(_watermark_key(*tp))
            if mark is not None:
                expected = int(mark) + 1
            else:
                earliest = await self.app.consumer.earliest_offsets(msg.tp)
                expected = int(earliest.get(msg.tp, 0))
            self._next[tp] = expected
        return expected

    async def _fill_gap(self, msg: Any, expected: int) -> None:
        """Process the records ``expected .. msg.offset - 1`` that the consumer skipped.

        faust's at-least-once can skip a record: a message whose delivery to the
        stream is interrupted by a flow suspension is abandoned with its read offset
        advanced, and commits advance over the first consecutive run of acked
        offsets.  So the fan-out keeps its own watermark per source partition in the
        changelog-backed table, written after each record's state; source topics are
        contiguous (no compaction, no transactions), so a record beyond
        ``watermark + 1`` proves the ones between were skipped.  They are read here
        with a consumer of our own (seeking faust's consumer back does not work: its
        fetcher drops re-fetched offsets below its read offset) and processed in the
        current event's context — the same partition, so their state lands in the
        right changelog partition.
        """
        log.warning("%s[%d]: records %d..%d were skipped by the consumer; processing them now",
                    msg.topic, msg.partition, expected, msg.offset - 1)
        self.cfg.metrics.ignored.labels("GAP_FILLED").inc(msg.offset - expected)
        reader = await self._reader()
        tp = TopicPartition(msg.topic, msg.partition)
        reader.assign([tp])
        reader.seek(tp, expected)
        done = expected
        while done < msg.offset:
            batches = await reader.getmany(tp, timeout_ms=2000, max_records=500)
            for rec in batches.get(tp, ()):
                if rec.offset >= msg.offset:
                    break
                gap_msg = _Record(rec.topic, rec.partition, rec.offset, rec.key, rec.value,
                                  tuple(rec.headers or ()), rec.timestamp / 1000)
                if rec.offset >= await self._expected(gap_msg):
                    await self._handle(gap_msg)
                    self._mark_done(gap_msg)
                done = rec.offset + 1

    async def _reader(self) -> AIOKafkaConsumer:
        if self._gap_reader is None:
            self._gap_reader = AIOKafkaConsumer(**self.cfg.access.aiokafka_kwargs(), group_id=None,
                                                enable_auto_commit=False, auto_offset_reset="earliest")
            await self._gap_reader.start()
        return self._gap_reader

    def _mark_done(self, msg: Any) -> None:
        tp = (msg.topic, msg.partition)
        if msg.offset + 1 > self._next.get(tp, 0):
            self._next[tp] = msg.offset + 1
            self.entries[_watermark_key(*tp)] = str(msg.offset).encode()

    async def _route(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            expected = await self._expected(msg)
            if msg.offset > expected:
                await self._fill_gap(msg, expected)
            await self._handle(msg)
            self._mark_done(msg)

    async def _handle(self, msg: Any) -> None:
        now = datetime.now(UTC)
        key = bytes(msg.key or b"")
        if msg.topic == self.cfg.ticks_topic:
            state = self._load(key)
            if state is None:
                return
            tr = on_tick(state, self.cfg.world, now, self.world_rev)
        else:
            origin = self.list_topics[msg.topic]
            try:
                accepted = admit_list_record(
                    origin=origin, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                    key=msg.key, value=msg.value, headers=msg.headers, timestamp_ms=int(msg.timestamp * 1000),
                    keyring=self.cfg.keyring, schemas=self.cfg.schemas, world=self.cfg.world,
                )
            except Refused as r:
                await self._quarantine(msg, r.reason, r.detail)
                return
            self.cfg.metrics.event_in(origin, accepted.event.program)
            key = f"{origin}/{accepted.event.entry_id}".encode()
            state = self._load(key)
            tr = on_record(state, accepted, self.cfg.world, now, self.world_rev)
            if tr.outcome is not Outcome.APPLIED:
                self.cfg.metrics.ignored.labels(tr.outcome.value).inc()
            if tr.outcome in (Outcome.STALE_VERSION, Outcome.REPLAYED):
                held = state.version if state else 0
                await self._quarantine(msg, tr.outcome.value,
                                       f"entry {accepted.event.entry_id} is at version {held}; "
                                       f"got version {accepted.event.version}")
                return
        await self._commit(key, state, tr)
        self.cfg.metrics.latency(msg.timestamp, now)

    async def _commit(self, key: bytes, before: EntryState | None, tr: Transition) -> None:
        if tr.state is not None and tr.state is not before:
            raw = tr.state.model_dump_json().encode()
            self.entries[key] = raw
            self._decoded[key] = (raw, tr.state)
        for d in tr.emitted:
            await self._send_directive(d)
        self._index(key, tr.state)

    # --- the expiry timer ------------------------------------------------------

    async def _tick_due(self) -> None:
        loop_now = self.app.loop.time()
        assigned = frozenset(self.app.assignor.assigned_actives())
        if assigned != self._indexed_for or loop_now - self._last_scan > self.cfg.rescan_interval:
            self._rebuild_index()
            self._indexed_for = assigned
            self._last_scan = loop_now
        now = datetime.now(UTC)
        due = [(k, p) for k, (deadline, p) in self.due.items() if deadline <= now]
        self.cfg.metrics.expiries_due(len(self.due))
        ticks = self._topic(self.cfg.ticks_topic)
        for key, partition in due:
            self.due.pop(key, None)
            await ticks.send(key=key, value=b"expiry", partition=partition)

    def _rebuild_index(self) -> None:
        self.due.clear()
        held = set()
        for key, raw in list(self.entries.items()):
            if raw and _is_entry(bytes(key)):
                held.add(bytes(key))
                self._index(bytes(key), self._decode_state(bytes(key), raw))
        for gone in self._decoded.keys() - held:  # partitions this worker no longer holds
            del self._decoded[gone]

    # --- receipts and coverage --------------------------------------------------

    async def _follow_receipts(self) -> None:
        await self.receipts.follow(self._stopping)

    def _local_states(self) -> list[EntryState]:
        return [self._decode_state(bytes(key), raw) for key, raw in list(self.entries.items())
                if raw and _is_entry(bytes(key))]

    async def _update_coverage(self) -> None:
        now = datetime.now(UTC)
        states = self._local_states()
        cov = self.receipts.coverage(states, now)
        unlifted = unlifted_expiries(states, lambda d: self.receipts.status_of(d) is not None, now)
        self.cfg.metrics.coverage(cov, unlifted, caught_up=self.receipts.caught_up.is_set(), entries=len(states),
                                  routes=world_routes(self.cfg.world, now))

    async def _coverage_page(self, web: Any, request: Any) -> Any:
        cov = self.receipts.coverage(self._local_states(), datetime.now(UTC))
        body = {"worker_partitions": sorted(tp.partition for tp in self.app.assignor.assigned_actives()
                                            if tp.topic in self.list_topics),
                "receipts_caught_up": self.receipts.caught_up.is_set(), **cov.as_json()}
        return web.json(body)

    async def _health_page(self, web: Any, request: Any) -> Any:
        ready = not self.app.rebalancing and self.app.consumer is not None and bool(self.app.consumer.assignment())
        body = {"status": "ok" if ready else "starting", "world_rev": self.world_rev,
                "entries_held": len(self.entries), "expiries_pending": len(self.due)}
        return web.json(body, status=200 if ready else 503)
