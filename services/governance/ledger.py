"""The ledger: what Concord applied last, kept on the cluster it describes.

One compacted topic per namespace, ``<ns>.governance-ledger`` (one partition), one
record per apply that changed something, keyed ``ledger``; the latest record is the
ledger. Why a topic and not a file under ``<home>``:

* the state lives with the cluster it describes, so every operator and CI runner
  pointed at the cluster sees the same ledger (a file per machine is exactly how
  ACL-as-code tools "lose track of state");
* only the admin can write it: the broker's authorizer guards it like everything else
  (no managed principal gets a binding on it; ops may describe it);
* ``min.compaction.lag.ms`` keeps every apply's record for 90 days before compaction
  folds them into the latest, so recent history stays auditable;
* its offset is part of the live fingerprint, so a plan made before another
  operator's apply is refused as stale.

The record is gzip-compressed JSON; a ledger for thousands of bindings stays well
under the topic's 16 MiB record limit.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import ValidationError

from services.core.access import ledger_topic
from services.core.acl_ledger import Ledger
from services.core.errors import BrokerUnavailable, ConfigError
from services.governance.admin import TIMEOUT
from services.governance.reading import read_to_end
from services.kafka_access import KafkaAccess

KEY = b"ledger"
MAX_BYTES = 16 * 1024 * 1024
_log = logging.getLogger("concord.rdkafka")


def read_ledger(access: KafkaAccess, namespace: str) -> tuple[Ledger | None, str | None]:
    """The latest ledger and its revision (``offset:<n>``), or ``(None, None)`` if there is none."""
    topic = ledger_topic(namespace)
    latest = None
    for msg in read_to_end(access, topic, last_only=True):
        latest = msg
    value = latest.value() if latest is not None else None
    if latest is None or value is None:
        return None, None
    try:
        ledger = Ledger.from_bytes(value)
    except ValidationError as exc:
        raise ConfigError(
            f"the ledger in {topic} at offset {latest.offset()} is unreadable: {exc}", topic=topic
        ) from None
    return ledger, f"offset:{latest.offset()}"


def ensure_ledger_topic(admin: AdminClient, namespace: str, replication: int, min_insync_replicas: int) -> None:
    topic = ledger_topic(namespace)
    if topic in admin.list_topics(timeout=TIMEOUT).topics:
        return
    new = NewTopic(
        topic,
        num_partitions=1,
        replication_factor=replication,
        config={
            "cleanup.policy": "compact",
            "min.insync.replicas": str(min_insync_replicas),
            "min.compaction.lag.ms": str(90 * 24 * 3600 * 1000),
            "max.message.bytes": str(MAX_BYTES),
        },
    )
    for name, fut in admin.create_topics([new], request_timeout=TIMEOUT).items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS
                raise BrokerUnavailable(f"cannot create the ledger topic {name}: {exc}") from None


def write_ledger(access: KafkaAccess, ledger: Ledger) -> None:
    producer = Producer(
        {**access.confluent_producer_config(), "compression.type": "gzip", "message.max.bytes": MAX_BYTES}, logger=_log
    )
    errors: list[str] = []

    def done(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(ledger_topic(ledger.namespace), key=KEY, value=ledger.to_bytes(), on_delivery=done)
    left = producer.flush(TIMEOUT)
    if left or errors:
        raise BrokerUnavailable(
            f"the ledger was not written: {'; '.join(errors) or 'timed out'}", topic=ledger_topic(ledger.namespace)
        )
