"""One real Apache Kafka node (broker + KRaft controller) run as a plain JVM process.

Concord's local setup and its integration tests run against the real broker, not
a fake, so that ACLs, SCRAM logins and TLS behave exactly as in production.  The
node is secured the way a shared cluster would be:

* ``CLIENT`` listener: SASL_SSL with SCRAM-SHA-512, certificate from a local CA
  (:mod:`services.embedded.tls`).  This is the only listener clients use.
* ``BROKER`` (inter-broker) and ``CONTROLLER`` listeners: SASL_PLAINTEXT with a
  static PLAIN user ``broker`` whose password is random per work directory.
  KRaft keeps SCRAM credentials in the metadata log the controller serves, so
  the controller listener cannot authenticate with SCRAM itself.
* ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a
  principal without an ACL is refused; ``broker`` and ``concord-admin`` are
  super users.

The broker's own metrics (under-replicated partitions, request rates and
latencies, bytes in/out, ...) are served for Prometheus by the JMX exporter java
agent on a loopback port of its own (``ports.jmx``, ``metrics_url``), keeping
only what ``deploy/prometheus/kafka-jmx.yaml`` selects.

Everything lives under one work directory, which makes restarts keep data,
ports, credentials and the CA::

    state.json          cluster id, ports (client, broker, controller, jmx), broker password,
                        seeded users (0600)
    server.properties   rendered on every start (0600, holds the broker password)
    log4j2.properties   broker logging, into logs/
    tls/                ca.pem, ca-key.pem, broker.pem
    data/               log.dirs and the KRaft metadata log
    logs/               server.log (log4j2), kafka.out (JVM stdout/stderr), format.out
    broker.pid          PID of the running JVM
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
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

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._scram import (  # the package re-exports them without declaring it
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from services.core.errors import BrokerUnavailable, ConfigError
from services.core.principals import ADMIN, BROKER
from services.embedded import tls
from services.embedded.libs import classpath, jmx_exporter_jar
from services.kafka_access import KafkaAccess

ADMIN_USER = ADMIN
BROKER_USER = BROKER
HOST = "127.0.0.1"
JMX_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "kafka-jmx.yaml"
_NODE_ID = 1
_SCRAM_ITERATIONS = 8192
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
    ports: Ports
    broker_password: str
    users: dict[str, str]  # username -> sha256 of the password last applied

    @classmethod
    def load(cls, path: Path) -> _State:
        raw = json.loads(path.read_text())
        return cls(raw["cluster_id"], Ports(**raw["ports"]), raw["broker_password"], raw["users"])

    def with_ports(self, ports: Ports) -> _State:
        return _State(self.cluster_id, ports, self.broker_password, self.users)

    def save(self, path: Path) -> None:
        data = json.dumps(asdict(self), indent=2).encode()
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(path.with_suffix(".tmp"), path)


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


class EmbeddedKafka:
    """A single-node KRaft Kafka in *workdir*, with SCRAM users from *users*.

    *users* maps SCRAM-SHA-512 user names to passwords and must contain
    ``concord-admin``.  They are written into the metadata log when the storage
    is formatted (read by the storage tool from a private argument file, never
    from its command line); users added or re-passworded on later starts are
    applied via the admin API.  Ports are picked on first start and kept for
    restarts.

    With *tie_to_parent* the JVM gets SIGTERM when the thread that started it
    dies (Linux ``PR_SET_PDEATHSIG`` via ``setpriv``), so a killed test run does
    not leave a broker behind.  Leave it off when the broker must outlive the
    starting process (scripts that start it and exit).

    With *jmx_exporter* (the default) the JVM runs the Prometheus JMX exporter
    agent (resolved beside *libs_dir*, see :func:`jmx_exporter_jar`) with the rules
    in *jmx_rules*, serving ``metrics_url``.
    """

    def __init__(
        self,
        workdir: Path,
        users: Mapping[str, str],
        *,
        libs_dir: Path,
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
        self.workdir = Path(workdir).resolve()
        self.users = dict(users)
        self.libs_dir = Path(libs_dir).resolve()  # the JVM runs in workdir
        self.heap = heap
        self.tie_to_parent = tie_to_parent
        self.jmx_exporter = jmx_exporter
        self.jmx_rules = Path(jmx_rules).resolve()
        self._requested_client_port = client_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._state: _State | None = None
        self._log_offset = 0

    # -- paths and addresses -------------------------------------------------

    @property
    def tls_dir(self) -> Path:
        return self.workdir / "tls"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / tls.CA_CERT

    @property
    def ports(self) -> Ports:
        return self._ensure_state().ports

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.ports.client}"

    @property
    def metrics_address(self) -> str | None:
        """``host:port`` of the JMX exporter (a Prometheus target), or None without the agent."""
        port = self.ports.jmx if self.jmx_exporter else None
        return f"{HOST}:{port}" if port else None

    @property
    def metrics_url(self) -> str | None:
        """The JMX exporter's Prometheus endpoint, or None without the agent."""
        return f"http://{self.metrics_address}/metrics" if self.metrics_address else None

    @property
    def pid(self) -> int | None:
        """PID of the broker JVM if one is running for this work directory."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return self._adoptable_pid()

    @property
    def running(self) -> bool:
        return self.pid is not None

    def access(self, username: str) -> KafkaAccess:
        """Client settings for a seeded user on the CLIENT listener."""
        if username not in self.users:
            raise ConfigError("not a user of this embedded broker", user=username)
        return KafkaAccess(bootstrap=self.bootstrap, ca_file=self.ca_file).as_principal(username, self.users[username])

    # -- lifecycle -------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Format if needed, launch the JVM and wait until concord-admin can log in."""
        if self.running:
            raise ConfigError("a broker is already running for this work directory", pid=self.pid)
        deadline = time.monotonic() + timeout
        state = self._ensure_state()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        # A fresh leaf on every start never expires under a long-lived workdir;
        # the CA is reused, so clients keep trusting the same ca.pem.
        tls.issue_broker_cert(self.tls_dir, tls.DEFAULT_HOSTS)
        self._write_configs(state)
        if not (self.workdir / "data" / "meta.properties").exists():
            self._format(state, deadline)
        self._launch()
        try:
            self._wait_ready(deadline)
            self._apply_users(self._ensure_state())
        except BaseException:
            self.stop(grace=10.0)
            raise

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (controlled shutdown), then SIGKILL after *grace* seconds."""
        pid = self.pid
        if pid is None:
            self._forget()
            return
        os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, grace):
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the broker: a crash, for fault tests.  Data stays for a restart."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        self._forget()

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

    # -- internals ---------------------------------------------------------------

    def _ensure_state(self) -> _State:
        if self._state is not None:
            return self._state
        path = self.workdir / "state.json"
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
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            wanted = self._requested_client_port
            picked = _free_ports(3 if wanted else 4)
            broker, controller, jmx = picked[:3]
            client = wanted or picked[3]
            state = _State(
                cluster_id=base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                ports=Ports(client=client, broker=broker, controller=controller, jmx=jmx),
                broker_password=secrets.token_urlsafe(24),
                users={},
            )
            state.save(path)
        if state.ports.jmx is None and self.jmx_exporter:  # a work directory from before the agent
            busy = {state.ports.client, state.ports.broker, state.ports.controller}
            jmx = next(p for p in _free_ports(4) if p not in busy)
            state = state.with_ports(Ports(state.ports.client, state.ports.broker, state.ports.controller, jmx))
            state.save(path)
        self._state = state
        return state

    def _server_properties(self, state: _State) -> str:
        p, pw = state.ports, state.broker_password
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{BROKER_USER}" password="{pw}" user_{BROKER_USER}="{pw}";'
        )
        data = self.workdir / "data"
        conf = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.voters": f"{_NODE_ID}@{HOST}:{p.controller}",
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
            "listener.name.client.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.client.ssl.keystore.type": "PEM",
            "listener.name.client.ssl.keystore.location": str(self.tls_dir / tls.BROKER_PEM),
            "listener.name.client.ssl.truststore.type": "PEM",
            "listener.name.client.ssl.truststore.location": str(self.ca_file),
            "listener.name.client.ssl.client.auth": "none",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{BROKER_USER};User:{ADMIN_USER}",
            "log.dirs": str(data),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # A restarted controller gives every registered broker a fresh session,
            # so the restarted broker cannot re-register until that session expires
            # (9 s by default).  A short session keeps restarts quick.
            "broker.session.timeout.ms": str(_SESSION_MS),
            "broker.heartbeat.interval.ms": str(_HEARTBEAT_MS),
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
        }
        return "".join(f"{k}={v}\n" for k, v in conf.items())

    def _write_configs(self, state: _State) -> None:
        props = self.workdir / "server.properties"
        fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self._server_properties(state))
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)

    def _jvm(self, main: str, *, heap: str, options: tuple[str, ...] = ()) -> list[str]:
        return [
            _java(),
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            *options,
            "-cp",
            classpath(self.libs_dir),
            main,
        ]

    def format_command(self, state: _State) -> tuple[list[str], list[str]]:
        """The storage tool's command line, and the arguments it reads from its argument file.

        The SCRAM seeds carry passwords, so they never go on the command line (``ps`` shows
        every process's arguments to every user): the JVM reads them, with the rest of its
        arguments, from a file only this user can read (``java @file``), removed after use.
        """
        args = self._jvm("kafka.tools.StorageTool", heap="256m")[1:] + [
            "format",
            # "=" form: a urlsafe-base64 id may start with "-" and read as an option.
            f"--cluster-id={state.cluster_id}",
            "--config",
            str(self.workdir / "server.properties"),
        ]
        for name, password in self.users.items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return [_java(), f"@{self.workdir / 'format.args'}"], args

    def _format(self, state: _State, deadline: float) -> None:
        cmd, args = self.format_command(state)
        argfile = self.workdir / "format.args"
        fd = os.open(argfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            # One argument per line, quoted: the launcher's argument-file syntax.
            fh.write("".join('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"\n' for a in args))
        out = self.logs_dir / "format.out"
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
            raise ConfigError("formatting Kafka storage failed:\n" + _tail(out), exit_code=done.returncode)
        state = _State(
            state.cluster_id,
            state.ports,
            state.broker_password,
            {n: _digest(p) for n, p in self.users.items()},
        )
        state.save(self.workdir / "state.json")
        self._state = state

    def _agent_options(self) -> tuple[str, ...]:
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
        return (f"-javaagent:{jar}={HOST}:{self.ports.jmx}:{self.jmx_rules}",)

    def _launch(self) -> None:
        cmd = self._jvm("kafka.Kafka", heap=self.heap, options=self._agent_options()) + [
            str(self.workdir / "server.properties")
        ]
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        setpriv = shutil.which("setpriv")
        if self.tie_to_parent and setpriv:
            cmd = [setpriv, "--pdeathsig", "TERM", "--"] + cmd
        with (self.logs_dir / "kafka.out").open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - the JDK's launcher, the jars we resolved
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        (self.workdir / "broker.pid").write_text(f"{self._proc.pid}\n")

    def _admin(self) -> AdminClient:
        conf = self.access(ADMIN_USER).confluent_config()
        conf.update({"reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 500})
        return AdminClient(conf)

    def _wait_ready(self, deadline: float) -> None:
        """Ready means a SCRAM login as concord-admin over TLS gets metadata back."""
        admin: AdminClient | None = None
        last = "client port not open"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                self._forget()
                raise BrokerUnavailable(
                    f"Kafka exited during startup (exit code {code}):\n{self._log_tail()}",
                    workdir=self.workdir,
                )
            if admin is None and _port_open(self.ports.client):
                admin = self._admin()
            if admin is not None:
                try:
                    admin.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                except KafkaException as exc:
                    last = str(exc)
                else:
                    return
            time.sleep(0.2)
        raise BrokerUnavailable(
            f"Kafka did not accept a SCRAM login in time ({last}):\n{self._log_tail()}",
            workdir=self.workdir,
        )

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
        state = _State(
            state.cluster_id,
            state.ports,
            state.broker_password,
            {**state.users, **{n: _digest(p) for n, p in changed.items()}},
        )
        state.save(self.workdir / "state.json")
        self._state = state

    def _log_tail(self) -> str:
        """Errors of this launch first (the cause), then the last lines of both logs."""
        lines = _read_from(self.log_file, self._log_offset)
        parts = [
            "\n".join(_first_errors(lines)),
            "\n".join(lines[-15:]),
            _tail(self.logs_dir / "kafka.out", 15),
        ]
        return "\n...\n".join(part for part in parts if part)

    def _adoptable_pid(self) -> int | None:
        """PID from broker.pid, only if that process is this work directory's broker."""
        try:
            pid = int((self.workdir / "broker.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        props = str(self.workdir / "server.properties").encode()
        return pid if b"kafka.Kafka" in cmdline and props in cmdline else None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not Path(f"/proc/{pid}").exists():
                return True
            time.sleep(0.1)
        return False

    def _forget(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(0)
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / "broker.pid").unlink()
