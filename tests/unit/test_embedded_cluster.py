"""How the embedded Kafka lays out and configures one node or a cluster of three (no JVM started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.core.errors import ConfigError
from services.embedded.broker import EmbeddedKafka, Replication, replication_for

pytestmark = pytest.mark.unit


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def _cluster(tmp_path: Path, nodes: int) -> EmbeddedKafka:
    return EmbeddedKafka(tmp_path / "kafka", {"concord-admin": "pw"}, libs_dir=tmp_path / "libs", nodes=nodes)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [(1, Replication(1, 1)), (2, Replication(2, 1)), (3, Replication(3, 2)), (5, Replication(3, 2))],
)
def test_replication_is_what_the_cluster_can_hold(nodes: int, expected: Replication) -> None:
    assert replication_for(nodes) == expected


def test_three_nodes_form_one_quorum_with_durable_defaults(tmp_path: Path) -> None:
    kafka = _cluster(tmp_path, 3)
    props = [_props(kafka.server_properties(i)) for i in (1, 2, 3)]
    voters = {p["controller.quorum.voters"] for p in props}
    assert len(voters) == 1
    assert voters.pop() == ",".join(f"{i}@127.0.0.1:{kafka.node_ports(i).controller}" for i in (1, 2, 3))
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    for p in props:
        assert p["process.roles"] == "broker,controller"
        assert p["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        assert p["allow.everyone.if.no.acl.found"] == "false"
        assert p["unclean.leader.election.enable"] == "false"
        assert (p["default.replication.factor"], p["min.insync.replicas"]) == ("3", "2")
        assert (p["offsets.topic.replication.factor"], p["transaction.state.log.replication.factor"]) == ("3", "3")
        assert p["transaction.state.log.min.isr"] == "2"
    ports = {q for i in (1, 2, 3) for q in vars(kafka.node_ports(i)).values()}
    assert len(ports) == 12  # every listener and exporter of every node on a port of its own
    assert kafka.bootstrap == ",".join(f"127.0.0.1:{kafka.node_ports(i).client}" for i in (1, 2, 3))
    assert {p["log.dirs"] for p in props} == {str(kafka.workdir / f"node-{i}" / "data") for i in (1, 2, 3)}


def test_one_node_keeps_its_files_at_the_top_and_replication_one(tmp_path: Path) -> None:
    kafka = _cluster(tmp_path, 1)
    p = _props(kafka.server_properties(1))
    assert p["log.dirs"] == str(kafka.workdir / "data")
    assert (p["default.replication.factor"], p["min.insync.replicas"]) == ("1", "1")
    saved = json.loads((kafka.workdir / "state.json").read_text())
    assert saved["ports"] == saved["nodes"][0]


def test_a_work_directory_keeps_its_number_of_nodes(tmp_path: Path) -> None:
    _cluster(tmp_path, 3).server_properties(1)  # lays out the work directory
    with pytest.raises(ConfigError, match="cluster of 3 node"):
        _cluster(tmp_path, 1).bootstrap  # noqa: B018 - reading it loads the state
