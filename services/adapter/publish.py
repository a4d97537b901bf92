"""The publishing agency's adapter: validate, sign, publish — and refuse clearly.

Records go to the agency's own list topic, keyed by entry id (so one entry's
events keep their order in one partition), with the agency's signature in the
headers.  The producer is idempotent with ``acks=all``; a publish returns only when
the broker has acknowledged every record it sent, and each acknowledged record is
written to the agency's :class:`~services.adapter.ledger.Ledger`, which makes
publishing the same records again a no-op (see the ledger for why Kafka's own
idempotence is not enough).

Signatures: by default (:class:`BatchPolicy`) records are signed in batches, as
X-Road seals its messages: up to ``max_records`` records, or what arrived within
``max_wait`` seconds of the first, share one Ed25519 signature over the Merkle
root of their digests, and each carries its audit path
(:mod:`services.core.signing`).  A verifier then checks one signature per batch.
Records wait at most ``max_wait`` for their batch; a batch is sent in order and
before the next, so an entry's events keep their order.  ``batch=None`` signs
each record on its own.

Broker restarts: with idempotence on, aiokafka retries a produce request that
failed for a retriable reason (connection lost, not the leader) without limit; a
batch fails only when its partition has had no known leader for longer than
``request_timeout_ms``, which stands in for Java's ``delivery.timeout.ms``.  The
adapter sets it to two minutes, so a broker that restarts or fails over within
that time costs a pause, not a record, and the broker's producer sequence numbers
stop a retried batch from being written twice.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.adapter.ledger import Acked, Ledger
from services.adapter.sources import Row
from services.core.codec import SchemaRegistry
from services.core.disclosure import seal_record
from services.core.errors import BrokerUnavailable, RecordInvalid
from services.core.models import ListEntryEvent
from services.core.problems import Problem
from services.core.signing import Domain, Signer, digest_of
from services.core.validation import MAX_RECORD_BYTES, validate_record
from services.core.world import World
from services.kafka_access import KafkaAccess

DELIVERY_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch of records is signed: when it holds ``max_records``, or ``max_wait`` seconds
    after its first record arrived, whichever comes first."""

    max_records: int = 512
    max_wait: float = 0.05

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.max_wait < 0:
            raise ValueError("a batch holds at least one record and waits a non-negative time")


@dataclass(slots=True)
class _Waiting:
    """A record accepted for publishing, waiting for its batch to be signed."""

    event_id: str
    key: bytes
    value: bytes  # the sealed listing, as the topic carries it
    signed: bytes  # the digest of its commitments: what the signature covers
    digest: bytes  # the digest of the event itself: what the ledger knows it by
    report: Report


@dataclass
class RowProblem:
    file: str
    line: int
    problems: list[Problem]
    text: str = ""

    def lines(self) -> list[str]:
        return [f"{self.file}:{self.line}: {p}" for p in self.problems]


@dataclass
class Report:
    """What happened to the rows of one source.

    Once a publish has finished, ``published + already_published + len(rejected)``
    is the number of records read.
    """

    file: str = "-"
    valid: int = 0
    published: int = 0
    already_published: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    rejects_path: Path | None = None
    interrupted: bool = False
    on_reject: Callable[[RowProblem], None] | None = field(default=None, repr=False, compare=False)

    def reject(self, line: int, problems: list[Problem], text: str = "") -> None:
        rp = RowProblem(self.file, line, problems, text)
        self.rejected.append(rp)
        if self.on_reject is not None:
            self.on_reject(rp)

    @property
    def rows(self) -> int:
        return self.published + self.already_published + len(self.rejected)


def check_row(row: Row, *, agency: str, world: World, report: Report) -> ListEntryEvent | None:
    """The row's valid event, or None after adding its problems to ``report``.

    A source's own problems (a date not in the mapped format) come first; the
    record rules are still applied, so a clerk sees every problem of the row at
    once, but a field the source already complained about is not reported twice.
    """
    problems = list(row.problems)
    if row.raw is not None:
        try:
            ev = validate_record(row.raw, agency=agency, world=world)
        except RecordInvalid as exc:
            seen = {p.path for p in problems}
            problems += [p for p in exc.problems if p.path not in seen]
        else:
            if not problems:
                report.valid += 1
                return ev
    report.reject(row.line, problems, row.text)
    return None


def size_problem(value: bytes) -> Problem | None:
    """Records stay well below what Kafka takes by default (1 MiB), whatever the field limits allow."""
    if len(value) > MAX_RECORD_BYTES:
        return Problem.of(
            "",
            f"the encoded record is {len(value) // 1024} KiB, more than "
            f"{MAX_RECORD_BYTES // 1024} KiB (fewer names, identifiers or related parties)",
        )
    return None


def write_rejects(path: Path, rejected: list[RowProblem]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for r in rejected:
            out.write(
                json.dumps(
                    {"line": r.line, "problems": [str(p) for p in r.problems], "record": r.text}, ensure_ascii=False
                )
                + "\n"
            )
    tmp.replace(path)


class Producer(Protocol):
    """What the publisher needs of a Kafka producer (AIOKafkaProducer has it)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: Any = None,
        timestamp_ms: Any = None,
        headers: Any = None,
    ) -> asyncio.Future[Any]: ...


def kafka_producer(access: KafkaAccess, *, delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **access.aiokafka_kwargs(),
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=256 * 1024,
        request_timeout_ms=delivery_timeout_ms,
        retry_backoff_ms=250,
    )


class Publisher:
    """Signs and sends one agency's records, skipping what its ledger says is already published.

    Use as an async context manager; :meth:`submit` each valid event, then
    :meth:`flush` to wait for the broker (leaving the context flushes too).
    Acknowledged records are written to the ledger every ``commit_interval``
    seconds, so a long stream's ledger stays current.
    """

    def __init__(
        self,
        *,
        producer: Producer,
        agency: str,
        topic: str,
        signer: Signer,
        schemas: SchemaRegistry,
        ledger: Ledger,
        commit_interval: float = 0.25,
        max_in_flight: int = 5000,
        batch: BatchPolicy | None = None,
    ) -> None:
        self.agency = agency
        self.topic = topic
        self.signer = signer
        self.schemas = schemas
        self.ledger = ledger
        self._producer = producer
        self._commit_interval = commit_interval
        self._max_in_flight = max_in_flight
        self._inflight: dict[str, bytes] = {}
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._acked: list[Acked] = []
        self._failure: BaseException | None = None
        self._committer: asyncio.Task[None] | None = None
        self._batch_policy = batch
        self._batch: list[_Waiting] = []
        self._batch_opened = 0.0
        self._batch_waiting = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._sealer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Publisher:
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise BrokerUnavailable(
                f"cannot reach Kafka to publish for {self.agency}: {exc}", agency=self.agency
            ) from None
        self._committer = asyncio.create_task(self._commit_loop(), name="concord-ledger")
        if self._batch_policy is not None:
            self._sealer = asyncio.create_task(self._seal_loop(self._batch_policy.max_wait), name="concord-batches")
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            for task in (self._committer, self._sealer):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            self._drop_batch()
            await self._producer.stop()
            self._commit()

    def refresh_credentials(self, access: KafkaAccess) -> None:
        """A rotated password: the producer's next connections use it."""
        access.refresh_aiokafka(self._producer)

    def encode(self, ev: ListEntryEvent) -> bytes:
        """The event's own encoding: the same bytes for the same event, whatever seals it."""
        return self.schemas.encode_model(ev)

    async def submit(self, row: Row, ev: ListEntryEvent, report: Report) -> None:
        """Publish ``ev`` unless the ledger already has it; refuse a changed event id."""
        self._raise_failure()
        digest = digest_of(self.encode(ev))
        sealed = seal_record(ev, self.schemas)
        too_big = size_problem(sealed.value)
        if too_big is not None:
            report.reject(row.line, [too_big], row.text)
            return
        known = self._inflight.get(ev.event_id)
        when = "earlier in this run"
        if known is None:
            entry = self.ledger.get(ev.event_id)
            if entry is not None:
                known, when = entry.digest, f"at {entry.published_at}"
        if known == digest:
            report.already_published += 1
            return
        if known is not None:
            report.reject(
                row.line,
                [
                    Problem.of(
                        "event_id",
                        f"{ev.event_id!r} was published {when} with other content; an event id is never reused — "
                        "publish the change as a new version with its own event_id",
                    )
                ],
                row.text,
            )
            return
        waiting = _Waiting(
            ev.event_id, ev.entry_id.encode(), sealed.value, digest_of(sealed.commitments), digest, report
        )
        policy = self._batch_policy
        if policy is None:
            async with self._send_lock:
                await self._send(waiting, self.signer.sign(Domain.LIST_RECORD, sealed.commitments).as_kafka())
            self._inflight[ev.event_id] = digest
            return
        self._inflight[ev.event_id] = digest  # a repeat of it in the same batch is then seen
        if not self._batch:
            self._batch_opened = asyncio.get_running_loop().time()
            self._batch_waiting.set()
        self._batch.append(waiting)
        if len(self._batch) >= policy.max_records:
            await self._seal()

    async def _seal(self) -> None:
        """Sign the waiting batch (one signature over its Merkle root) and send it, in order."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        signed = self.signer.sign_digests(Domain.LIST_RECORD, [w.signed for w in batch])
        async with self._send_lock:  # batches leave in the order they were sealed
            for i, (w, headers) in enumerate(zip(batch, signed, strict=True)):
                try:
                    await self._send(w, headers.as_kafka())
                except BaseException:
                    for unsent in batch[i:]:
                        self._inflight.pop(unsent.event_id, None)
                    raise

    async def _seal_loop(self, max_wait: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._batch_waiting.wait()
            late = self._batch_opened + max_wait - loop.time()
            if late > 0:
                await asyncio.sleep(late)
                continue  # sealed by size meanwhile, perhaps, and another batch opened
            self._batch_waiting.clear()
            try:
                await self._seal()
            except (KafkaError, BrokerUnavailable) as exc:
                if self._failure is None:
                    self._failure = exc

    def _drop_batch(self) -> None:
        for w in self._batch:
            self._inflight.pop(w.event_id, None)
        self._batch = []

    async def _send(self, w: _Waiting, headers: list[tuple[str, bytes]]) -> None:
        try:
            fut = await self._producer.send(self.topic, value=w.value, key=w.key, headers=headers)
        except KafkaError as exc:
            raise BrokerUnavailable(
                f"Kafka refused a record of {self.agency}: {exc}", agency=self.agency, topic=self.topic
            ) from None
        fut.add_done_callback(functools.partial(self._on_delivery, w.event_id, w.digest, w.report))
        self._pending.append(fut)
        if len(self._pending) >= self._max_in_flight:
            await self._wait(len(self._pending) // 2)

    def _on_delivery(self, event_id: str, digest: bytes, report: Report, fut: asyncio.Future[Any]) -> None:
        self._done(fut, event_id, digest, report)

    def _done(self, fut: asyncio.Future[Any], event_id: str, digest: bytes, report: Report) -> None:
        if fut.cancelled():
            self._inflight.pop(event_id, None)
            return
        exc = fut.exception()
        if exc is not None:
            self._inflight.pop(event_id, None)
            if self._failure is None:
                self._failure = exc
            return
        meta = fut.result()
        self._acked.append(Acked(event_id, digest, getattr(meta, "partition", None), getattr(meta, "offset", None)))
        report.published += 1

    async def _wait(self, count: int) -> None:
        batch = [self._pending.popleft() for _ in range(min(count, len(self._pending)))]
        if batch:
            await asyncio.gather(*batch, return_exceptions=True)
        self._raise_failure()

    async def flush(self) -> None:
        """Sign and send the waiting batch, wait until the broker has acknowledged every record sent,
        and record them."""
        self._raise_failure()
        await self._seal()
        async with self._send_lock:  # a batch the sealing task is sending is part of it
            pass
        await self._wait(len(self._pending))
        self._commit()

    async def settle(self) -> None:
        """After a failure: wait for every send to end either way and record what was acknowledged,
        so that a retry starts from the ledger alone (records still waiting for a batch were not sent)."""
        self._drop_batch()
        batch = list(self._pending)
        self._pending.clear()
        await asyncio.gather(*batch, return_exceptions=True)
        self._failure = None
        self._commit()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            exc, self._failure = self._failure, None
            self._commit()
            raise BrokerUnavailable(
                f"Kafka did not take a record of {self.agency}: {exc!r}; records it "
                "acknowledged are in the ledger, publish again to send the rest",
                agency=self.agency,
                topic=self.topic,
            )

    def _commit(self) -> None:
        if not self._acked:
            return
        acked, self._acked = self._acked, []
        self.ledger.record(acked)
        for a in acked:
            if self._inflight.get(a.event_id) == a.digest:
                del self._inflight[a.event_id]

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval)
            self._commit()


async def _paced(rows: Iterable[Row] | AsyncIterable[Row], every: int = 100) -> AsyncIterator[Row]:
    """An async view of a row source; a plain iterator yields to the loop now and then,
    so the producer sends while a large file is still being read."""
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
        return
    for n, row in enumerate(rows, start=1):
        yield row
        if n % every == 0:
            await asyncio.sleep(0)


async def _until(stop: asyncio.Event, rows: AsyncIterator[Row], report: Report) -> AsyncIterator[Row]:
    """Rows of a stream until it ends or ``stop`` is set, even while it waits for a line."""

    async def next_row() -> Row:
        return await rows.__anext__()

    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            nxt = asyncio.ensure_future(next_row())
            await asyncio.wait({nxt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                report.interrupted = True
                nxt.cancel()
                await asyncio.gather(nxt, return_exceptions=True)
                return
            try:
                yield nxt.result()
            except StopAsyncIteration:
                return
    finally:
        stopped.cancel()
        await asyncio.gather(stopped, return_exceptions=True)


async def publish_rows(
    rows: Iterable[Row] | AsyncIterable[Row],
    *,
    publisher: Publisher,
    world: World,
    report: Report,
    say: Callable[[str], None] | None = None,
    progress_every: float = 1.0,
    stop: asyncio.Event | None = None,
) -> Report:
    """Validate and publish every row; progress through ``say`` every ``progress_every`` seconds."""
    started = last = time.monotonic()
    shown = -1
    read = 0
    source = _paced(rows)
    if stop is not None and isinstance(rows, AsyncIterable):
        source = _until(stop, source, report)
    async for row in source:
        read += 1
        ev = check_row(row, agency=publisher.agency, world=world, report=report)
        if ev is not None:
            await publisher.submit(row, ev, report)
        now = time.monotonic()
        if say is not None and progress_every and now - last >= progress_every and read != shown:
            last, shown = now, read
            say(
                f"[{publisher.agency}] {report.file}: {read:,} records read, {report.published:,} published, "
                f"{report.already_published:,} already published, {len(report.rejected):,} rejected "
                f"({read / (now - started):,.0f}/s)"
            )
        if stop is not None and stop.is_set():
            report.interrupted = True
            break
    await publisher.flush()
    return report
