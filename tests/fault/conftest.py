"""Fault-tier fixtures: the integration tier's exchange on the session's single broker, and a
three-node cluster (:func:`kafka_trio`) with an exchange of its own (:func:`cluster_exchange`).

The cluster is started once per module that asks for it, from nothing, in a temporary
directory: three combined broker+controller JVMs on loopback with the session's SCRAM
users, TLS and ACLs, replication 3 and ``min.insync.replicas`` 2. The exchange on it is
shared by the module's tests too (starting a fan-out and four subscribers costs more than
most faults); each test publishes records of its own and audits everything published so
far. Every test finds all three nodes running and answering: whatever a test killed,
stopped or paused is brought back before the next one.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from services.embedded.broker import EmbeddedKafka
from services.embedded.libs import ensure_kafka_libs
from services.localstack import LocalStack
from tests.conftest import REPO_ROOT, TEST_USERS, KafkaCluster
from tests.integration.conftest import exchange, fanout_only, make_stack, started

__all__ = ["cluster_exchange", "exchange", "fanout_only", "kafka_trio", "make_stack"]

NODES = 3


@pytest.fixture(scope="module")
def kafka_trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A three-node KRaft cluster of the test users, for this module's tests."""
    passwords = {user: secrets.token_urlsafe(18) for user in TEST_USERS}
    cluster = EmbeddedKafka(
        tmp_path_factory.mktemp("kafka-trio"),
        passwords,
        libs_dir=ensure_kafka_libs(REPO_ROOT),
        nodes=NODES,
        heap="384m",
        tie_to_parent=True,
    )
    try:
        cluster.start(timeout=120)
        yield KafkaCluster(cluster.bootstrap, cluster.ca_file, passwords, embedded=cluster)
    finally:
        cluster.stop(grace=15)


@pytest.fixture(scope="module")
def _trio_exchange(kafka_trio: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with started(make_stack(kafka_trio, tmp_path_factory.mktemp("trio-home"), "t" + secrets.token_hex(4))) as stack:
        yield stack


@pytest.fixture
def cluster_exchange(kafka_trio: KafkaCluster, _trio_exchange: LocalStack) -> Iterator[LocalStack]:
    """The running exchange (fan-out, one subscriber per implementing agency) on the whole three-node cluster."""
    trio = kafka_trio.embedded
    assert trio is not None
    for node in trio.node_ids:
        if trio.node_pid(node) is None:
            trio.start_node(node)
    _trio_exchange.wait_healthy(timeout=120)
    try:
        yield _trio_exchange
    finally:
        trio.resume_all()
