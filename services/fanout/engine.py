"""The fan-out's engine: consume -> route -> produce in Kafka transactions, state in RocksDB.

One worker is one consumer in the fan-out's group and one transactional producer
(confluent-kafka, librdkafka underneath).  Partitions are assigned with the *range*
strategy, which gives partition ``p`` of every subscribed topic to the same worker:
the list topics and the receipts topics all have the same partition count, so one
worker owns state partition ``p`` and every record that touches it.

A transaction holds everything a stretch of work did: the directives, quarantine
records and heartbeats it produced, every state key it changed (to the state
partition's changelog) and the source offsets it consumed, committed together with
``send_offsets_to_transaction`` (KIP-447: a worker that lost its partitions is fenced
by the group generation).  Every transaction commits the positions of all assigned
partitions, even those it read nothing from, so a timer-only transaction of a fenced
worker is refused too.  Only after the commit is the state written to RocksDB
(:mod:`services.fanout.store`); a crash before leaves the local copy behind the
changelog, and the next owner of the partition catches up from it.  A record is
therefore applied exactly once: its directives, its entry's state and its offset
commit together, or not at all.

Why not quix-streams: it processes one message at a time and offers no processing-time
timers, no range reads over a state store and no hook before a checkpoint commits; the
fan-out needs all three (expiry without a message arriving, a time-ordered expiry
index read incrementally, a batch signed once before its transaction commits).  The
README has the measurements.

Work that is not a consumed record (expiry, re-evaluation, heartbeats) runs between
polls in bounded steps, inside the same transactions, so live traffic keeps flowing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.fanout.store import PartitionStore
from services.governance.reading import patient_watermarks
from services.kafka_access import KafkaAccess

log = logging.getLogger("concord.fanout.engine")


class Processor(Protocol):
    """What the engine runs: the fan-out's routing, in :mod:`services.fanout.app`."""

    def handle(self, msg: Message, store: PartitionStore, tx: Transaction) -> None: ...

    def work(self, stores: dict[int, PartitionStore], tx: Transaction) -> int:
        """Do a bounded amount of due work (timers, sweeps, heartbeats); return how much."""
        ...

    def has_work(self, stores: dict[int, PartitionStore]) -> bool: ...

    def before_commit(self, tx: Transaction) -> None: ...

    def after_commit(self) -> None: ...

    def after_abort(self) -> None: ...

    def assigned(self, stores: dict[int, PartitionStore]) -> None: ...


class Transaction(Protocol):
    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None: ...


@dataclass
class EngineConfig:
    access: KafkaAccess
    group: str  # the consumer group, and the transactional id's prefix
    name: str  # this worker: its transactional id and its state folder
    topics: list[str]  # co-partitioned inputs (list and receipts topics)
    changelog: str  # the state changelog topic, one partition per state partition
    state_dir: Path
    poll_batch: int = 1000
    poll_timeout: float = 0.02
    commit_interval: float = 0.05  # how long a transaction stays open while work arrives
    commit_max: int = 5000  # records in one transaction at most
    cache_mb: int = 16  # RocksDB block cache per partition
    stale_local_state: float = 3 * 24 * 3600  # older local copies are rebuilt (tombstones expire)
    progress: Callable[[str], None] = field(default=lambda _m: None)


class TransactionalEngine:
    """The loop, its rebalances and its transactions."""

    def __init__(self, cfg: EngineConfig, processor: Processor) -> None:
        self.cfg = cfg
        self.processor = processor
        kafka = cfg.access.confluent_config()
        self.consumer = Consumer(
            {
                **kafka,
                "group.id": cfg.group,
                "client.id": f"{cfg.group}-{cfg.name}",
                "partition.assignment.strategy": "range",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # A worker killed without leaving the group holds its partitions until its session
                # expires: keep that short so a restarted or surviving worker takes over in seconds.
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 2000,
                "max.poll.interval.ms": 600000,
                "queued.max.messages.kbytes": 32768,
                "fetch.wait.max.ms": 50,
                "statistics.interval.ms": 0,
                # A topic subscribed before it exists (a new agency's, see resubscribe) is found this soon.
                "topic.metadata.refresh.interval.ms": 10000,
            }
        )
        self.producer = Producer(
            {
                **kafka,
                "transactional.id": f"{cfg.group}-{cfg.name}",
                "client.id": f"{cfg.group}-{cfg.name}",
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                # A worker that dies mid-transaction blocks read_committed readers of what it wrote until
                # the coordinator aborts its transaction (at once when a worker of the same name starts
                # again, else after this); it also bounds every message's delivery, which a loaded broker
                # must be given time for.
                "transaction.timeout.ms": 30000,
            }
        )
        self.stores: dict[int, PartitionStore] = {}
        self._open = False
        self._opened_at = 0.0
        self._in_tx = 0
        self._consumed: dict[tuple[str, int], int] = {}
        self._changelog_offsets: dict[int, int] = {}
        self._assignment: list[TopicPartition] = []
        self.stopping = False
        self.ready = False  # assigned and restored
        self.last_loop = time.monotonic()
        self.pauses: list[tuple[float, float]] = []  # (when, seconds) of the longest recent stretches
        self.restored_records = 0

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        self.producer.init_transactions(30)
        self.consumer.subscribe(
            self.cfg.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        try:
            while not self.stopping:
                self._iterate()
            if self._open:
                self._commit()
        finally:
            self._close()

    def _iterate(self) -> None:
        msgs = self.consumer.consume(self.cfg.poll_batch, self.cfg.poll_timeout)
        started = time.monotonic()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer: %s", err)
                continue
            p = msg.partition()
            store = self.stores.get(p) if p is not None else None
            if store is None or p is None:
                continue  # revoked while in flight; its new owner reads it
            self._begin()
            self.processor.handle(msg, store, self)
            topic = msg.topic()
            offset = msg.offset()
            if topic is not None and offset is not None:
                self._consumed[(topic, p)] = offset
            self._in_tx += 1
        if self.stores and self.processor.has_work(self.stores):
            self._begin()
            self._in_tx += self.processor.work(self.stores, self)
        if self._open and (
            time.monotonic() - self._opened_at >= self.cfg.commit_interval or self._in_tx >= self.cfg.commit_max
        ):
            self._commit()
        ended = time.monotonic()
        busy = ended - started
        if busy > 0.02:
            self.pauses.append((ended, busy))
            if len(self.pauses) > 256:
                self.pauses = sorted(self.pauses, key=lambda p: p[1])[-128:]
        self.last_loop = ended

    def resubscribe(self, topics: list[str]) -> None:
        """Consume ``topics`` from now on (a new agency's list and receipts topics): the group
        rebalances, and the open transaction commits when the current partitions are revoked."""
        if sorted(topics) == sorted(self.cfg.topics):
            return
        log.info("subscribing to %d topics (was %d)", len(topics), len(self.cfg.topics))
        self.cfg.topics = list(topics)
        self.consumer.subscribe(
            self.cfg.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def refresh_credentials(self, access: KafkaAccess) -> None:
        """A rotated password: the connections opened from now on use it (open ones stay as they are)."""
        self.cfg.access = access
        access.refresh_confluent(self.consumer, self.producer)

    def longest_pause(self, window: float = 60.0) -> float:
        """The longest stretch the loop spent on one round of work within the last ``window`` seconds."""
        since = time.monotonic() - window
        return max((s for t, s in self.pauses if t >= since), default=0.0)

    # --- transactions -----------------------------------------------------------------

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._begin()
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, partition=partition, headers=headers)  # type: ignore[arg-type]  # bytes values are accepted
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let librdkafka send some
            else:
                return

    def _begin(self) -> None:
        if not self._open:
            self.producer.begin_transaction()
            self._open = True
            self._opened_at = time.monotonic()
            self._in_tx = 0

    def _on_changelog_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            p, offset = msg.partition(), msg.offset()
            if p is not None and offset is not None and offset > self._changelog_offsets.get(p, -1):
                self._changelog_offsets[p] = offset

    def _commit(self) -> None:
        try:
            self.processor.before_commit(self)
            for p, store in self.stores.items():
                for key, value in store.changes().items():
                    while True:
                        try:
                            self.producer.produce(
                                self.cfg.changelog,
                                key=key,
                                value=value,
                                partition=p,
                                on_delivery=self._on_changelog_delivery,
                            )
                            break
                        except BufferError:
                            self.producer.poll(0.05)
            positions = self._positions()
            if positions:
                self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 30)
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            self._failed(exc)
            return
        self._open = False
        self.producer.poll(0)  # delivery reports: how far each changelog partition now reaches
        for p, store in self.stores.items():
            store.apply(self._changelog_offsets.pop(p, None))
        self._consumed.clear()
        self.processor.after_commit()

    def _positions(self) -> list[TopicPartition]:
        """Every assigned partition's next offset: consumed ones after their last record, the others
        where they stand (committed again, so that a fenced worker's transaction fails)."""
        out = [
            TopicPartition(tp.topic, tp.partition, done + 1)
            for tp in self._assignment
            if (done := self._consumed.get((tp.topic, tp.partition))) is not None
        ]
        if len(out) < len(self._assignment):
            rest = [t for t in self._assignment if (t.topic, t.partition) not in self._consumed]
            out += [
                TopicPartition(tp.topic, tp.partition, tp.offset)
                for tp in self.consumer.position(rest)
                if tp.offset >= 0
            ]
        return out

    def _failed(self, exc: KafkaException) -> None:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and err.fatal():
            log.error("the transactional producer is fenced or broken (%s): stopping this worker", err)
            self._abandon()
            raise exc
        log.warning("transaction aborted (%s): its records will be processed again", exc)
        try:
            self.producer.abort_transaction(30)
        except KafkaException as abort_exc:
            log.error("abort failed too (%s): stopping this worker", abort_exc)  # noqa: TRY400 - re-raised
            self._abandon()
            raise
        self._abandon()
        self._rewind()

    def _abandon(self) -> None:
        """Forget everything the failed transaction did in memory."""
        self._open = False
        self._consumed.clear()
        self._changelog_offsets.clear()
        for store in self.stores.values():
            store.discard()
        self.processor.after_abort()

    def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset: the aborted records come again."""
        if not self._assignment:
            return
        for tp in self.consumer.committed(self._assignment, timeout=30):
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    # --- rebalances -------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assignment = list(partitions)
        wanted = sorted({tp.partition for tp in partitions})
        log.info("assigned state partitions %s", wanted)
        self.ready = False
        for p in wanted:
            if p not in self.stores:
                self.stores[p] = self._open_store(p)
        self.processor.assigned(self.stores)
        self.ready = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._open:
            self._commit()
        self._release(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost (session expired): dropping the open transaction")
        if self._open:
            try:
                self.producer.abort_transaction(30)
            except KafkaException as exc:
                log.warning("abort after losing partitions failed: %s", exc)
            self._abandon()
        self._release(partitions)

    def _release(self, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._assignment = [tp for tp in self._assignment if tp.partition not in gone]
        kept = {tp.partition for tp in self._assignment}
        for p in sorted(gone - kept):
            store = self.stores.pop(p, None)
            if store is not None:
                store.close()
        self.processor.assigned(self.stores)

    # --- state partitions -------------------------------------------------------------

    def _store_path(self, p: int) -> Path:
        return self.cfg.state_dir / f"partition-{p}"

    def _open_store(self, p: int) -> PartitionStore:
        path = self._store_path(p)
        marker = path / "LAST_COMMIT"
        if marker.exists() and time.time() - marker.stat().st_mtime > self.cfg.stale_local_state:
            log.warning("state partition %d: local copy is older than the changelog's tombstones; rebuilding", p)
            PartitionStore.wipe(path)
        store = PartitionStore(path, p, cache_mb=self.cfg.cache_mb)
        self._restore(store)
        marker.touch()
        return store

    def _restore(self, store: PartitionStore) -> None:
        """Replay the changelog from where the local copy stands to the partition's end."""
        p = store.partition
        start = store.changelog_offset() + 1
        reader = Consumer(
            {
                **self.cfg.access.confluent_config(),
                "group.id": self.cfg.group,  # never joins it: assign() only, nothing committed
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 50,
            }
        )
        try:
            tp = TopicPartition(self.cfg.changelog, p)
            low, high = patient_watermarks(reader, tp)
            begin = max(start, low)
            if begin >= high:
                return
            total = high - begin
            self.cfg.progress(f"state partition {p}: restoring {total:,} changelog records")
            reader.assign([TopicPartition(self.cfg.changelog, p, begin)])
            done = 0
            shown = time.monotonic()
            while True:
                msgs = reader.consume(5000, 0.5)
                batch = [
                    (key, m.value(), offset)
                    for m in msgs
                    if m.error() is None and (key := m.key()) is not None and (offset := m.offset()) is not None
                ]
                store.restore_batch(batch)
                done += len(batch)
                (pos,) = reader.position([tp])
                if pos.offset >= high:
                    _, high = patient_watermarks(reader, tp)
                    if pos.offset >= high:
                        break
                if time.monotonic() - shown >= 2:
                    shown = time.monotonic()
                    self.cfg.progress(f"state partition {p}: {done:,}/{total:,} changelog records restored")
            self.restored_records += done
            self.cfg.progress(f"state partition {p}: restored {done:,} records")
        finally:
            reader.close()
        store.reload_counters()

    def _close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing the consumer: %s", exc)
        self.producer.flush(10)

    def describe_positions(self) -> Iterable[tuple[str, int, int, int]]:
        """(topic, partition, position, high watermark) of every assigned partition, from cached figures."""
        for tp in self.consumer.position(self._assignment):
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            yield tp.topic, tp.partition, tp.offset, high


def topic_partitions(access: KafkaAccess, topics: Iterable[str]) -> dict[str, int]:
    """The partition count of each topic (0 if it does not exist or cannot be described)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(access.confluent_config())
    md = admin.list_topics(timeout=30)
    out: dict[str, int] = {}
    for t in topics:
        meta: Any = md.topics.get(t)
        out[t] = len(meta.partitions) if meta is not None and meta.error is None else 0
    return out
