"""A flooding publisher is throttled by its quota, and another agency's delistings still
reach their subscriber in time (real broker, fan-out and subscribers).

The quota comes from ``topics/`` through ``concord acl plan/apply`` (the Governance
class those commands use): court's principal gets ``producer_byte_rate`` =
:data:`QUOTA`.  Court then produces signed listings flat out, with up to
:data:`IN_FLIGHT` records waiting for the broker, while the market regulator lists
and delists companies; the finance subscriber's check API is polled for each.

Stated bound (docs/governance.md, "Publishers' quotas"): while court floods, each market delisting
is answered "clear" by finance within :data:`LATENCY_BOUND` seconds of being
published, and court's measured throughput stays within :data:`QUOTA_SLACK` of its
quota.  Quotas belong to principals, which every test on the session broker shares:
the test removes them again however it ends.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.models import ListEntryEvent
from services.core.principals import ADMIN
from services.core.signing import Domain
from services.core.world import load_world
from services.governance.acl import Governance
from services.governance.drift import DriftReport
from services.governance.quotas import describe_user_quotas
from services.keystore import load_signer
from services.localstack import LocalStack
from services.subscriber.client import CheckClient
from tests.integration.support import publish
from tests.unit.factories import REPO_ROOT, delisting, entry_dict, make_ric, make_uscc, organization, person

pytestmark = pytest.mark.integration

QUOTA = 16 * 1024  # bytes per second for court while it floods (about 35 listings/s)
QUOTA_SLACK = 1.5  # measured/quota at most; Kafka averages over its sample windows
LATENCY_BOUND = 10.0  # seconds from publishing a delisting to the subscriber answering "clear"
IN_FLIGHT = 200  # court's records waiting for acknowledgement at any time
WARMUP = 3.0  # seconds of flood before measuring (Kafka lets a burst through before throttling)
ROUNDS = 3
# The flood is measured over at least this long: a throttled producer's acknowledgements arrive in
# bursts, one per throttle delay (up to a quota window), so a short window can see none at all.
MIN_WINDOW = 12.0


def _world_with_quotas(tmp: Path, principals: dict[str, Any] | None) -> Path:
    world = tmp / ("world-quotas" if principals else "world-none")
    shutil.copytree(REPO_ROOT / "topics", world)
    doc_path = world / "topics.yaml"
    text = doc_path.read_text()
    head = text[: text.index("\nquotas:")]
    if principals:
        head += "\n" + yaml.safe_dump({"quotas": {"principals": principals}})
    doc_path.write_text(head + "\n")
    return world


def _governance(stack: LocalStack, world: Path) -> Governance:
    return Governance(
        access=stack.access(ADMIN),
        world=load_world(world),
        namespace=stack.namespace,
        credentials_dir=stack.credentials_dir,
        brokers=stack.brokers,
    )


class Flood:
    """Court producing signed listings as fast as the broker takes them, on its own thread."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.stop = threading.Event()
        self.acked: list[tuple[float, int]] = []  # (time, bytes) of each acknowledged record
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        try:
            asyncio.run(self._flood())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    async def _flood(self) -> None:
        signer = load_signer(self.stack.home / "keys", "court")
        topic = self.stack.world.topic_name("lists", "court", namespace=self.stack.namespace)
        producer = AIOKafkaProducer(
            **self.stack.access("court").aiokafka_kwargs(), acks="all", linger_ms=5, request_timeout_ms=120_000
        )
        await producer.start()
        pending: set[asyncio.Future[Any]] = set()
        try:
            for n in count():
                if self.stop.is_set():
                    break
                ev = ListEntryEvent.model_validate(entry_dict(entry_id=f"flood-{n}", subject=person(make_ric(n))))
                sealed = seal_record(ev, default_registry())
                value = sealed.value
                headers = signer.sign(Domain.LIST_RECORD, sealed.commitments).as_kafka()
                size = len(value) + sum(len(k) + len(v) for k, v in headers) + len(ev.entry_id)
                fut = await producer.send(topic, value=value, key=ev.entry_id.encode(), headers=headers)
                fut.add_done_callback(
                    lambda f, s=size: self.acked.append((time.monotonic(), s)) if not f.exception() else None
                )
                pending.add(fut)
                fut.add_done_callback(pending.discard)
                while len(pending) >= IN_FLIGHT and not self.stop.is_set():
                    await asyncio.wait(set(pending), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await asyncio.gather(*pending, return_exceptions=True)
            await producer.stop()

    def rate(self, since: float, until: float) -> float:
        """Bytes per second acknowledged between two instants."""
        done = sum(s for t, s in self.acked if since <= t <= until)
        return done / (until - since)


def _wait_until(finance: CheckClient, uscc: str, restricted: bool, started: float) -> float:
    """Seconds from ``started`` until finance's answer for ``uscc`` is ``restricted`` (a counter system asking)."""
    while time.monotonic() - started < 3 * LATENCY_BOUND:
        if (finance.check(uscc, measure="finance.procurement-ban").status == "restricted") is restricted:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"finance never answered restricted={restricted} for {uscc}")


def _market(n: int, version: int) -> dict[str, Any]:
    entry_id = f"market-quota-{n}"
    raw = entry_dict(
        entry_id=entry_id,
        version=version,
        program="market.food-safety-serious",
        subject=organization(make_uscc(70_000_000 + n), reps=[]),
        event_type="DELISTED" if version == 2 else "LISTED",
        delisting=delisting() if version == 2 else None,
    )
    raw["event_id"] = f"market:{entry_id}:{version}"
    return raw


def test_a_flooding_publisher_is_throttled_and_another_agencys_delistings_arrive_in_time(
    exchange: LocalStack, tmp_path: Path
) -> None:
    finance = exchange.check_client("finance", "counter")
    limited = _world_with_quotas(tmp_path, {"court": {"producer_byte_rate": QUOTA}})
    gov = _governance(exchange, limited)
    try:
        plan = gov.plan()
        # Quotas belong to principals the whole test session shares: other tests' `acl apply` may have set
        # the declared defaults already, which this world (no defaults) removes.
        (court,) = [q for q in plan.quotas if q.user == "court" and q.key == "producer_byte_rate"]
        assert (court.action, court.key, court.value) == ("set", "producer_byte_rate", QUOTA)
        assert {q.action for q in plan.quotas if q.user == "court" and q.key != "producer_byte_rate"} <= {"remove"}
        assert court.reason == "declared in topics.yaml quotas.principals.court"
        result = gov.apply(plan)
        assert result.quotas_changed >= 1
        assert describe_user_quotas(exchange.access(ADMIN))["court"] == {"producer_byte_rate": float(QUOTA)}
        assert DriftReport.of(gov.plan()).in_sync

        flood = Flood(exchange)
        flood.start()
        time.sleep(WARMUP)
        measured_from = time.monotonic()
        listed, delisted = [], []
        for n in range(ROUNDS):
            uscc = make_uscc(70_000_000 + n)
            started = time.monotonic()
            publish(exchange, "market", [_market(n, 1)])
            listed.append(_wait_until(finance, uscc, True, started))
            started = time.monotonic()
            publish(exchange, "market", [_market(n, 2)])
            delisted.append(_wait_until(finance, uscc, False, started))
        time.sleep(max(0.0, measured_from + MIN_WINDOW - time.monotonic()))
        measured_until = time.monotonic()
        rate = flood.rate(measured_from, measured_until)
        flood.join()
        assert flood.error is None, flood.error
        print(
            f"\ncourt flood: {rate:,.0f} B/s against a quota of {QUOTA:,} B/s "
            f"({rate / QUOTA:.2f}x) over {measured_until - measured_from:.1f}s; "
            f"market listing latency {', '.join(f'{x:.2f}' for x in listed)} s, "
            f"delisting latency {', '.join(f'{x:.2f}' for x in delisted)} s (bound {LATENCY_BOUND} s)"
        )
        assert rate <= QUOTA * QUOTA_SLACK, f"court produced {rate:,.0f} B/s, quota {QUOTA:,}"
        assert rate >= QUOTA * 0.3, f"court produced only {rate:,.0f} B/s: it was not flooding"
        assert max(delisted) <= LATENCY_BOUND
    finally:
        finance.close()
        cleanup = _governance(exchange, _world_with_quotas(tmp_path, None))
        cleanup.apply(cleanup.plan())
        assert "court" not in describe_user_quotas(exchange.access(ADMIN))
