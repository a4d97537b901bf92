"""Reading a topic from its beginning to the end it had when reading started.

The governance tool reads small, bounded things synchronously (the ledger's last
record, an agency's directive and receipt topics while it drains), as the admin,
by explicit assignment: no consumer group joins, nothing is committed.  librdkafka
insists on a ``group.id`` even for assigned consumers; it is never used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.core.errors import BrokerUnavailable
from services.kafka_access import KafkaAccess

TIMEOUT = 30.0
_log = logging.getLogger("concord.rdkafka")


def unused_group_refused(err: KafkaError) -> bool:
    """librdkafka looks up the coordinator of the ``group.id`` it insists on even for a consumer that
    only assigns partitions; a principal without rights on that group is told so once, and reads on."""
    return bool(err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED)


@contextmanager
def assigned_consumer(access: KafkaAccess) -> Iterator[Consumer]:
    conf = {
        **access.confluent_config(),
        "group.id": "concord-governance-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
    }
    consumer = Consumer(conf, logger=_log)
    try:
        yield consumer
    finally:
        consumer.close()


def partitions_of(consumer: Consumer, topic: str) -> list[int] | None:
    """The topic's partitions, or None when it does not exist."""
    try:
        md = consumer.list_topics(topic, timeout=TIMEOUT)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read metadata of {topic}: {exc}") from None
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        unknown = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
        if t is not None and t.error.code() not in unknown:
            raise BrokerUnavailable(f"cannot read metadata of {topic}: {t.error}")
        return None
    return sorted(t.partitions)


def position(msg: Message) -> tuple[int, int]:
    """The partition and offset of a record a consumer returned without an error.

    librdkafka leaves them unset only on the events it reports as errors.
    """
    p, off = msg.partition(), msg.offset()
    if p is None or off is None:
        raise BrokerUnavailable(f"a record of {msg.topic()} came without its partition or offset", topic=msg.topic())
    return p, off


#: How long a restore keeps asking for a changelog partition's watermarks while the cluster moves
#: its leader (a broker lost, a controller failing over) before the worker gives up.
WATERMARK_PATIENCE_S = 180.0


class WatermarkReader(Protocol):
    """What asking for watermarks needs of a confluent-kafka consumer."""

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int] | None: ...


def patient_watermarks(
    reader: WatermarkReader,
    tp: TopicPartition,
    patience: float = WATERMARK_PATIENCE_S,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:
    """The partition's low and high watermarks, asked again while the cluster cannot answer yet.

    A leader that has just died makes librdkafka fail the request (``_DESTROY_BROKER``,
    ``_TRANSPORT``, ``NOT_LEADER_FOR_PARTITION``, a timeout): a new leader answers within seconds,
    so these are waited out rather than ending the worker; anything else is raised at once.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            answer = reader.get_watermark_offsets(tp, timeout=30, cached=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = isinstance(err, KafkaError) and (err.retriable() or err.code() in _TRANSIENT)
            if not transient or time.monotonic() >= deadline:
                raise
        else:
            if answer is not None:  # None is librdkafka's "not known yet" (only ever with cached=True)
                return answer
            err = KafkaError(KafkaError._TIMED_OUT)
            _log.warning(
                "changelog %s[%d]: watermarks not available yet (%s); asking again", tp.topic, tp.partition, err
            )
            sleep(1.0)


_TRANSIENT = frozenset(
    {
        KafkaError._DESTROY_BROKER,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """The partition's first offset and its end, asked of the broker (never a cached answer), waiting
    out a leader that has just died."""
    try:
        low, high = patient_watermarks(consumer, TopicPartition(topic, partition), patience=TIMEOUT * 3)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read offsets of {topic}[{partition}]: {exc}") from None
    return int(low), int(high)


def read_through(consumer: Consumer, topic: str, ends: Mapping[int, int]) -> set[int]:
    """The partitions of ``ends`` that ``consumer`` has read through to their end offset.

    The position, not the last record seen, decides: a compacted tail or a transaction marker
    can leave no record at end-1.
    """
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return {tp.partition for tp in positions if tp.offset >= ends[tp.partition]}


def read_to_end(
    access: KafkaAccess, topic: str, *, last_only: bool = False, timeout: float = TIMEOUT
) -> Iterator[Message]:
    """Every record of ``topic`` up to its current end (or only each partition's last one)."""
    with assigned_consumer(access) as consumer:
        parts = partitions_of(consumer, topic)
        if not parts:
            return
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in parts:
            low, high = watermarks(consumer, topic, p)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, max(low, high - 1) if last_only else OFFSET_BEGINNING))
        if not starts:
            return
        consumer.assign(starts)
        deadline = time.monotonic() + timeout
        pending = dict(ends)
        while pending:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"could not read {topic} to its end within {timeout:.0f}s", topic=topic, partitions=sorted(pending)
                )
            msg = consumer.poll(0.5)
            if msg is None:
                for p in read_through(consumer, topic, pending):
                    pending.pop(p, None)
                continue
            err = msg.error()
            if err is not None:
                if unused_group_refused(err):
                    continue
                raise BrokerUnavailable(f"cannot read {topic}: {err}", topic=topic)
            at_partition, off = position(msg)
            if at_partition not in pending:
                continue
            if off < pending[at_partition]:
                yield msg
            if off >= pending[at_partition] - 1:
                pending.pop(at_partition)
