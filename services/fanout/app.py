"""The fan-out: list records in, signed directives out, by the MOUs in force.

:class:`Fanout` is what :class:`~services.fanout.engine.TransactionalEngine` runs.  Per
list record it admits (verifies, decodes, validates) it, runs the pure transition of
:mod:`services.core.routing` against the entry's state, stores the new state and the
expiry index in the state partition, and hands the directives to the sealer, which
signs each agency's batch before the transaction commits.  Receipts are read in the
same loop — the receipts topics are co-partitioned with the list topics — and close
the directives they answer, so coverage is kept on send and on receipt and never
counted by walking the entries.

Between records, in bounded steps inside the same transactions:

* **expiry**: the earliest ends of the entries' APPLYs sit in a deadline-ordered index;
  the due ones are read in order and re-evaluated (cause ``PERIOD_ENDED``);
* **re-evaluation**: when the declared world or the set of MOU versions in force
  changes, every entry of a partition is evaluated again, a bounded batch at a time,
  from a cursor kept in the state (a crash resumes where it was);
* **heartbeats**: a signed sign of life on every directive partition this worker
  writes to, so a subscriber can tell "nothing happened" from "the fan-out is down".

Nothing here walks every entry except the re-evaluation sweep, which is the point of it.

**The signed registry** (``FanoutConfig.registry``): the world, the keyring and the fan-out's
own signing key follow each newer publication live (new MOU versions and terminations reach
the entries through the sweep; new agencies' topics are subscribed).  While the registry is
older than its maximum age the worker *holds*: it issues no APPLY (LIFTs still flow) and
every partition it touches is marked as evaluated under the holding epoch, so when a fresh
publication arrives the epoch changes and the sweep issues every APPLY that was withheld.
Each directive names the registry serial it was routed by.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Message

from services.core.codec import SchemaRegistry
from services.core.errors import CodecError, SignatureInvalid
from services.core.intake import Refused, admit_list_record
from services.core.models import Action, Cause, Directive, Header, Heartbeat, QuarantineRecord, Receipt, heartbeat_key
from services.core.pseudonyms import pseudonym
from services.core.reasons import Reason
from services.core.routing import (
    EntryState,
    Outcome,
    Transition,
    notice_fields,
    on_record,
    on_tick,
    world_epoch,
    world_revision,
)
from services.core.signing import Domain, Keyring, SignedHeaders, Signer
from services.core.world import World
from services.credentials import CredentialsWatch
from services.fanout import store as st
from services.fanout.engine import Transaction
from services.fanout.metrics import TIME_CAUSES, FanoutMetrics
from services.fanout.sending import DirectiveSealer
from services.fanout.store import PartitionStore
from services.governance.registry import RegistryStatus, RegistryWatch
from services.kafka_access import KafkaAccess
from services.partitioning import partition_for

log = logging.getLogger("concord.fanout")

_SWEEP = st.META + b"sweep"  # {"epoch": ..., "after": last entry key done}
_EPOCH = st.META + b"epoch"  # the epoch every entry of the partition was last evaluated under


@dataclass
class FanoutConfig:
    access: KafkaAccess
    world: World
    keyring: Keyring
    schemas: SchemaRegistry
    signer: Signer
    # Directive topic keys are pseudonyms of the directive keys, which name a subject's identifier.
    key_secret: bytes
    namespace: str = "concord"
    name: str = "worker"
    state_dir: Path = Path(".local/fanout/worker")
    web_port: int | None = None
    metrics: FanoutMetrics = field(default_factory=FanoutMetrics.create)
    batch_signatures: bool = True  # one signature per batch of an agency's directives
    batch_max: int = 512
    tick_interval: float = 0.25  # how often the expiry index is read
    expiry_batch: int = 500  # entries re-evaluated per step at most, on expiry
    sweep_batch: int = 500  # entries re-evaluated per step at most, after a world change
    heartbeat_interval: float = 2.0
    gauge_interval: float = 1.0
    commit_interval: float = 0.05
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # what "now" is, for tests
    # The signed registry, when the world and keys come from it; and how to pick the fan-out's own
    # signing key from a keyring (services.keystore.load_signer).
    registry: RegistryWatch | None = None
    signer_for: Callable[[Keyring], Signer] | None = None

    @property
    def app_id(self) -> str:
        return f"{self.namespace}-fanout"


@dataclass
class _Done:
    """A record handled in the open transaction: its broker time, for the latency histogram."""

    broker_ts: float


class Fanout:
    """The routing around the engine: handlers for records and for due work."""

    def __init__(self, cfg: FanoutConfig) -> None:
        self.cfg = cfg
        self.partitions = 0
        self._use_world(cfg.world)
        self.metrics = cfg.metrics
        self.sealer = DirectiveSealer(
            signer=cfg.signer, produce=self._produce_directive, batch=cfg.batch_signatures, max_records=cfg.batch_max
        )
        self.notices = DirectiveSealer(
            signer=cfg.signer,
            produce=self._produce_directive,
            batch=cfg.batch_signatures,
            max_records=cfg.batch_max,
            domain=Domain.NOTICE,
        )
        self.serial: int | None = None  # the registry publication routed by (None: files)
        self._holding = False
        self.registry_status: RegistryStatus | None = None
        self._credentials: CredentialsWatch | None = cfg.access.watch_credentials()
        self._next_follow = 0.0
        self.engine: Any = None  # set by the worker: positions and pauses for the gauges
        if cfg.registry is not None:
            self.metrics.registry_age.bind(cfg.registry)
            snapshot = cfg.registry.snapshot
            if snapshot is not None:  # the world, keys and serial of one publication, together
                self._take(snapshot.serial, snapshot.world, snapshot.keyring)
        self._tx: Transaction | None = None
        self._done: list[_Done] = []
        self._next_tick = 0.0
        self._next_heartbeat = 0.0
        self._next_gauges = 0.0
        self._epoch = ""
        self._epoch_at = 0.0
        self._sweeping: set[int] = set()
        self._stores: dict[int, PartitionStore] = {}
        self._receipts_caught_up = False
        # What /coverage shows, replaced whole by the loop's thread (the web thread only reads it).
        self.coverage: dict[str, object] = {"worker": cfg.name, "worker_partitions": [], "outstanding": []}

    @property
    def input_topics(self) -> list[str]:
        return [*self.list_topics, *self.receipt_topics]

    def _use_world(self, world: World) -> None:
        """The topic maps a world implies (called again for each newer registry publication)."""
        ns = self.cfg.namespace
        specs = world.topic_specs(ns)
        partitions = {s.partitions for s in specs if s.kind in ("lists", "receipts")}
        if len(partitions) != 1:
            raise ValueError("list and receipts topics must all have the same partition count")
        count = partitions.pop()
        if self.partitions and self.partitions != count:
            raise ValueError(
                f"list and receipts topics would have {count} partitions, not {self.partitions}: "
                "a running exchange cannot be repartitioned"
            )
        self.partitions = count
        self.list_topics = {s.name: s.agency for s in specs if s.kind == "lists" and s.agency is not None}
        self.receipt_topics = {s.name: s.agency for s in specs if s.kind == "receipts" and s.agency is not None}
        self.directive_topics = {
            s.agency: (s.name, s.partitions) for s in specs if s.kind == "directives" and s.agency is not None
        }
        self.notice_topics = {
            s.agency: (s.name, s.partitions) for s in specs if s.kind == "notices" and s.agency is not None
        }
        self.quarantine_topic = world.topic_name("quarantine", namespace=ns)
        self.changelog_topic = world.topic_name("fanout_state", namespace=ns)
        self.world_rev = world_revision(world)
        self.cfg.world = world

    # --- the signed registry and the credentials, followed live ----------------------------------

    def _follow(self) -> None:
        """Take a newer registry publication and a rotated password, at most every 0.2 s."""
        t = time.monotonic()
        if t < self._next_follow:
            return
        self._next_follow = t + 0.2
        if self._credentials is not None:
            password = self._credentials.changed()
            if password is not None:
                self._refresh_credentials(password)
        watch = self.cfg.registry
        if watch is None:
            return
        snapshot = watch.snapshot
        if snapshot is not None and snapshot.serial != self.serial:
            self._take(snapshot.serial, snapshot.world, snapshot.keyring)

    def _newest(self) -> None:
        """Verify every record with the newest publication in hand (a revocation applies at once)."""
        watch = self.cfg.registry
        snapshot = watch.snapshot if watch is not None else None
        if snapshot is not None and snapshot.serial != self.serial:
            self._take(snapshot.serial, snapshot.world, snapshot.keyring)

    def _take(self, serial: int, world: World, keyring: Keyring) -> None:
        before = set(self.input_topics)
        try:
            self._use_world(world)
        except ValueError as exc:
            log.error(  # noqa: TRY400 - the reason is the message; a traceback adds nothing
                "registry serial %d cannot be routed by (%s); keeping the world of serial %s",
                serial,
                exc,
                self.serial,
            )
            self.serial = serial  # not retried until a newer publication
            return
        self.cfg.keyring = keyring
        if self.cfg.signer_for is not None:
            signer = self.cfg.signer_for(keyring)
            if signer.key_id != self.cfg.signer.key_id:
                log.info(
                    "signing with key %s from registry serial %d (was %s)",
                    signer.key_id,
                    serial,
                    self.cfg.signer.key_id,
                )
                self.cfg.signer = self.sealer.signer = self.notices.signer = signer
        log.info("routing by registry serial %d (world %s)", serial, self.world_rev)
        self.serial = serial
        self._epoch = ""  # evaluated again at the next tick: a changed world sweeps
        if set(self.input_topics) != before and self.engine is not None:
            self.engine.resubscribe(self.input_topics)

    def _refresh_credentials(self, password: str) -> None:
        self.cfg.access = self.cfg.access.with_password(password)
        if self.engine is not None:
            self.engine.refresh_credentials(self.cfg.access)
        if self.cfg.registry is not None:
            self.cfg.registry.refresh_credentials(self.cfg.access)
        log.info("the credentials of %s changed: connections opened from now on use them", self.cfg.access.username)

    def _catch_up(self) -> bool:
        """After a key nobody here knows: read the registry to its end (at most once a second) and take
        what is newer.  True if that changed the keyring."""
        watch = self.cfg.registry
        if watch is None or time.monotonic() - watch.last_caught_up < 1.0:
            return False
        before = self.serial
        watch.catch_up(timeout=5.0)
        self._next_follow = 0.0
        self._follow()
        return self.serial != before

    def _refresh_holding(self) -> None:
        """Whether APPLYs are withheld: the registry followed is not known to be current."""
        watch = self.cfg.registry
        if watch is None:
            return
        status = watch.status(self.cfg.clock())
        self.registry_status = status
        if not status.fresh and not self._holding:
            log.warning("withholding APPLYs (LIFTs still flow): %s", status.reason)
        elif status.fresh and self._holding:
            log.warning("the registry is current again (serial %s): issuing the APPLYs withheld", status.serial)
        self._holding = not status.fresh

    # --- Processor: records ------------------------------------------------------------

    def handle(self, msg: Message, store: PartitionStore, tx: Transaction) -> None:
        self._tx = tx
        topic = msg.topic() or ""
        if topic in self.list_topics:
            self._list_record(msg, store)
        elif topic in self.receipt_topics:
            self._receipt(msg, store)

    def _list_record(self, msg: Message, store: PartitionStore) -> None:
        self._newest()
        origin = self.list_topics[msg.topic() or ""]
        now = self.cfg.clock()
        key = msg.key()
        _, ts = msg.timestamp()
        partition = msg.partition() or 0
        try:
            accepted = self._admit(msg, origin, partition, key, ts)
        except Refused as r:
            if r.reason is not Reason.UNKNOWN_KEY or not self._catch_up():
                self._quarantine(msg, r.reason, r.detail)
                return
            try:
                accepted = self._admit(msg, origin, partition, key, ts)
            except Refused as again:
                self._quarantine(msg, again.reason, again.detail)
                return
        self.metrics.event_in(origin, accepted.event.program)
        table_key = f"{origin}/{accepted.event.entry_id}"
        before = self._load(store, table_key)
        holding = self._hold(store)
        tr = on_record(before, accepted, self.cfg.world, now, self.world_rev, hold_applies=holding)
        if tr.outcome is not Outcome.APPLIED:
            self.metrics.ignored.labels(tr.outcome.value).inc()
        if tr.outcome in (Outcome.STALE_VERSION, Outcome.REPLAYED):
            held = before.version if before else 0
            self._quarantine(
                msg,
                tr.outcome.value,
                f"entry {accepted.event.entry_id} is at version {held}; got version {accepted.event.version}",
            )
            return
        self._save(store, table_key, before, tr, now)
        self._done.append(_Done(ts / 1000 if ts > 0 else now.timestamp()))

    def _admit(self, msg: Message, origin: str, partition: int, key: bytes | None, ts: int) -> Any:
        return admit_list_record(
            origin=origin,
            topic=msg.topic() or "",
            partition=partition,
            offset=msg.offset() or 0,
            key=key,
            value=msg.value(),
            headers=_headers(msg),
            timestamp_ms=ts,
            keyring=self.cfg.keyring,
            schemas=self.cfg.schemas,
            world=self.cfg.world,
            key_partition=partition_for(key, self.partitions) if key is not None else None,
            stamped_by_broker=_stamped_by_broker(msg),
        )

    def _hold(self, store: PartitionStore) -> bool:
        """Whether APPLYs are withheld now (judged for every record, not once a tick: no APPLY may leave
        under a registry that has just gone stale); if so, the partition is marked as evaluated under
        the holding epoch, so that the return of a fresh registry sweeps it and issues what was withheld."""
        watch = self.cfg.registry
        now = self.cfg.clock()
        if watch is not None:
            self._newest()
            if watch.status(now).fresh == self._holding:  # the hold begins or ends with this record
                self._epoch = ""
        if not self._epoch:
            self._epoch_at = 0.0
            self._check_epoch({}, now, time.monotonic())
        if self._holding and store.get(_EPOCH) != self._epoch.encode():
            store.put(_EPOCH, self._epoch.encode())
        return self._holding

    def _receipt(self, msg: Message, store: PartitionStore) -> None:
        self._newest()
        agency = self.receipt_topics[msg.topic() or ""]
        value = msg.value()
        if value is None:
            return
        _, ts = msg.timestamp()

        def verify() -> None:
            self.cfg.keyring.verify(
                Domain.RECEIPT,
                value,
                SignedHeaders.from_kafka(_headers(msg)),
                expected_agency=agency,
                at=datetime.fromtimestamp(ts / 1000, UTC),
            )

        try:
            try:
                verify()
            except SignatureInvalid as exc:
                if exc.reason is not Reason.UNKNOWN_KEY or not self._catch_up():
                    raise
                verify()  # with the keyring of the registry publication just caught up with
            receipt = self.cfg.schemas.decode_model(value, Receipt)
        except (SignatureInvalid, CodecError) as exc:
            self.metrics.receipts_refused.inc()
            log.warning("ignored a receipt on %s: %s", msg.topic(), exc)
            return
        if receipt.agency != agency:
            self.metrics.receipts_refused.inc()
            return
        if not self._answered(store, receipt.directive_id, by=agency):
            return
        self.metrics.receipts.labels(receipt.status.value).inc()

    # --- state ---------------------------------------------------------------------------

    def _load(self, store: PartitionStore, table_key: str) -> EntryState | None:
        raw = store.get(st.entry_key(table_key))
        return EntryState.model_validate_json(raw) if raw else None

    def _save(
        self, store: PartitionStore, table_key: str, before: EntryState | None, tr: Transition, now: datetime
    ) -> None:
        after = tr.state
        if after is not None and after is not before:
            store.put(st.entry_key(table_key), after.model_dump_json().encode())
            if before is None:
                store.count(entries=1)
        old = before.next_deadline() if before else None
        new = after.next_deadline() if after else None
        if old != new:
            if old is not None:
                store.delete(st.deadline_key(old.timestamp() * 1000, table_key))
                store.count(deadlines=-1)
            if new is not None:
                store.put(st.deadline_key(new.timestamp() * 1000, table_key), _ending(after, new))
                store.count(deadlines=1)
        was = self._purge_at(before)
        will = self._purge_at(after)
        if was != will:
            if was is not None:
                store.delete(st.purge_key(was.timestamp() * 1000, table_key))
            if will is not None:
                store.put(st.purge_key(will.timestamp() * 1000, table_key), b"")
        fresh = tr.outcome is not Outcome.RESYNC  # a new sequence number: ids never seen before
        for d in tr.emitted:
            previous = before.directives.get(d.key) if before is not None else None
            if previous is not None and previous.directive_id != d.directive_id:
                self._answered(store, previous.directive_id)
            self._send(d, store, now, fresh=fresh)

    def _purge_at(self, state: EntryState | None) -> datetime | None:
        """When an ended entry's data must leave (None while anything is applied): the retention of
        ended entries after its listing ended (delisted, or its period over) and its last LIFT, or at
        once when its publication period is over.

        A listing still in force that applies nothing is not ended: its APPLYs may be withheld while
        the registry is stale, or an MOU may come to cover it, and both need it."""
        if state is None or state.applied():
            return None
        event = state.event
        last = max((d.issued_at for d in state.directives.values()), default=None)
        ended: datetime | None = None
        if event.ends_entry:
            ended = last or event.effective_from
        elif event.effective_until is not None:
            ended = max(event.effective_until, last) if last is not None else event.effective_until
        due: list[datetime] = []
        if ended is not None:
            due.append(ended + timedelta(days=self.cfg.world.retention.ended_entries_days))
        published = event.publication_until
        if published is not None:  # its publication over, nothing of it may stay past its last LIFT
            due.append(max(published, last) if last is not None else published)
        return min(due, default=None)

    def _purge(self, store: PartitionStore, now: datetime) -> int:
        """Drop the state of entries whose time has come, and tombstone their directive keys so that
        compaction removes the LIFTs from the directive topics (and subscribers their copies)."""
        stop = st.PURGE + st.ms(now.timestamp() * 1000 + 1)
        due = [k for k, _ in store.scan(st.PURGE, stop=stop, limit=self.cfg.expiry_batch)]
        assert self._tx is not None  # noqa: S101 - due work runs inside a transaction
        for key in due:
            table_key = key[len(st.PURGE) + 9 :].decode()
            store.delete(key)
            state = self._load(store, table_key)
            if state is None or state.applied():
                continue
            for d in state.directives.values():
                topic, count = self.directive_topics[d.subscriber]
                self._tx.produce(topic, pseudonym(self.cfg.key_secret, d.key).encode(), None, store.partition % count)
                self._answered(store, d.directive_id)
            store.delete(st.entry_key(table_key))
            store.count(entries=-1)
            self.metrics.purge.purged.labels("fanout", "ended_entries").inc()
        self.metrics.purge.last_run.labels("fanout").set(time.time())
        return len(due)

    def _send(self, d: Directive, store: PartitionStore, now: datetime, *, fresh: bool = False) -> None:
        topic, count = self.directive_topics[d.subscriber]
        if self.serial is not None:
            d = Directive.model_construct(**{**d.__dict__, "registry_serial": self.serial})
        value = self.cfg.schemas.encode_model(d)
        key = pseudonym(self.cfg.key_secret, d.key).encode()
        self.sealer.add(d.subscriber, topic, key, value, store.partition % count)
        self.metrics.directive_out(d)
        notices = self.notice_topics.get(d.origin_agency)
        if notices is not None:
            notice = self.cfg.schemas.encode("notice", notice_fields(d, self.cfg.world))
            self.notices.add(d.origin_agency, notices[0], key, notice, store.partition % notices[1])
        stage = st.STAGE_TIME_LIFT if d.action is Action.LIFT and d.cause in TIME_CAUSES else st.STAGE_RECEIPT
        if fresh or store.get(st.OUTSTANDING + d.directive_id.encode()) is None:
            age = st.age_key(d.subscriber, d.mou_id, stage, d.issued_at.timestamp() * 1000, d.directive_id)
            store.put(st.OUTSTANDING + d.directive_id.encode(), age)
            store.put(age, b"")
            store.count(outstanding=_bucket(d.subscriber, d.mou_id, stage), by=1)

    def _answered(self, store: PartitionStore, directive_id: str, *, by: str | None = None) -> bool:
        """A directive needs no receipt any more: its subscriber (``by``) answered it, or a newer
        directive of its key replaced it.  False for a receipt that answers nothing outstanding here
        or comes from an agency the directive was not for."""
        okey = st.OUTSTANDING + directive_id.encode()
        age = store.get(okey)
        if age is None:
            return True  # an answer to something already answered or replaced: harmless
        subscriber, mou, stage, _, _ = st.split_age_key(age)
        if by is not None and by != subscriber:
            self.metrics.receipts_refused.inc()
            log.warning("ignored a receipt of %s for a directive to %s", by, subscriber)
            return False
        store.delete(okey)
        store.delete(age)
        store.count(outstanding=_bucket(subscriber, mou, stage), by=-1)
        if by is None:
            self.metrics.superseded.inc()
        return True

    # --- producing -----------------------------------------------------------------------

    def _produce_directive(
        self, topic: str, key: bytes, value: bytes, partition: int, headers: list[tuple[str, bytes]]
    ) -> None:
        assert self._tx is not None  # noqa: S101 - directives are only made inside a transaction
        self._tx.produce(topic, key, value, partition, headers)

    def _quarantine(self, msg: Message, reason: str, detail: str) -> None:
        rec = QuarantineRecord(
            reason=reason,
            detail=detail[:2000],
            source_topic=msg.topic() or "",
            source_partition=msg.partition() or 0,
            source_offset=msg.offset() or 0,
            key=msg.key(),
            value=msg.value(),
            headers=tuple(Header(key=k, value=v) for k, v in _headers(msg)),
            quarantined_by=self.cfg.signer.agency,
            quarantined_at=self.cfg.clock(),
        )
        value = self.cfg.schemas.encode_model(rec)
        signed = self.cfg.signer.sign(Domain.DIRECTIVE, value)
        assert self._tx is not None  # noqa: S101 - records are only handled inside a transaction
        self._tx.produce(self.quarantine_topic, msg.key(), value, 0, signed.as_kafka())
        self.metrics.quarantined(reason)
        # The detail can quote a record's content (an identifier that fails its check): it stays in the
        # quarantine record, which only operators read, and out of the log.
        log.warning("quarantined %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), reason)

    # --- Processor: due work ---------------------------------------------------------------

    def has_work(self, stores: dict[int, PartitionStore]) -> bool:
        self._follow()
        t = time.monotonic()
        if t >= self._next_gauges:
            self._next_gauges = t + self.cfg.gauge_interval
            self._update_gauges(stores)
        return t >= self._next_tick or t >= self._next_heartbeat or bool(self._sweeping)

    def work(self, stores: dict[int, PartitionStore], tx: Transaction) -> int:
        self._tx = tx
        t = time.monotonic()
        now = self.cfg.clock()
        done = 0
        if t >= self._next_tick:
            self._next_tick = t + self.cfg.tick_interval
            self._check_epoch(stores, now, t)
            for store in stores.values():
                done += self._expire(store, now)
                done += self._purge(store, now)
        for p in sorted(self._sweeping):
            sweeping = stores.get(p)
            if sweeping is None:
                self._sweeping.discard(p)
                continue
            done += self._sweep(sweeping, now)
        if t >= self._next_heartbeat:
            self._next_heartbeat = t + self.cfg.heartbeat_interval
            self._heartbeats(stores, now)
        return done

    def _expire(self, store: PartitionStore, now: datetime) -> int:
        stop = st.DEADLINE + st.ms(now.timestamp() * 1000 + 1)
        due = [k for k, _ in store.scan(st.DEADLINE, stop=stop, limit=self.cfg.expiry_batch)]
        for key in due:
            _, table_key = st.split_deadline_key(key)
            self._reevaluate(store, table_key, now)
        return len(due)

    def _reevaluate(self, store: PartitionStore, table_key: str, now: datetime) -> bool:
        """Evaluate one entry against the clock and the MOUs in force; True if it emitted anything."""
        state = self._load(store, table_key)
        if state is None:
            return False
        tr = on_tick(state, self.cfg.world, now, hold_applies=self._hold(store))
        self._save(store, table_key, state, tr, now)
        after = tr.state.next_deadline() if tr.state is not None else None
        if after is not None and after <= now:
            # Routing keeps an APPLY past its end: never expected, but the index entry must not be
            # read again every tick.  Subscribers stop answering "restricted" at its end anyway.
            log.error(
                "entry %s holds an APPLY past its end after re-evaluation; dropped from the expiry index", table_key
            )
            store.delete(st.deadline_key(after.timestamp() * 1000, table_key))
            store.count(deadlines=-1)
        return bool(tr.emitted)

    def _check_epoch(self, stores: dict[int, PartitionStore], now: datetime, t: float) -> None:
        if t - self._epoch_at >= 1.0 or not self._epoch:
            self._refresh_holding()
            self._epoch = world_epoch(self.cfg.world, self.world_rev, now, holding=self._holding)
            self._epoch_at = t
        for p, store in stores.items():
            held = store.get(_EPOCH)
            if held is None and store.counters.entries == 0:
                store.put(_EPOCH, self._epoch.encode())  # nothing to re-evaluate in an empty partition
            elif held is None or held.decode() != self._epoch:
                if p not in self._sweeping:
                    log.info(
                        "state partition %d: the world or the MOUs in force changed; re-evaluating its %d entries",
                        p,
                        store.counters.entries,
                    )
                self._sweeping.add(p)

    def _sweep(self, store: PartitionStore, now: datetime) -> int:
        raw = store.get(_SWEEP)
        cursor = json.loads(raw) if raw else {}
        if cursor.get("epoch") != self._epoch:
            cursor = {"epoch": self._epoch, "after": None}
        after = cursor["after"]
        start = st.entry_key(after) + b"\x00" if after else None
        keys = [k for k, _ in store.scan(st.ENTRY, start=start, limit=self.cfg.sweep_batch)]
        changed = 0
        for key in keys:
            changed += self._reevaluate(store, key[len(st.ENTRY) :].decode(), now)
        self.metrics.reevaluated.inc(len(keys))
        if len(keys) < self.cfg.sweep_batch:
            store.put(_EPOCH, self._epoch.encode())
            store.delete(_SWEEP)
            self._sweeping.discard(store.partition)
            log.info("state partition %d: re-evaluation done", store.partition)
        else:
            cursor["after"] = keys[-1][len(st.ENTRY) :].decode()
            store.put(_SWEEP, json.dumps(cursor).encode())
        return len(keys) + changed

    def _heartbeats(self, stores: dict[int, PartitionStore], now: datetime) -> None:
        assert self._tx is not None  # noqa: S101 - due work runs inside a transaction
        interval = int(self.cfg.heartbeat_interval * 1000)
        for agency, (topic, count) in self.directive_topics.items():
            for q in sorted({p % count for p in stores}):
                hb = Heartbeat(
                    subscriber=agency, partition=q, issued_by=self.cfg.name, issued_at=now, interval_ms=interval
                )
                value = self.cfg.schemas.encode_model(hb)
                headers = self.cfg.signer.sign(Domain.HEARTBEAT, value).as_kafka()
                self._tx.produce(topic, heartbeat_key(q).encode(), value, q, headers)

    # --- Processor: transaction boundaries -----------------------------------------------------

    def before_commit(self, tx: Transaction) -> None:
        self._tx = tx
        self.sealer.seal_all()
        self.notices.seal_all()

    def after_commit(self) -> None:
        now = time.time()
        for d in self._done:
            self.metrics.processing_latency.observe(max(0.0, now - d.broker_ts))
        self._done.clear()
        self.metrics.transactions.labels("committed").inc()

    def after_abort(self) -> None:
        self.sealer.discard()
        self.notices.discard()
        self._done.clear()
        self._sweeping.clear()
        self._epoch = ""
        self.metrics.transactions.labels("aborted").inc()

    def assigned(self, stores: dict[int, PartitionStore]) -> None:
        self._stores = stores
        self._sweeping &= set(stores)
        self._epoch = ""
        self._next_tick = 0.0
        self._update_gauges(stores)

    # --- gauges --------------------------------------------------------------------------

    def _update_gauges(self, stores: dict[int, PartitionStore]) -> None:
        now_ms = self.cfg.clock().timestamp() * 1000
        buckets: dict[str, int] = {}
        entries = deadlines = 0
        for store in stores.values():
            c = store.counters
            entries += c.entries
            deadlines += c.deadlines
            for b, n in (c.outstanding or {}).items():
                buckets[b] = buckets.get(b, 0) + n
        oldest: dict[str, float] = {}
        for b in buckets:
            subscriber, mou, stage = b.split("\x00")
            for store in stores.values():
                first = store.first(st.age_prefix(subscriber, mou, stage))
                if first is not None:
                    _, _, _, issued, _ = st.split_age_key(first)
                    oldest[b] = max(oldest.get(b, 0.0), (now_ms - issued) / 1000)
        overdue = self._overdue(stores, now_ms)
        lag: dict[str, int] = {}
        if self.engine is not None:
            for topic, _, position, high in self.engine.describe_positions():
                agency = self.list_topics.get(topic)
                if agency is not None and position >= 0 and high >= 0:
                    lag[agency] = lag.get(agency, 0) + max(0, high - position)
                if topic in self.receipt_topics and position >= 0 and high >= 0 and position >= high:
                    self._receipts_caught_up = True
            self.metrics.longest_pause.set(self.engine.longest_pause())
        self.metrics.set_gauges(
            world=self.cfg.world,
            entries=entries,
            deadlines=deadlines,
            outstanding=buckets,
            oldest=oldest,
            overdue=overdue,
            lag={a: lag.get(a, 0) for a in self.list_topics.values()},
            caught_up=self._receipts_caught_up,
            sweeping=len(self._sweeping),
        )
        self._snapshot(stores, oldest)

    def _overdue(self, stores: dict[int, PartitionStore], now_ms: float) -> dict[tuple[str, str], tuple[int, float]]:
        """Per (subscriber, MOU): APPLYs whose period ended and whose LIFT is not issued yet, and how
        late the oldest is (the due part of the expiry index, which every tick reads)."""
        out: dict[tuple[str, str], tuple[int, float]] = {}
        stop = st.DEADLINE + st.ms(now_ms)
        for store in stores.values():
            for key, value in store.scan(st.DEADLINE, stop=stop, limit=10_000):
                when, _ = st.split_deadline_key(key)
                for subscriber, mou in json.loads(value or b"[]"):
                    count, age = out.get((subscriber, mou), (0, 0.0))
                    out[(subscriber, mou)] = (count + 1, max(age, (now_ms - when) / 1000))
        return out

    # --- what the web pages show -------------------------------------------------------------

    def _snapshot(self, stores: dict[int, PartitionStore], buckets_oldest: dict[str, float]) -> None:
        rows = []
        for store in stores.values():
            for b, n in sorted((store.counters.outstanding or {}).items()):
                subscriber, mou, stage = b.split("\x00")
                rows.append(
                    {"partition": store.partition, "subscriber": subscriber, "mou_id": mou, "stage": stage, "count": n}
                )
        self.coverage = {
            "worker": self.cfg.name,
            "worker_partitions": sorted(stores),
            "receipts_caught_up": self._receipts_caught_up,
            "outstanding": rows,
            "oldest_seconds": {b.replace("\x00", " "): round(a, 3) for b, a in sorted(buckets_oldest.items())},
            "entries": sum(s.counters.entries for s in stores.values()),
            "reevaluating_partitions": sorted(self._sweeping),
        }


def _stamped_by_broker(msg: Message) -> bool | None:
    """Whether the broker stamped the record (LogAppendTime); None when the client does not say."""
    kind, _ = msg.timestamp()
    if kind == TIMESTAMP_LOG_APPEND_TIME:
        return True
    return False if kind == TIMESTAMP_CREATE_TIME else None


def _headers(msg: Message) -> list[tuple[str, bytes]]:
    """A consumed record's headers as (name, bytes) pairs, whatever form the client gives them in."""
    raw = msg.headers() or ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs]


def _ending(state: EntryState | None, deadline: datetime) -> bytes:
    """Who holds an APPLY of ``state`` ending at ``deadline``: the expiry index's value, for the gauges."""
    pairs = sorted({(d.subscriber, d.mou_id) for d in state.applied() if d.valid_until == deadline} if state else ())
    return json.dumps(pairs).encode()


def _bucket(subscriber: str, mou: str, stage: str) -> str:
    return f"{subscriber}\x00{mou}\x00{stage}"


__all__ = ["Cause", "Fanout", "FanoutConfig"]
