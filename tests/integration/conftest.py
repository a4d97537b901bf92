"""A whole exchange on the session broker: topics, ACLs, keys, fan-out and subscribers.

Each test that asks for ``exchange`` gets its own namespace (topics, consumer
groups, the fan-out's state), its own home folder (credentials, keys, stores) and
its own processes, all of which are stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.localstack import LocalStack
from tests.conftest import KafkaCluster


def make_stack(cluster: KafkaCluster, home: Path, namespace: str, world_dir: Path | None = None) -> LocalStack:
    stack = LocalStack.at(home, namespace=namespace, world_dir=world_dir)
    stack.write_config(cluster.bootstrap, cluster.ca_file, brokers=cluster.brokers)
    stack.write_credentials(cluster.passwords)
    stack.ensure_keys()
    stack.provision()
    return stack


@contextmanager
def started(stack: LocalStack, start: Callable[[LocalStack], object] = LocalStack.start_all) -> Iterator[LocalStack]:
    """``stack`` with the processes ``start`` launches, healthy; every one of them is stopped on leaving."""
    try:
        start(stack)
        stack.wait_healthy(timeout=120)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def exchange(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> Iterator[LocalStack]:
    """A running exchange: the fan-out and one subscriber per implementing agency."""
    with started(make_stack(kafka_cluster, tmp_path / "home", unique_ns)) as stack:
        yield stack


@pytest.fixture
def fanout_only(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> Iterator[LocalStack]:
    """Topics, ACLs and keys in a fresh namespace, with only the fan-out running."""
    with started(make_stack(kafka_cluster, tmp_path / "home", unique_ns), LocalStack.start_fanout) as stack:
        yield stack
