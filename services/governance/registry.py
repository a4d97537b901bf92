"""Publishing the signed registry and following it (see :mod:`services.core.registry`).

``publish_registry`` (the admin, ``concord registry publish``) writes one publication:
every record, tombstones for records a previous publication had and this one has not
(so compaction forgets them), then the manifest. ``follow_registry`` (any principal
with READ on the registry: every agency and the fan-out) yields a verified snapshot
once it has read to the end, and a new one for each newer complete publication; it
raises :class:`RegistryStale` rather than hand out a registry older than ``max_age``.

:class:`RegistryWatch` is how the running services follow it: a thread of its own reads
the topic (so the fan-out's synchronous loop and the asyncio services use it alike), the
newest verified snapshot is always at hand, and :meth:`RegistryWatch.status` says whether
it is fresh or why not.  A service that meets something only a newer publication can
explain (a key it does not know, a directive issued under a newer serial) asks the watch
to :meth:`~RegistryWatch.catch_up` — read to the end the topic has now — before refusing
it, so a publication that reached the signer first never makes its verifier refuse.
:func:`read_registry` reads one snapshot for a command that runs once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from services.core.errors import BrokerUnavailable
from services.core.registry import (
    MANIFEST_KEY,
    RegistryInvalid,
    RegistrySnapshot,
    RegistryStale,
    RegistryState,
    admin_keyring,
    decode_value,
    registry_records,
)
from services.core.signing import Keyring, Signer
from services.core.world import World
from services.governance.reading import read_through, read_to_end, unused_group_refused, watermarks
from services.kafka_access import KafkaAccess
from services.topic_metadata import reached, topic_partitions

TIMEOUT = 30.0
DEFAULT_MAX_AGE = timedelta(hours=24)
_log = logging.getLogger("concord.rdkafka")
log = logging.getLogger("concord.registry")


def _headers(msg: Message) -> list[tuple[str, bytes]]:
    raw = msg.headers() or ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs]


def registry_topic(world: World, namespace: str) -> str:
    return world.topic_name("registry", namespace=namespace)


def default_registry_topic(namespace: str) -> str:
    """The registry's topic before any world is known (``topics.yaml``'s template, ``{ns}.registry``)."""
    return f"{namespace}.registry"


@dataclass(frozen=True)
class Publication:
    topic: str
    serial: int
    records: int
    tombstones: int
    published_at: datetime


def publish_registry(
    access: KafkaAccess, namespace: str, world: World, keyring: Keyring, signer: Signer, *, at: datetime | None = None
) -> Publication:
    """Publish the world and keyring, signed by ``signer`` (the admin's key)."""
    topic = registry_topic(world, namespace)
    # Only a manifest this admin key verifies counts towards the serial: a forged one
    # must not push the numbering (and so the readers' anti-rollback check) around.
    state = RegistryState(admin_keyring(keyring))
    held: set[str] = set()
    for msg in read_to_end(access, topic):
        key = (msg.key() or b"").decode("utf-8", "replace")
        if msg.value() is None:
            held.discard(key)
        else:
            held.add(key)
        ts = msg.timestamp()[1]
        state.add(key, msg.value(), _headers(msg), datetime.fromtimestamp(ts / 1000, UTC))
    manifest = state.records.get(MANIFEST_KEY)
    serial = int(decode_value(manifest)["serial"]) if manifest is not None else 0
    published_at = (at or datetime.now(UTC)).replace(microsecond=0)
    records = registry_records(world, keyring, signer, published_at=published_at, serial=serial + 1)
    gone = sorted(held - {r.key for r in records})
    # One request in flight keeps the manifest after the records it names; a retried
    # duplicate is harmless (compaction keeps one of each, readers check digests).
    producer = Producer({**access.confluent_producer_config(), "max.in.flight.requests.per.connection": 1}, logger=_log)
    errors: list[str] = []

    def done(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for key in gone:
        producer.produce(topic, key=key.encode(), value=None, on_delivery=done)
    for rec in records:
        producer.produce(topic, key=rec.key.encode(), value=rec.value, headers=list(rec.headers), on_delivery=done)
    if producer.flush(TIMEOUT) or errors:
        raise BrokerUnavailable(f"registry not published: {'; '.join(errors) or 'timed out'}", topic=topic)
    return Publication(topic, serial + 1, len(records), len(gone), published_at)


async def follow_registry(
    access: KafkaAccess,
    ns: str,
    keyring_of_admin: Keyring,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    topic: str | None = None,
    poll_ms: int = 500,
) -> AsyncGenerator[RegistrySnapshot, None]:
    """Verified snapshots of the registry: the current one, then each newer publication.

    Raises :class:`RegistryStale` when, after reading to the end, there is no complete
    publication or the newest is older than ``max_age``, and later whenever the snapshot
    in hand grows older than ``max_age`` without a newer one arriving.
    """
    topic = topic or f"{ns}.registry"
    state = RegistryState(keyring_of_admin)
    consumer = AIOKafkaConsumer(
        **access.aiokafka_kwargs(), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while not await reached(consumer, ends):
            await _read(consumer, state, poll_ms)
        snapshot = state.fresh(max_age, datetime.now(UTC))
        yield snapshot
        while True:
            await _read(consumer, state, poll_ms)
            newer = state.fresh(max_age, datetime.now(UTC))
            if newer.serial != snapshot.serial:
                snapshot = newer
                yield snapshot
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        parts = await topic_partitions(consumer, topic)
        if parts:
            return parts
        if asyncio.get_running_loop().time() > deadline:
            raise RegistryStale(f"registry topic {topic} is missing or not readable", topic=topic)
        await asyncio.sleep(0.2)


async def _read(consumer: AIOKafkaConsumer, state: RegistryState, poll_ms: int) -> None:
    batches = await consumer.getmany(timeout_ms=poll_ms)
    for records in batches.values():
        for rec in records:
            key = (rec.key or b"").decode("utf-8", "replace")
            state.add(key, rec.value, list(rec.headers or ()), datetime.fromtimestamp(rec.timestamp / 1000, UTC))


@dataclass(frozen=True)
class RegistryStatus:
    """Whether the registry in hand may be acted on, and why not."""

    fresh: bool
    reason: str | None
    serial: int | None
    published_at: datetime | None
    age: float | None  # seconds

    def to_json(self) -> dict[str, object]:
        return {
            "status": "fresh" if self.fresh else "stale",
            "detail": self.reason,
            "serial": self.serial,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "age_seconds": round(self.age, 1) if self.age is not None else None,
        }


def registry_status(
    snapshot: RegistrySnapshot | None, max_age: timedelta, now: datetime, rejected: list[str] | None = None
) -> RegistryStatus:
    if snapshot is None:
        refused = f" ({len(rejected)} record(s) refused; first: {rejected[0]})" if rejected else ""
        return RegistryStatus(False, f"no complete, verified registry publication{refused}", None, None, None)
    age = snapshot.age(now).total_seconds()
    if age > max_age.total_seconds():
        return RegistryStatus(
            False,
            f"the registry was published {snapshot.published_at.isoformat()} (serial {snapshot.serial}), {age:.0f}s "
            f"ago: older than the {max_age.total_seconds():.0f}s allowed; republish it (`concord registry publish`)",
            snapshot.serial,
            snapshot.published_at,
            age,
        )
    return RegistryStatus(True, None, snapshot.serial, snapshot.published_at, age)


def read_registry(
    access: KafkaAccess,
    namespace: str,
    anchor: Keyring,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    topic: str | None = None,
    now: datetime | None = None,
) -> RegistrySnapshot:
    """The current snapshot, read once to the end of the topic; RegistryStale if none or too old."""
    state = RegistryState(anchor)
    for msg in read_to_end(access, topic or default_registry_topic(namespace)):
        key = (msg.key() or b"").decode("utf-8", "replace")
        state.add(key, msg.value(), _headers(msg), datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC))
    return state.fresh(max_age, now or datetime.now(UTC))


class RegistryWatch:
    """Follows the registry topic on a daemon thread; the newest verified snapshot is :attr:`snapshot`.

    ``on_change`` is called on the watch's thread with each newer snapshot.  Nothing here decides
    what staleness means for a service: :meth:`status` only says whether the snapshot is fresh.
    """

    def __init__(
        self,
        access: KafkaAccess,
        namespace: str,
        anchor: Keyring,
        *,
        max_age: timedelta,
        topic: str | None = None,
        name: str = "registry",
        on_change: Callable[[RegistrySnapshot], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.access = access
        self.topic = topic or default_registry_topic(namespace)
        self.max_age = max_age
        self.name = name
        self.clock = clock
        self._state = RegistryState(anchor)
        self._on_change = on_change
        self._snapshot: RegistrySnapshot | None = None
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._catch_up_wanted = threading.Event()
        self._caught_up = threading.Event()
        self._credentials: KafkaAccess | None = None
        self._thread: threading.Thread | None = None
        self._reported_rejects = 0
        self._error: str | None = None
        self.last_caught_up = 0.0  # monotonic time of the last completed catch-up

    # --- what services read ------------------------------------------------------------------

    @property
    def snapshot(self) -> RegistrySnapshot | None:
        return self._snapshot

    def status(self, now: datetime | None = None) -> RegistryStatus:
        st = registry_status(self._snapshot, self.max_age, now or self.clock(), self._state.rejected)
        if st.fresh or self._error is None or self._snapshot is not None:
            return st
        return RegistryStatus(False, f"{st.reason}; {self._error}", None, None, None)

    def wait_first(self, timeout: float | None = None) -> RegistrySnapshot | None:
        """Block until a first snapshot is in hand (None after ``timeout`` seconds or once stopped)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._snapshot is None and not self._stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(0.5 if left is None else min(left, 0.5))
        return self._snapshot

    def catch_up(self, timeout: float = 10.0) -> RegistrySnapshot | None:
        """Read to the end the topic has now, then return the newest snapshot (blocks the caller)."""
        self._caught_up.clear()
        self._catch_up_wanted.set()
        self._caught_up.wait(timeout)
        return self._snapshot

    def refresh_credentials(self, access: KafkaAccess) -> None:
        """Use a rotated password for the connections the watch opens from now on."""
        self._credentials = access

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> RegistryWatch:
        self._thread = threading.Thread(target=self._run, name=f"concord-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception as exc:  # noqa: BLE001 - the watch must outlive any one failure
                self._error = f"cannot read {self.topic}: {exc}"
                log.warning("%s: %s; retrying", self.name, self._error)
                self._stop.wait(2.0)

    def _follow(self) -> None:
        consumer = Consumer(
            {
                **self.access.confluent_config(),
                "group.id": "concord-registry-unused",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            },
            logger=_log,
        )
        try:
            parts = self._partitions(consumer)
            consumer.assign([KafkaPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            ends: dict[int, int] | None = self._ends(consumer, parts)
            while not self._stop.is_set():
                if self._credentials is not None:
                    self._credentials.refresh_confluent(consumer)
                    self._credentials = None
                if self._catch_up_wanted.is_set():
                    self._catch_up_wanted.clear()
                    ends = self._ends(consumer, parts)
                for msg in consumer.consume(500, 0.2):
                    err = msg.error()
                    if err is not None:
                        if unused_group_refused(err):
                            continue
                        raise KafkaException(err)
                    key = (msg.key() or b"").decode("utf-8", "replace")
                    self._state.add(
                        key, msg.value(), _headers(msg), datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC)
                    )
                self._error = None
                self._publish()
                if ends is not None and self._reached(consumer, ends):
                    ends = None
                    self.last_caught_up = time.monotonic()
                    self._caught_up.set()
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> list[int]:
        while not self._stop.is_set():
            md = consumer.list_topics(self.topic, timeout=TIMEOUT)
            t = md.topics.get(self.topic)
            if t is not None and t.error is None and t.partitions:
                return sorted(t.partitions)
            why = t.error if t is not None and t.error is not None else "no partitions"
            if t is not None and t.error is not None and t.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                why = f"{self.access.username} may not read it"
            self._error = f"registry topic {self.topic} is missing or not readable ({why})"
            self._stop.wait(1.0)
        return []

    def _ends(self, consumer: Consumer, parts: list[int]) -> dict[int, int]:
        return {p: watermarks(consumer, self.topic, p)[1] for p in parts}

    def _reached(self, consumer: Consumer, ends: dict[int, int]) -> bool:
        done = read_through(consumer, self.topic, ends)
        return all(p in done or end == 0 for p, end in ends.items())

    def _publish(self) -> None:
        if len(self._state.rejected) > self._reported_rejects:
            for why in self._state.rejected[self._reported_rejects :]:
                log.warning("%s: refused a registry record: %s", self.name, why)
            self._reported_rejects = len(self._state.rejected)
        try:
            snapshot = self._state.snapshot()
        except RegistryInvalid as exc:
            log.error("%s: a registry publication cannot be used: %s", self.name, exc)  # noqa: TRY400 - no trace needed
            return
        if snapshot is None or snapshot is self._snapshot:
            return
        with self._changed:
            self._snapshot = snapshot
            self._changed.notify_all()
        log.info("%s: registry serial %d, published %s", self.name, snapshot.serial, snapshot.published_at.isoformat())
        if self._on_change is not None:
            self._on_change(snapshot)
