"""Real Apache Kafka nodes (broker + KRaft controller each) run as plain JVM processes.

Concord's local setup and its integration tests run against the real broker, not
a fake, so that ACLs, SCRAM logins and TLS behave exactly as in production.  One
node is the default (``make run``, the integration tests); three form a cluster
for the fault tests and ``concord run --brokers 3``.  Every node is secured the way
a shared cluster would be:

* ``CLIENT`` listener: SASL_SSL with SCRAM-SHA-512, certificate from a local CA
  (:mod:`services.embedded.tls`).  This is the only listener clients use.
* ``BROKER`` (inter-broker) and ``CONTROLLER`` listeners: SASL_PLAINTEXT with a
  static PLAIN user ``broker`` whose password is random per work directory.
  KRaft keeps SCRAM credentials in the metadata log the controller serves, so
  the controller listener cannot authenticate with SCRAM itself.
* ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a
  principal without an ACL is refused; ``broker`` and ``concord-admin`` are
  super users.

With three or more nodes the cluster is durable the way production is: every
node is a voter of the controller quorum, replication factor 3 for new and
internal topics (offsets, transaction state log), ``min.insync.replicas=2``
and unclean leader election off, so an ``acks=all`` write survives the loss of
any one node and no write is lost to an out-of-sync replica.  With fewer nodes
each setting is what that many nodes can hold (:func:`replication_for`).

For fault tests a node can be killed (SIGKILL), stopped and started, paused
(SIGSTOP) and resumed (SIGCONT); :meth:`EmbeddedKafka.active_controller` and
:meth:`EmbeddedKafka.partition_leader` say where to aim.

The broker's own metrics (under-replicated partitions, request rates and
latencies, bytes in/out, ...) are served for Prometheus by the JMX exporter java
agent on a loopback port of each node's own (``ports.jmx``, ``metrics_url``),
keeping only what ``deploy/prometheus/kafka-jmx.yaml`` selects.

Everything lives under one work directory, which makes restarts keep data,
ports, credentials and the CA.  A single node keeps its files at the top; with
more nodes each has the same files in ``node-<id>/``::

    state.json          cluster id, ports of each node (client, broker, controller, jmx),
                        broker password, seeded users (0600)
    log4j2.properties   broker logging, into each node's logs/
    tls/                ca.pem, ca-key.pem, broker.pem (shared by the nodes)
    server.properties   rendered on every start (0600, holds the broker password)
    data/               log.dirs and the KRaft metadata log
    logs/               server.log (log4j2), kafka.out (JVM stdout/stderr), format.out
    broker.pid          PID of the running JVM
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

import httpx
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from services.core.errors import BrokerUnavailable, ConfigError
from services.core.principals import ADMIN, BROKER
from services.embedded import tls
from services.embedded.libs import classpath, jmx_exporter_jar
from services.files import write_private
from services.kafka_access import KafkaAccess

ADMIN_USER = ADMIN
BROKER_USER = BROKER
HOST = "127.0.0.1"
JMX_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "kafka-jmx.yaml"
_SCRAM_ITERATIONS = 8192
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
_SESSION_MS = 3000
_HEARTBEAT_MS = 500
# SCRAM seeds are passed to the storage tool as ``[name=...,password=...]``; keep
# both to characters that need no quoting there (token_urlsafe output fits).
_SAFE = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")

_LOG4J2 = """\
status = warn
name = concord-embedded-kafka
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


@dataclass(frozen=True)
class Ports:
    client: int
    broker: int
    controller: int
    jmx: int | None = None  # the JMX exporter's HTTP port; None until a start with the agent picks one


@dataclass(frozen=True)
class _State:
    """What must survive restarts of the same work directory."""

    cluster_id: str
    nodes: tuple[Ports, ...]  # node id i + 1 listens on nodes[i]
    broker_password: str
    users: dict[str, str]  # username -> sha256 of the password last applied

    @property
    def ports(self) -> Ports:
        return self.nodes[0]

    @classmethod
    def load(cls, path: Path) -> _State:
        raw = json.loads(path.read_text())
        nodes = tuple(Ports(**p) for p in raw.get("nodes") or [raw["ports"]])
        return cls(raw["cluster_id"], nodes, raw["broker_password"], raw["users"])

    def with_nodes(self, nodes: tuple[Ports, ...]) -> _State:
        return _State(self.cluster_id, nodes, self.broker_password, self.users)

    def with_users(self, users: dict[str, str]) -> _State:
        return _State(self.cluster_id, self.nodes, self.broker_password, users)

    def save(self, path: Path) -> None:
        doc = {
            "cluster_id": self.cluster_id,
            "ports": asdict(self.ports),
            "nodes": [asdict(p) for p in self.nodes],
            "broker_password": self.broker_password,
            "users": self.users,
        }
        data = json.dumps(doc, indent=2).encode()
        write_private(path, data)


@dataclass(frozen=True)
class Replication:
    """What a cluster of some size can hold: new and internal topics, ``acks=all`` writes."""

    factor: int
    min_insync: int


def replication_for(nodes: int) -> Replication:
    """Three replicas with two in sync from three nodes on; what fewer nodes can hold below that."""
    factor = min(nodes, 3)
    return Replication(factor=factor, min_insync=max(1, factor - 1))


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _free_ports(count: int) -> list[int]:
    """Ports the OS reports free right now; held open together so they differ."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _read_from(path: Path, offset: int = 0) -> list[str]:
    try:
        with path.open("rb") as fh:
            if offset <= path.stat().st_size:
                fh.seek(offset)
            return fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(_read_from(path)[-lines:])


_LOG_ERROR = re.compile(r"^\[[^\]]+\] (ERROR|FATAL) ")


def _first_errors(lines: list[str], limit: int = 5) -> list[str]:
    """ERROR lines with the exception message that follows each (not the stack)."""
    found: list[str] = []
    for i, line in enumerate(lines):
        if _LOG_ERROR.match(line):
            found.append(line)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if nxt and not nxt.startswith(("[", "\tat ")):
                found.append("    " + nxt)
            if len(found) >= 2 * limit:
                break
    return found


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise ConfigError("no Java runtime found: install JDK 17+ or set JAVA_HOME")
    return candidate


@dataclass
class _Node:
    """One JVM of the cluster: its folder and, while this object started it, its process."""

    node_id: int
    home: Path
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"


class EmbeddedKafka:
    """A KRaft Kafka of *nodes* combined broker+controller nodes in *workdir*, with SCRAM users from *users*.

    *users* maps SCRAM-SHA-512 user names to passwords and must contain
    ``concord-admin``.  They are written into the metadata log when the storage
    is formatted; users added or re-passworded on later starts are applied via
    the admin API.  Ports are picked on first start and kept for restarts; a
    work directory keeps the number of nodes it was made with.

    With *tie_to_parent* each JVM gets SIGTERM when the thread that started it
    dies (Linux ``PR_SET_PDEATHSIG`` via ``setpriv``), so a killed test run does
    not leave a broker behind.  Leave it off when the broker must outlive the
    starting process (scripts that start it and exit).

    With *jmx_exporter* (the default) each JVM runs the Prometheus JMX exporter
    agent (resolved beside *libs_dir*, see :func:`jmx_exporter_jar`) with the rules
    in *jmx_rules*, serving ``metrics_urls``.
    """

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str, str],
        *,
        libs_dir: Path,
        nodes: int = 1,
        client_port: int | None = None,
        heap: str = "512m",
        tie_to_parent: bool = False,
        jmx_exporter: bool = True,
        jmx_rules: Path = JMX_RULES,
    ) -> None:
        if ADMIN_USER not in users:
            raise ConfigError(f"users must include {ADMIN_USER}")
        if BROKER_USER in users:
            raise ConfigError(f"{BROKER_USER!r} is the internal broker principal, not a SCRAM user")
        for name, password in users.items():
            if not _SAFE.match(name) or not _SAFE.match(password):
                raise ConfigError("SCRAM user names and passwords must match [A-Za-z0-9._@+-]{1,128}", user=name)
        size = re.fullmatch(r"(\d+)([mMgG])", heap)
        if not size or int(size[1]) * (1024 if size[2] in "gG" else 1) < 128:
            raise ConfigError("heap must be at least 128m, written like 512m or 1g", heap=heap)
        if not 1 <= nodes <= 9:
            raise ConfigError("an embedded cluster has 1 to 9 nodes", nodes=nodes)
        self.workdir = Path(workdir).resolve()
        self.users = dict(users)
        self.libs_dir = Path(libs_dir).resolve()  # the JVMs run in their node folders
        self.heap = heap
        self.tie_to_parent = tie_to_parent
        self.jmx_exporter = jmx_exporter
        self.jmx_rules = Path(jmx_rules).resolve()
        self.replication = replication_for(nodes)
        self._requested_client_port = client_port
        self._state: _State | None = None
        self._nodes = {
            i: _Node(i, self.workdir if nodes == 1 else self.workdir / f"node-{i}") for i in range(1, nodes + 1)
        }
        self._paused: set[int] = set()
        self._admin_clients: dict[tuple[int, ...], AdminClient] = {}

    # -- paths and addresses -------------------------------------------------

    @property
    def node_ids(self) -> tuple[int, ...]:
        return tuple(self._nodes)

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    @property
    def logs_dir(self) -> Path:
        """The first node's logs (the only node's, by default)."""
        return self._nodes[1].logs_dir

    @property
    def log_file(self) -> Path:
        return self._nodes[1].log_file

    def node_log_file(self, node_id: int) -> Path:
        return self._node(node_id).log_file

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / tls.CA_CERT

    @property
    def ports(self) -> Ports:
        """The first node's ports."""
        return self._ensure_state().ports

    def node_ports(self, node_id: int) -> Ports:
        self._node(node_id)
        return self._ensure_state().nodes[node_id - 1]

    def server_properties(self, node_id: int) -> str:
        """The ``server.properties`` node ``node_id`` starts with (its ports fixed on first use)."""
        return self._server_properties(self._node(node_id), self._ensure_state())

    @property
    def bootstrap(self) -> str:
        """Every node's client listener: clients find the cluster through any node that is up."""
        return ",".join(f"{HOST}:{p.client}" for p in self._ensure_state().nodes)

    @property
    def metrics_address(self) -> str | None:
        """``host:port`` of the first node's JMX exporter (a Prometheus target), or None without the agent."""
        return self.metrics_addresses().get(1)

    @property
    def metrics_url(self) -> str | None:
        """The first node's JMX exporter endpoint, or None without the agent."""
        return f"http://{self.metrics_address}/metrics" if self.metrics_address else None

    def metrics_addresses(self) -> dict[int, str]:
        """node id -> ``host:port`` of its JMX exporter; empty without the agent."""
        if not self.jmx_exporter:
            return {}
        return {i: f"{HOST}:{p.jmx}" for i, p in zip(self._nodes, self._ensure_state().nodes, strict=True) if p.jmx}

    @property
    def pid(self) -> int | None:
        """PID of the first node's JVM if it is running (the only node's, by default)."""
        return self.node_pid(1)

    def node_pid(self, node_id: int) -> int | None:
        """PID of that node's JVM if one is running for this work directory."""
        node = self._node(node_id)
        if node.proc is not None and node.proc.poll() is None:
            return node.proc.pid
        return self._adoptable_pid(node)

    def running_nodes(self) -> tuple[int, ...]:
        return tuple(i for i in self._nodes if self.node_pid(i) is not None)

    @property
    def running(self) -> bool:
        return bool(self.running_nodes())

    def access(self, username: str) -> KafkaAccess:
        """Client settings for a seeded user on the CLIENT listeners."""
        if username not in self.users:
            raise ConfigError("not a user of this embedded broker", user=username)
        return KafkaAccess(bootstrap=self.bootstrap, ca_file=self.ca_file).as_principal(username, self.users[username])

    # -- lifecycle of the whole cluster -----------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Format if needed, launch every JVM and wait until concord-admin can log in and sees every node."""
        if self.running:
            raise ConfigError("a broker is already running for this work directory", pid=self.pid)
        deadline = time.monotonic() + timeout
        state = self._ensure_state()
        # A fresh leaf on every start never expires under a long-lived workdir;
        # the CA is reused, so clients keep trusting the same ca.pem.
        tls.issue_broker_cert(self.tls_dir, tls.DEFAULT_HOSTS)
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        for node in self._nodes.values():
            node.logs_dir.mkdir(parents=True, exist_ok=True)
            self._write_properties(node, state)
        for node in self._nodes.values():
            if not (node.home / "data" / "meta.properties").exists():
                self._format(node, state, deadline)
        for node in self._nodes.values():
            self._launch(node)
        try:
            self._wait_ready(deadline, set(self._nodes))
            self._apply_users(self._ensure_state())
            if len(self._nodes) > 1:
                self._prepare_coordinators(deadline)
        except BaseException:
            self.stop(grace=10.0)
            raise

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM every node (controlled shutdown), then SIGKILL what is left after *grace* seconds."""
        self.resume_all()
        pids = {i: pid for i in self._nodes if (pid := self.node_pid(i)) is not None}
        for pid in pids.values():
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for i, pid in pids.items():
            if not self._wait_exit(self._nodes[i], pid, max(0.1, end - time.monotonic())):
                os.kill(pid, signal.SIGKILL)
                self._wait_exit(self._nodes[i], pid, 10.0)
        for node in self._nodes.values():
            self._forget(node)

    def kill(self) -> None:
        """SIGKILL every node: a crash, for fault tests.  Data stays for a restart."""
        for i in self._nodes:
            self.kill_node(i)

    def restart(self, timeout: float = 90.0) -> None:
        self.stop()
        self.start(timeout)

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- one node at a time (fault tests) ---------------------------------------------

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (``kill -9``): no controlled shutdown, its data stays for a restart."""
        node = self._node(node_id)
        pid = self.node_pid(node_id)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(node, pid, 10.0)
        self._paused.discard(node_id)
        self._forget(node)

    def stop_node(self, node_id: int, grace: float = 30.0) -> None:
        """SIGTERM one node (controlled shutdown: its leaderships move first), SIGKILL after *grace*."""
        node = self._node(node_id)
        self.resume_node(node_id)
        pid = self.node_pid(node_id)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(node, pid, grace):
                os.kill(pid, signal.SIGKILL)
                self._wait_exit(node, pid, 10.0)
        self._forget(node)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one stopped or killed node; return once the cluster lists it as a live broker again."""
        node = self._node(node_id)
        if self.node_pid(node_id) is not None:
            raise ConfigError("that node is already running", node=node_id, pid=self.node_pid(node_id))
        self._write_properties(node, self._ensure_state())
        self._launch(node)
        try:
            self._wait_ready(time.monotonic() + timeout, {node_id})
        except BaseException:
            self.kill_node(node_id)
            raise

    def pause_node(self, node_id: int) -> None:
        """SIGSTOP one node: alive to the OS, silent to the cluster (a long GC pause, a hung disk)."""
        pid = self.node_pid(node_id)
        if pid is None:
            raise ConfigError("that node is not running", node=node_id)
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(node_id)

    def resume_node(self, node_id: int) -> None:
        """SIGCONT a node paused by :meth:`pause_node`."""
        pid = self.node_pid(node_id)
        if pid is not None and node_id in self._paused:
            os.kill(pid, signal.SIGCONT)
        self._paused.discard(node_id)

    def resume_all(self) -> None:
        for i in list(self._paused):
            self.resume_node(i)

    # -- where things are (fault tests) -------------------------------------------------

    def live_brokers(self, timeout: float = 10.0) -> tuple[int, ...]:
        """Node ids the cluster's metadata lists as live brokers (registered and not fenced)."""
        try:
            md = self._admin().list_topics(timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read cluster metadata: {exc}") from None
        return tuple(sorted(md.brokers))

    def partition_leader(self, topic: str, partition: int, timeout: float = 10.0) -> int:
        """The node id leading ``topic[partition]`` now (-1 while it has no leader)."""
        return self.partition_state(topic, partition, timeout)[0]

    def partition_state(self, topic: str, partition: int, timeout: float = 10.0) -> tuple[int, tuple[int, ...]]:
        """``(leader, in-sync replicas)`` of ``topic[partition]``, as the cluster's metadata says now."""
        try:
            md = self._admin().list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read metadata of {topic}: {exc}") from None
        t = md.topics.get(topic)
        if t is None or t.error is not None or partition not in t.partitions:
            raise BrokerUnavailable(
                f"no partition {partition} of {topic} in the metadata", error=None if t is None else t.error
            )
        p = t.partitions[partition]
        return p.leader, tuple(sorted(p.isrs))

    def active_controller(self, timeout: float = 10.0) -> int:
        """The node id of the active KRaft controller (the quorum's leader).

        Read from each running node's ``ActiveControllerCount`` (1 on the active
        controller, 0 elsewhere) through its JMX exporter, so it needs the agent.
        Paused nodes are not asked (they cannot answer); raises when no node says
        it is active before *timeout*, which is also what a quorum without a leader looks like.
        """
        urls = {i: f"http://{a}/metrics" for i, a in self.metrics_addresses().items()}
        if not urls:
            raise ConfigError("active_controller reads the JMX exporter: start the cluster with jmx_exporter=True")
        deadline = time.monotonic() + timeout
        while True:
            for i in self.running_nodes():
                if i in self._paused:
                    continue
                if _active_controller_count(urls[i]) == 1:
                    return i
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"no node reports itself the active controller within {timeout:.0f}s")
            time.sleep(0.2)

    # -- internals ---------------------------------------------------------------

    def _node(self, node_id: int) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            raise ConfigError("no such node in this cluster", node=node_id, nodes=list(self._nodes))
        return node

    def _ensure_state(self) -> _State:
        if self._state is not None:
            return self._state
        path = self.workdir / "state.json"
        count = len(self._nodes)
        if path.exists():
            state = _State.load(path)
            wanted = self._requested_client_port
            if wanted is not None and wanted != state.ports.client:
                raise ConfigError(
                    "work directory was set up with another client port",
                    workdir=self.workdir,
                    port=state.ports.client,
                    requested=wanted,
                )
            if len(state.nodes) != count:
                raise ConfigError(
                    f"work directory holds a cluster of {len(state.nodes)} node(s), not {count}: "
                    "use another directory (or remove it) to change the number of nodes",
                    workdir=self.workdir,
                )
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            wanted = self._requested_client_port
            picked = iter(_free_ports(4 * count))
            nodes = []
            for i in range(count):
                client = wanted if (wanted and i == 0) else next(picked)
                nodes.append(Ports(client=client, broker=next(picked), controller=next(picked), jmx=next(picked)))
            state = _State(
                cluster_id=base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                nodes=tuple(nodes),
                broker_password=secrets.token_urlsafe(24),
                users={},
            )
            state.save(path)
        if self.jmx_exporter and any(p.jmx is None for p in state.nodes):  # a work directory from before the agent
            busy = {q for p in state.nodes for q in (p.client, p.broker, p.controller, p.jmx)}
            spare = iter(p for p in _free_ports(4 * count + 4) if p not in busy)
            state = state.with_nodes(
                tuple(
                    p if p.jmx is not None else Ports(p.client, p.broker, p.controller, next(spare))
                    for p in state.nodes
                )
            )
            state.save(path)
        self._state = state
        return state

    def _server_properties(self, node: _Node, state: _State) -> str:
        p, pw = state.nodes[node.node_id - 1], state.broker_password
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{BROKER_USER}" password="{pw}" user_{BROKER_USER}="{pw}";'
        )
        voters = ",".join(f"{i}@{HOST}:{q.controller}" for i, q in enumerate(state.nodes, start=1))
        factor, min_isr = str(self.replication.factor), str(self.replication.min_insync)
        conf = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"CLIENT://{HOST}:{p.client},BROKER://{HOST}:{p.broker},CONTROLLER://{HOST}:{p.controller}",
            "advertised.listeners": f"CLIENT://{HOST}:{p.client},BROKER://{HOST}:{p.broker}",
            "listener.security.protocol.map": "CLIENT:SASL_SSL,BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "BROKER",
            "controller.listener.names": "CONTROLLER",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.broker.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.broker.plain.sasl.jaas.config": plain,
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.client.scram-sha-512.sasl.jaas.config": _SCRAM_LOGIN,
            "listener.name.client.ssl.keystore.type": "PEM",
            "listener.name.client.ssl.keystore.location": str(self.tls_dir / tls.BROKER_PEM),
            "listener.name.client.ssl.truststore.type": "PEM",
            "listener.name.client.ssl.truststore.location": str(self.ca_file),
            "listener.name.client.ssl.client.auth": "none",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{BROKER_USER};User:{ADMIN_USER}",
            "log.dirs": str(node.home / "data"),
            "num.partitions": "1",
            "default.replication.factor": factor,
            "min.insync.replicas": min_isr,
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": factor,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": factor,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": factor,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            # A restarted controller gives every registered broker a fresh session,
            # so the restarted broker cannot re-register until that session expires
            # (9 s by default).  A short session keeps restarts quick, and a node that
            # stops answering (killed, paused) is fenced and leaves the ISRs quickly.
            "broker.session.timeout.ms": str(_SESSION_MS),
            "broker.heartbeat.interval.ms": str(_HEARTBEAT_MS),
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
        }
        return "".join(f"{k}={v}\n" for k, v in conf.items())

    def _write_properties(self, node: _Node, state: _State) -> None:
        node.home.mkdir(parents=True, exist_ok=True)
        write_private(node.properties, self._server_properties(node, state))

    def _jvm(self, node: _Node, main: str, *, heap: str, options: tuple[str, ...] = ()) -> list[str]:
        return [
            _java(),
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dkafka.logs.dir={node.logs_dir}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            *options,
            "-cp",
            classpath(self.libs_dir),
            main,
        ]

    def format_command(self, node_id: int, state: _State) -> tuple[list[str], list[str]]:
        """Node ``node_id``'s storage-tool command line, and the arguments it reads from its argument file.

        The SCRAM seeds carry passwords, so they never go on the command line (``ps`` shows
        every process's arguments to every user): the JVM reads them, with the rest of its
        arguments, from a file only this user can read (``java @file``), removed after use.
        """
        node = self._nodes[node_id]
        args = self._jvm(node, "kafka.tools.StorageTool", heap="256m")[1:] + [
            "format",
            # "=" form: a urlsafe-base64 id may start with "-" and read as an option.
            f"--cluster-id={state.cluster_id}",
            "--config",
            str(node.properties),
        ]
        for name, password in self.users.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return [_java(), f"@{node.home / 'format.args'}"], args

    def _format(self, node: _Node, state: _State, deadline: float) -> None:
        cmd, args = self.format_command(node.node_id, state)
        argfile = node.home / "format.args"
        # One argument per line, quoted: the launcher's argument-file syntax.
        write_private(argfile, "".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"\n' for a in args))
        out = node.logs_dir / "format.out"
        try:
            with out.open("wb") as fh:
                try:
                    done = subprocess.run(  # noqa: S603 - the JDK's launcher and our own argument file
                        cmd,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        check=False,
                        timeout=max(1.0, deadline - time.monotonic()),
                    )
                except subprocess.TimeoutExpired as exc:
                    raise BrokerUnavailable("formatting Kafka storage timed out", log=out) from exc
        finally:
            argfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ConfigError(
                "formatting Kafka storage failed:\n" + _tail(out), exit_code=done.returncode, node=node.node_id
            )
        state = self._ensure_state().with_users({n: _digest(p) for n, p in self.users.items()})
        state.save(self.workdir / "state.json")
        self._state = state

    def _agent_options(self, node_id: int = 1) -> tuple[str, ...]:
        """``-javaagent:`` for the JMX exporter, bound to loopback like the listeners."""
        if not self.jmx_exporter:
            return ()
        jar = jmx_exporter_jar(self.libs_dir)
        if not jar.is_file():
            raise ConfigError(
                "the Prometheus JMX exporter agent is missing: run `make kafka` (or pass jmx_exporter=False)",
                expected=jar,
            )
        if not self.jmx_rules.is_file():
            raise ConfigError("the JMX exporter rules file is missing", path=self.jmx_rules)
        return (f"-javaagent:{jar}={HOST}:{self.node_ports(node_id).jmx}:{self.jmx_rules}",)

    def _launch(self, node: _Node) -> None:
        cmd = self._jvm(node, "kafka.Kafka", heap=self.heap, options=self._agent_options(node.node_id)) + [
            str(node.properties)
        ]
        node.log_offset = node.log_file.stat().st_size if node.log_file.exists() else 0
        setpriv = shutil.which("setpriv")
        if self.tie_to_parent and setpriv:
            cmd = [setpriv, "--pdeathsig", "TERM", "--"] + cmd
        with (node.logs_dir / "kafka.out").open("ab") as out:
            node.proc = subprocess.Popen(  # noqa: S603 - the JVM and arguments are ours
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=node.home,
                start_new_session=True,
            )
        node.pid_file.write_text(f"{node.proc.pid}\n")

    def _admin(self) -> AdminClient:
        """An admin client bootstrapped from the nodes that can answer now (running, not paused).

        One per set of such nodes, kept (librdkafka must not be torn down with requests in
        flight): a client that knows only a paused node's peers does not wait on it, while the
        paused node's own connections stay open.
        """
        able = tuple(i for i in self.running_nodes() if i not in self._paused) or tuple(self._nodes)
        client = self._admin_clients.get(able)
        if client is None:
            bootstrap = ",".join(f"{HOST}:{self.node_ports(i).client}" for i in able)
            conf = self.access(ADMIN_USER).model_copy(update={"bootstrap": bootstrap}).confluent_config()
            conf.update({"reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 500})
            # librdkafka logs every refused connection (a node down on purpose); failures reach callers.
            client = self._admin_clients[able] = AdminClient(conf, logger=_rdkafka_log)
        return client

    def _wait_ready(self, deadline: float, expected: set[int]) -> None:
        """Ready means a SCRAM login as concord-admin over TLS gets metadata listing every *expected* node."""
        admin: AdminClient | None = None
        last = "client port not open"
        while time.monotonic() < deadline:
            for i in expected:
                node = self._nodes[i]
                if node.proc is None or node.proc.poll() is not None:
                    code = None if node.proc is None else node.proc.returncode
                    tail = self._log_tail(node)
                    self._forget(node)
                    raise BrokerUnavailable(
                        f"Kafka exited during startup (exit code {code}):\n{tail}",
                        workdir=node.home,
                    )
            if admin is None and any(_port_open(self.node_ports(i).client) for i in expected):
                admin = self._admin()
            if admin is not None:
                try:
                    md = admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                    if expected <= set(md.brokers):
                        return
                    last = f"live brokers {sorted(md.brokers)}, waiting for {sorted(expected)}"
                except KafkaException as exc:
                    last = str(exc)
                else:
                    return
            time.sleep(0.2)
        raise BrokerUnavailable(
            f"Kafka did not accept a SCRAM login in time ({last}):\n"
            + "\n".join(self._log_tail(self._nodes[i]) for i in sorted(expected)),
            workdir=self.workdir,
        )

    def _prepare_coordinators(self, deadline: float) -> None:
        """Create the offsets and transaction state topics now, and wait until every partition is fully in sync.

        Brokers create them on first use (a consumer group's coordinator, a transactional
        producer); on a fresh cluster of several nodes that takes seconds of elections during
        which the first clients' commits stall, so a cluster counts as started once its
        coordinators are ready.
        """
        access = self.access(ADMIN_USER)
        producer = Producer(
            {**access.confluent_producer_config(), "transactional.id": "concord-embedded-start"}, logger=_rdkafka_log
        )
        consumer = Consumer(
            {**access.confluent_config(), "group.id": "concord-embedded-start", "enable.auto.commit": False},
            logger=_rdkafka_log,
        )
        internal = ("__consumer_offsets", "__transaction_state")
        last, initialised = "not started", False
        try:
            while time.monotonic() < deadline:
                try:
                    if not initialised:
                        producer.init_transactions(5.0)
                        initialised = True
                    consumer.committed([TopicPartition(internal[0], 0)], timeout=5.0)  # asks the coordinator
                    md = self._admin().list_topics(timeout=5)
                except KafkaException as exc:
                    last = str(exc)
                    time.sleep(0.5)
                    continue
                ready = {
                    t: t in md.topics
                    and bool(md.topics[t].partitions)
                    and all(
                        p.leader >= 0 and len(p.isrs) == self.replication.factor
                        for p in md.topics[t].partitions.values()
                    )
                    for t in internal
                }
                if all(ready.values()):
                    return
                last = f"internal topics ready: {ready}"
                time.sleep(0.5)
        finally:
            consumer.close()
            producer.flush(5.0)
        raise BrokerUnavailable(f"the cluster's coordinators were not ready in time ({last})", workdir=self.workdir)

    def _apply_users(self, state: _State) -> None:
        """Create or re-password users that differ from what the metadata log holds."""
        changed = {n: p for n, p in self.users.items() if state.users.get(n) != _digest(p)}
        if not changed:
            return
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, _SCRAM_ITERATIONS)
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(n, info, p.encode()) for n, p in changed.items()
        ]
        admin = self._admin()
        try:
            for fut in admin.alter_user_scram_credentials(upserts).values():
                fut.result(timeout=30)
        except (KafkaException, TimeoutError) as exc:
            raise BrokerUnavailable(f"could not set SCRAM users: {exc}", users=sorted(changed)) from exc
        state = state.with_users({**state.users, **{n: _digest(p) for n, p in changed.items()}})
        state.save(self.workdir / "state.json")
        self._state = state

    def _log_tail(self, node: _Node) -> str:
        """Errors of this launch first (the cause), then the last lines of both logs."""
        lines = _read_from(node.log_file, node.log_offset)
        parts = [
            "\n".join(_first_errors(lines)),
            "\n".join(lines[-15:]),
            _tail(node.logs_dir / "kafka.out", 15),
        ]
        return "\n...\n".join(part for part in parts if part)

    def _adoptable_pid(self, node: _Node) -> int | None:
        """PID from broker.pid, only if that process is this node's broker."""
        try:
            pid = int(node.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if b"kafka.Kafka" in cmdline and str(node.properties).encode() in cmdline else None

    def _wait_exit(self, node: _Node, pid: int, timeout: float) -> bool:
        if node.proc is not None and node.proc.pid == pid:
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not Path(f"/proc/{pid}").exists():
                return True
            time.sleep(0.1)
        return False

    def _forget(self, node: _Node) -> None:
        if node.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(0)
        node.proc = None
        with contextlib.suppress(FileNotFoundError):
            node.pid_file.unlink()


_rdkafka_log = logging.getLogger("concord.rdkafka")
_ACTIVE_CONTROLLER = re.compile(r"^kafka_controller_kafkacontroller_activecontrollercount\S*\s+([0-9.]+)", re.M)


def _active_controller_count(url: str) -> int | None:
    """``ActiveControllerCount`` from one node's JMX exporter, or None when it does not answer."""
    try:
        body = httpx.get(url, timeout=2.0).text
    except httpx.HTTPError:
        return None
    found = _ACTIVE_CONTROLLER.search(body)
    return int(float(found[1])) if found else None
