"""A subscriber fails closed, on a broker of this module's own (the session broker cannot be
stopped): with the broker gone longer than ``--stale-after`` its answers turn ``unknown``
and ``/healthz`` 503, and ``ok`` again once the broker is back; with the fan-out's
heartbeats silent the same; a wiped store answers ``unknown`` until it has bootstrapped.
Heartbeats are recognised by their schema, verified, never stored, never receipted.

No fan-out runs here: the test writes the fan-out's heartbeats itself, signed with the
``concord-fanout`` key, on every directive partition (key ``heartbeat/<p>``), as the
fan-out does.
"""

from __future__ import annotations

import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.core.codec import default_registry
from services.core.models import Heartbeat, Receipt, heartbeat_key
from services.core.signing import Domain, Signer
from services.embedded.broker import EmbeddedKafka
from services.embedded.libs import ensure_kafka_libs
from services.keystore import load_signer
from services.localstack import LocalStack, Service
from services.subscriber.client import CheckClient, Identity
from tests.conftest import REPO_ROOT, TEST_USERS, KafkaCluster
from tests.integration.conftest import make_stack
from tests.support import assert_stays, kafka_headers, wait_for

pytestmark = pytest.mark.fault

STALE = 4.0
PARTITIONS = 3


class Heartbeats:
    """The fan-out's heartbeats, written every ``every`` seconds on each directive partition until paused."""

    def __init__(self, stack: LocalStack, agency: str, every: float = 0.5) -> None:
        self.signer = load_signer(stack.home / "keys", "concord-fanout")
        self.topic = stack.world.topic_name("directives", agency, namespace=stack.namespace)
        self.agency = agency
        self.every = every
        self.producer = Producer(
            {**stack.access("concord-fanout").confluent_config(), "linger.ms": 0, "message.timeout.ms": 5000}
        )
        self.paused = threading.Event()
        self.stopped = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def beat(self, partition: int, *, agency: str | None = None, signer: Signer | None = None) -> None:
        value = default_registry().encode_model(
            Heartbeat(
                subscriber=agency or self.agency,
                partition=partition,
                issued_by="test-fanout",
                issued_at=datetime.now(UTC),
                interval_ms=int(self.every * 1000),
            )
        )
        signed = (signer or self.signer).sign(Domain.HEARTBEAT, value)
        self.producer.produce(
            self.topic,
            value=value,
            key=heartbeat_key(partition).encode(),
            partition=partition,
            headers=kafka_headers(signed.as_kafka()),
        )

    def _run(self) -> None:
        while not self.stopped.is_set():
            if not self.paused.is_set():
                for p in range(PARTITIONS):
                    self.beat(p)
                self.sent += 1
            self.producer.poll(0)
            self.stopped.wait(self.every)
        self.producer.flush(5)

    def __enter__(self) -> Heartbeats:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(15)


@dataclass
class Own:
    broker: EmbeddedKafka
    stack: LocalStack
    cluster: KafkaCluster


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Own]:
    root = tmp_path_factory.mktemp("fail-closed")
    passwords = {user: secrets.token_urlsafe(18) for user in TEST_USERS}
    broker = EmbeddedKafka(
        root / "kafka", passwords, libs_dir=ensure_kafka_libs(REPO_ROOT), tie_to_parent=True, jmx_exporter=False
    )
    broker.start()
    try:
        cluster = KafkaCluster(broker.bootstrap, broker.ca_file, passwords, embedded=broker)
        stack = make_stack(cluster, root / "home", "t" + secrets.token_hex(4))
        try:
            yield Own(broker, stack, cluster)
        finally:
            stack.stop()
    finally:
        broker.stop()


def start(own: Own, name: str, db: Path) -> Service:
    return own.stack.start_subscriber("aviation", None, "--stale-after", str(STALE), name=name, db=db)


def health(own: Own, svc: Service) -> tuple[int, str] | None:
    ctx = ssl.create_default_context(cafile=str(own.stack.subscriber_home("aviation").ca))
    try:
        r = httpx.get(f"{svc.url}/healthz", timeout=2, verify=ctx)
    except httpx.HTTPError:
        return None
    return r.status_code, r.json()["status"]


def answer(own: Own, svc: Service, ident: str = "nobody") -> str | None:
    home = own.stack.subscriber_home("aviation")
    assert svc.url
    try:
        with CheckClient(svc.url, Identity(ca=home.ca, cert=home.client_cert("counter")), allow_unknown=True) as c:
            return c.check(ident).status
    except httpx.HTTPError:
        return None


def current(own: Own, svc: Service) -> bool:
    return health(own, svc) == (200, "ok") and answer(own, svc) == "clear"


def stale(own: Own, svc: Service) -> bool:
    h = health(own, svc)
    return h is not None and h[0] == 503 and answer(own, svc) == "unknown"


def test_broker_gone_longer_than_stale_after_makes_answers_unknown(own: Own) -> None:
    with Heartbeats(own.stack, "aviation"):
        sub = start(own, "subscriber-aviation", own.stack.home / "data" / "aviation.sqlite")
        wait_for("the subscriber current", lambda: current(own, sub), timeout=90)
        assert current(own, sub)
        stopping = time.monotonic()
        own.broker.stop()
        try:
            wait_for("answers unknown with the broker gone", lambda: stale(own, sub), timeout=60)
            # Not before the last confirmation is --stale-after old (the confirmations come every second).
            assert time.monotonic() - stopping > STALE - 1.5
            assert health(own, sub) == (503, "degraded")
        finally:
            own.broker.start()
        wait_for("ok again with the broker back", lambda: current(own, sub), timeout=90)


def test_a_silent_fanout_makes_answers_unknown(own: Own) -> None:
    sub = next(s for s in own.stack.services if s.name == "subscriber-aviation")
    with Heartbeats(own.stack, "aviation") as beats:
        wait_for("the subscriber current", lambda: current(own, sub), timeout=60)
        beats.paused.set()
        wait_for("answers unknown without heartbeats", lambda: stale(own, sub), timeout=30)
        beats.paused.clear()
        wait_for("ok again once the heartbeats resume", lambda: current(own, sub), timeout=30)


def test_forged_and_misplaced_heartbeats_do_not_count_and_no_heartbeat_is_receipted(own: Own) -> None:
    sub = next(s for s in own.stack.services if s.name == "subscriber-aviation")
    with Heartbeats(own.stack, "aviation") as beats:
        wait_for("the subscriber current", lambda: current(own, sub), timeout=60)
        beats.paused.set()
        court = load_signer(own.stack.home / "keys", "court")
        deadline = time.monotonic() + STALE + 6
        while time.monotonic() < deadline:  # only heartbeats that must not count
            for p in range(PARTITIONS):
                beats.beat(p, signer=court)  # not the fan-out's signature
                beats.beat(p, agency="rail")  # another agency's
            beats.beat(0)  # partition 0 alone is not the whole topic
            beats.producer.flush(5)
            time.sleep(0.5)
        assert stale(own, sub)
        beats.paused.clear()
        wait_for("ok again", lambda: current(own, sub), timeout=30)
    metrics = next(t for n, t in own.stack.scrape_targets().items() if n == "subscriber-aviation")
    text = httpx.get(f"http://{metrics}/metrics", timeout=5).text
    assert 'concord_subscriber_rejected_total{agency="aviation",reason="WRONG_AGENCY"}' in text
    assert 'concord_subscriber_rejected_total{agency="aviation",reason="WRONG_AGENCY"} 0.0' not in text
    assert 'concord_subscriber_rejected_total{agency="aviation",reason="WRONG_SUBSCRIBER"} 0.0' not in text
    assert 'concord_subscriber_current{agency="aviation"} 1.0' in text
    # No heartbeat is stored as a directive, and none gets a receipt: the receipts topic is empty.
    assert receipts(own) == []
    with CheckClient(sub.url or "", _auditor(own)) as c:
        assert c.health().active_directives == 0


def test_a_wiped_store_answers_unknown_until_bootstrapped(own: Own) -> None:
    with Heartbeats(own.stack, "aviation"):
        own.broker.stop()
        try:
            fresh = start(own, "subscriber-aviation-fresh", own.stack.home / "data" / "wiped.sqlite")
            wait_for("the fresh subscriber serving", lambda: health(own, fresh) is not None, timeout=60)
            assert_stays(  # while it cannot read its feed: unknown, never clear
                "starting and answering unknown",
                lambda: (health(own, fresh), answer(own, fresh)),
                holds=lambda got: got == ((503, "starting"), "unknown"),
                for_s=3.0,
                every=0.3,
            )
        finally:
            own.broker.start()
        wait_for("bootstrapped and current", lambda: current(own, fresh), timeout=90)
        own.stack.stop(fresh.name)


def _auditor(own: Own) -> Identity:
    home = own.stack.subscriber_home("aviation")
    return Identity(ca=home.ca, cert=home.client_cert("auditor"))


def receipts(own: Own) -> list[Receipt]:
    topic = own.stack.world.topic_name("receipts", "aviation", namespace=own.stack.namespace)
    consumer = Consumer(
        {
            **own.stack.access("concord-admin").confluent_config(),
            "group.id": "t-" + secrets.token_hex(4),
            "enable.auto.commit": False,
        }
    )
    try:
        parts = [TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
        if not any(ends):
            return []
        consumer.assign(parts)
        out: list[Receipt] = []
        while len(out) < sum(ends):
            msg = consumer.poll(5)
            if msg is None:
                break
            value = msg.value()
            assert value is not None, "a receipt without a value"
            out.append(default_registry().decode_model(value, Receipt))
        return out
    finally:
        consumer.close()
