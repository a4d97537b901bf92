"""A three-node cluster loses a broker, its controller, or a broker's voice, under load.

Each test runs the whole exchange on :func:`~tests.fault.conftest.kafka_trio` (replication 3,
``min.insync.replicas`` 2, unclean leader election off): two agencies publish through the
real adapter (``concord publish -``) at a steady rate, the fan-out routes, every implementing
agency's subscriber applies and answers with receipts. Mid-publish one node is killed
(``kill -9``), stopped for a minute, or paused (SIGSTOP) until the cluster has dropped it from
the in-sync replicas. Each ends with every published record in its list topic exactly once
and accepted, every agency's store holding exactly what the records require (the audit is
CLEAN against every store), and no directive applied twice (receipts).

Each test prints the longest stall of end-to-end traffic around its fault and writes its
figures to ``<tmp>/<test>.json`` (the path is printed): ``longest_gap_s`` is the longest
time no subscriber applied a directive while records kept coming, ``max_latency_s`` the
slowest listing from hand-over to the adapter to its first directive applied.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.core.principals import ADMIN
from services.demo import cli_publisher, run_scenario, table
from services.embedded.broker import EmbeddedKafka
from services.governance.acl import Governance
from services.governance.admin import set_topic_configs
from services.localstack import LocalStack
from tests.conftest import KafkaCluster
from tests.fault.support import (
    StreamingPublisher,
    applications,
    applied_twice,
    list_records,
    log_tails,
    report,
    stall_around,
    steady_records,
    stored_twice,
    wait_clean,
)
from tests.support import wait_for

pytestmark = pytest.mark.fault

RATE = 8.0  # records per second per publishing agency
PUBLISHERS = ("court", "market")
TAIL_S = 5.0  # load kept up after the cluster is whole again
DEGRADED_S = 6.0  # load on two nodes after a kill, before the node comes back


def _trio(cluster: KafkaCluster) -> EmbeddedKafka:
    assert cluster.embedded is not None
    return cluster.embedded


def _list_topics(stack: LocalStack) -> list[str]:
    return [stack.world.topic_name("lists", a, namespace=stack.namespace) for a in PUBLISHERS]


def under_load(stack: LocalStack, tmp_path: Path, name: str, fault: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Publish from every publisher at RATE, run ``fault`` mid-publish, keep the load TAIL_S longer, then prove it."""
    run = secrets.token_hex(3)
    pubs = [StreamingPublisher(stack, a, steady_records(a, run, int(RATE * 400)), RATE).start() for a in PUBLISHERS]
    try:
        try:
            wait_for("directives to flow", lambda: applications(stack), until=lambda a: len(a) >= 20, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tails(stack)}") from None
        fault_at = time.time()
        done = fault()
        time.sleep(TAIL_S)
        load_until = time.time()
        codes = [p.finish() for p in pubs]
    finally:
        for p in pubs:
            p.kill()
    assert codes == [0] * len(pubs), f"an adapter failed:\n{log_tails(stack)}"
    before = list_records(stack)
    published = sum(p.fed for p in pubs)
    ours = {e: n for e, n in before.items() if e.split(":")[1].startswith(f"{run}-")}
    assert len(ours) == published and set(ours.values()) == {1}  # each record once, none lost
    audit = wait_clean(stack, expect_events=sum(before.values()))  # this test's and the earlier tests' records
    assert audit.refused_events == 0
    assert applied_twice(stack) == {}
    assert stored_twice(stack) == {}
    stall = stall_around(stack, pubs, fault_at, load_until)
    applied = [a for a in applications(stack) if a[2].startswith(f"{run}-")]
    figures = {
        "test": name,
        **done,
        **stall.to_json(),
        "records_published": published,
        "records_accepted": published,  # each once in its list topic, and the audit refused none
        "records_accepted_in_namespace": audit.events,
        "directives_applied": len(applied),
        "by_subscriber": {a: sum(1 for _, who, _ in applied if who == a) for a in sorted({w for _, w, _ in applied})},
        "load_s": round(load_until - fault_at, 1),
        "rate_per_publisher": RATE,
    }
    report(tmp_path, name, figures)
    return figures


def test_the_demo_holds_on_three_brokers(kafka_trio: KafkaCluster, cluster_exchange: LocalStack) -> None:
    """What ``concord run --brokers 3`` plays: ``make demo``'s expectations, on the replicated cluster."""
    trio = _trio(kafka_trio)
    topic = _list_topics(cluster_exchange)[0]
    assert trio.partition_state(topic, 0)[1] == (1, 2, 3)  # three replicas, all in sync
    clients = {agency: cluster_exchange.check_client(agency) for agency in cluster_exchange.subscriber_urls()}
    try:
        # The person's listing must still be in its period when it reaches the subscribers: on a fresh
        # three-broker cluster sharing two cores with the rest of the suite, that can take well over 12 s.
        results = run_scenario(
            clients, cli_publisher(cluster_exchange.home), cluster_exchange.home / "demo", person_period=40, timeout=90
        )
    finally:
        for c in clients.values():
            c.close()
    assert all(e.ok for e in results), f"{table(results)}\n{log_tails(cluster_exchange)}"


def test_acl_plan_checks_the_declared_replication_on_three_brokers(
    kafka_trio: KafkaCluster, cluster_exchange: LocalStack
) -> None:
    trio, stack = _trio(kafka_trio), cluster_exchange
    gov = Governance(
        access=stack.access(ADMIN),
        world=stack.world,
        namespace=stack.namespace,
        credentials_dir=stack.credentials_dir,
        brokers=stack.brokers,
    )
    plan = gov.plan()
    assert (plan.topics, plan.fitting) == ((), None)  # three replicas, two in sync, as topics/ declares
    topic = _list_topics(stack)[1]
    set_topic_configs(gov.admin, {topic: {"min.insync.replicas": "1"}})
    try:
        # a broker answers DescribeConfigs from its copy of the metadata, a moment after the controller
        (change,) = wait_for("the changed config in the plan", lambda: gov.plan().topics, timeout=30)
        assert (change.action, change.name, change.config) == ("alter", topic, {"min.insync.replicas": "2"})
    finally:
        set_topic_configs(gov.admin, {topic: {"min.insync.replicas": "2"}})
    assert trio.partition_state(topic, 0)[1] == (1, 2, 3)


def test_kill_9_of_the_leader_of_a_list_partition_mid_publish(
    kafka_trio: KafkaCluster, cluster_exchange: LocalStack, tmp_path: Path
) -> None:
    trio, topic = _trio(kafka_trio), _list_topics(cluster_exchange)[0]

    def fault() -> dict[str, Any]:
        leader = trio.partition_leader(topic, 0)
        t0 = time.monotonic()
        trio.kill_node(leader)
        new = wait_for("a new leader", lambda: (lead := trio.partition_leader(topic, 0)) not in (leader, -1) and lead)
        elected = time.monotonic() - t0
        time.sleep(DEGRADED_S)
        trio.start_node(leader)
        return {
            "killed_node": leader,
            "new_leader": new,
            "leader_elected_s": round(elected, 2),
            "down_s": round(time.monotonic() - t0, 1),
        }

    figures = under_load(cluster_exchange, tmp_path, "kill_leader", fault)
    assert figures["new_leader"] != figures["killed_node"]


def test_kill_9_of_the_active_controller(
    kafka_trio: KafkaCluster, cluster_exchange: LocalStack, tmp_path: Path
) -> None:
    trio = _trio(kafka_trio)

    def fault() -> dict[str, Any]:
        controller = trio.active_controller()
        t0 = time.monotonic()
        trio.kill_node(controller)
        new = wait_for("a new active controller", lambda: trio.active_controller(timeout=30))
        elected = time.monotonic() - t0
        time.sleep(DEGRADED_S)
        trio.start_node(controller)
        return {
            "killed_node": controller,
            "new_controller": new,
            "controller_elected_s": round(elected, 2),
            "down_s": round(time.monotonic() - t0, 1),
        }

    figures = under_load(cluster_exchange, tmp_path, "kill_controller", fault)
    assert figures["new_controller"] != figures["killed_node"]


def test_one_broker_stopped_for_a_minute_and_brought_back(
    kafka_trio: KafkaCluster, cluster_exchange: LocalStack, tmp_path: Path
) -> None:
    trio, topics = _trio(kafka_trio), _list_topics(cluster_exchange)

    def fault() -> dict[str, Any]:
        node = trio.partition_leader(topics[0], 1)
        trio.stop_node(node)  # SIGTERM: a controlled shutdown hands its leaderships over first
        time.sleep(60)
        t0 = time.monotonic()
        trio.start_node(node)
        wait_for(
            "the node back in every ISR",
            lambda: all(node in trio.partition_state(t, p)[1] for t in topics for p in range(3)),
        )
        return {"stopped_node": node, "down_s": 60, "back_in_sync_s": round(time.monotonic() - t0, 2)}

    under_load(cluster_exchange, tmp_path, "stop_broker_60s", fault)


def test_a_paused_broker_falls_out_of_the_isr_and_comes_back(
    kafka_trio: KafkaCluster, cluster_exchange: LocalStack, tmp_path: Path
) -> None:
    trio, topics = _trio(kafka_trio), _list_topics(cluster_exchange)

    def fault() -> dict[str, Any]:
        controller = trio.active_controller()
        node = next(n for n in trio.node_ids if n != controller)  # the controller's loss is the test above
        t0 = time.monotonic()
        trio.pause_node(node)
        wait_for(
            "the paused node out of every ISR",
            lambda: all(node not in trio.partition_state(t, p)[1] for t in topics for p in range(3)),
            timeout=90,
        )
        out = time.monotonic() - t0
        time.sleep(5)
        trio.resume_node(node)
        t1 = time.monotonic()
        wait_for(
            "the node back in every ISR",
            lambda: all(node in trio.partition_state(t, p)[1] for t in topics for p in range(3)),
            timeout=90,
        )
        return {
            "paused_node": node,
            "out_of_isr_after_s": round(out, 2),
            "paused_s": round(t1 - t0, 2),
            "back_in_sync_s": round(time.monotonic() - t1, 2),
        }

    under_load(cluster_exchange, tmp_path, "pause_broker", fault)
