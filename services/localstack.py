"""The local exchange: one home folder holding everything a running Concord needs.

``<home>/`` (``.local`` by default, ignored by git) is laid out as :mod:`services.home` describes.

The same :class:`LocalStack` serves ``make run``, ``make demo`` and the test
fixtures, so what the tests exercise is what a user runs.  With ``registry`` (the
default) the setup publishes the signed registry from the files and every service
follows it; ``use_world`` then publishes the new world, which running services take
without a restart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core.access import compile_acls
from services.core.errors import ConfigError
from services.core.principals import ADMIN, FANOUT, SIGNING_PRINCIPALS, all_principals
from services.core.world import World, load_world
from services.credentials import credentials_path, read_password, write_credentials
from services.credentials import ensure_credentials as ensure_credential_files
from services.files import write_atomic
from services.governance.admin import admin_client, ensure_acls, ensure_topics
from services.governance.registry import Publication, publish_registry
from services.home import Home
from services.kafka_access import KafkaAccess
from services.keystore import ensure_keys, keyed_hash_secret, load_keyring, load_signer
from services.settings import REPO_ROOT
from services.subscriber.identity import SubscriberHome

if TYPE_CHECKING:
    from services.subscriber.client import CheckClient


def principals(world: World) -> list[str]:
    return all_principals(world.agencies)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_credentials(home: Path, names: list[str]) -> dict[str, str]:
    """Every principal's password, one credentials file each under ``<home>/credentials/`` (an older
    setup's shared ``credentials.json`` is split into them)."""
    return ensure_credential_files(Home(home).credentials, names, legacy=Home(home).legacy_credentials)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    url: str | None = None
    log: Path | None = None
    ca: Path | None = None  # the CA that issued an https service's certificate


@dataclass
class LocalStack:
    home: Path
    world: World
    namespace: str = "concord"
    world_dir: Path | None = None
    services: list[Service] = field(default_factory=list)
    registry: bool = True  # services follow the signed registry (else they read the files)
    registry_max_age: float = 24 * 3600.0

    @property
    def layout(self) -> Home:
        """The paths of the home folder (services.home)."""
        return Home(self.home)

    @classmethod
    def at(
        cls, home: Path, namespace: str = "concord", world_dir: Path | None = None, *, registry: bool = True
    ) -> LocalStack:
        return cls(
            home=home.resolve(),
            world=load_world(world_dir or REPO_ROOT / "topics"),
            namespace=namespace,
            world_dir=world_dir,
            registry=registry,
        )

    def use_world(self, world_dir: Path) -> None:
        """The declared world is ``world_dir`` from now on: published in the registry (running
        services take it live), or read by services started from now on (without a registry)."""
        self.world_dir = world_dir
        self.world = load_world(world_dir)
        if self.registry:
            self.publish_registry()

    def publish_registry(self, *, at: datetime | None = None) -> Publication:
        """Publish the world and the keyring as the admin (``at``: the publication time it claims)."""
        keys = self.layout.keys
        keyring = load_keyring(keys)
        return publish_registry(
            self.access(ADMIN), self.namespace, self.world, keyring, load_signer(keys, ADMIN, keyring=keyring), at=at
        )

    # --- set-up -----------------------------------------------------------------

    def write_config(self, bootstrap: str, ca_file: Path | None, *, brokers: int | None) -> None:
        """``concord.json``: how commands reach the cluster; ``brokers`` when it is smaller than topics/ declares
        replicas for (None for a cluster that holds the declaration, such as an external one)."""
        self.home.mkdir(parents=True, exist_ok=True)
        cfg = {
            "bootstrap": bootstrap,
            "ca_file": str(ca_file) if ca_file else None,
            "namespace": self.namespace,
            "security_protocol": "SASL_SSL",
            "brokers": brokers,
            "registry": "follow" if self.registry else "files",
            "registry_max_age": self.registry_max_age,
        }
        self.layout.config.write_text(json.dumps(cfg, indent=2))

    @property
    def brokers(self) -> int | None:
        """The cluster size recorded by :meth:`write_config`."""
        size = json.loads(self.layout.config.read_text()).get("brokers")
        return int(size) if size is not None else None

    @property
    def credentials_dir(self) -> Path:
        return self.layout.credentials

    def write_credentials(self, passwords: Mapping[str, str]) -> None:
        """One credentials file per principal (for a cluster whose users exist already)."""
        for principal, password in passwords.items():
            write_credentials(self.credentials_dir, principal, password)

    def access(self, principal: str) -> KafkaAccess:
        cfg = json.loads(self.layout.config.read_text())
        return KafkaAccess(
            bootstrap=cfg["bootstrap"],
            ca_file=Path(cfg["ca_file"]) if cfg["ca_file"] else None,
            credentials_file=credentials_path(self.credentials_dir, principal),
        ).as_principal(principal, read_password(self.credentials_dir, principal))

    def ensure_keys(self) -> None:
        ensure_keys(self.layout.keys, [*sorted(self.world.agencies), *SIGNING_PRINCIPALS])
        keyed_hash_secret(self.layout.keys, FANOUT)  # shared by every fan-out worker

    def provision(self) -> tuple[list[str], int]:
        """Create missing topics and ACLs as the admin; return what was created."""
        admin = admin_client(self.access(ADMIN))
        topics = ensure_topics(admin, [s.fitted(self.brokers) for s in self.world.topic_specs(self.namespace)])
        acls = ensure_acls(admin, compile_acls(self.world, self.namespace, datetime.now(UTC)))
        if self.registry:
            self.publish_registry()
        return topics, len(acls)

    # --- services ---------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
        env["CONCORD_HOME"] = str(self.home)
        if self.world_dir is not None:
            env["CONCORD_WORLD_DIR"] = str(self.world_dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # --- what Prometheus scrapes -------------------------------------------------

    def register_scrape_target(self, name: str, address: str) -> Path:
        """Write ``run/scrape/<name>.json`` (file_sd) naming ``address`` (host:port serving /metrics).

        The file name decides the scrape job in deploy/prometheus/prometheus.yml:
        ``fanout*``, ``subscriber-*``, ``adapter-*``, ``drift*``, ``broker*``.
        """
        path = self.layout.scrape_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Prometheus watches the folder: never let it read half a file.
        write_atomic(path, json.dumps([{"targets": [address], "labels": {"service": name}}], indent=2))
        return path

    def unregister_scrape_target(self, name: str) -> None:
        self.layout.scrape_file(name).unlink(missing_ok=True)

    def scrape_targets(self) -> dict[str, str]:
        """name -> host:port of every registered /metrics endpoint."""
        folder = self.layout.scrape
        found = sorted(folder.glob("*.json")) if folder.exists() else []
        return {f.stem: json.loads(f.read_text())[0]["targets"][0] for f in found}

    def _spawn(
        self,
        name: str,
        args: list[str],
        url: str | None = None,
        metrics_port: int | None = None,
        ca: Path | None = None,
    ) -> Service:
        log = self.layout.log(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own entry point
            [sys.executable, "-m", "services.cli", *args],
            env=self._env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.home,  # anything a service writes beside itself stays in the home
        )
        out.close()
        svc = Service(name, proc, url, log, ca)
        self.services.append(svc)
        run_file = self.layout.service_file(name)
        run_file.parent.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"pid": proc.pid, "url": url, "ca": str(ca) if ca else None}))
        if metrics_port is not None:
            self.register_scrape_target(name, f"127.0.0.1:{metrics_port}")
        return svc

    def start_fanout(self, name: str = "fanout", port: int | None = None) -> Service:
        """A fan-out worker named ``name``: its state lives in ``<home>/fanout/<name>``, so a worker
        started again under the same name resumes from its own copy."""
        port = port or free_port()
        return self._spawn(
            name,
            ["fanout", "worker", "--name", name, "--web-port", str(port)],
            url=f"http://127.0.0.1:{port}",
            metrics_port=port,
        )

    def subscriber_home(self, agency: str) -> SubscriberHome:
        """The agency's subscriber identity material, issued on first use (its CA, server
        certificate, clients file with one identity per local client system, query-log key)."""
        home = SubscriberHome.of(self.home, agency)
        home.ensure(agency)
        return home

    def start_subscriber(
        self, agency: str, port: int | None = None, *extra: str, name: str | None = None, db: Path | None = None
    ) -> Service:
        """``concord subscriber run`` for ``agency``: its API over TLS on ``port``, /metrics in plain
        HTTP on a port of its own (the scrape target)."""
        port = port or free_port()
        metrics_port = free_port()
        home = self.subscriber_home(agency)
        return self._spawn(
            name or f"subscriber-{agency}",
            [
                "subscriber",
                "run",
                "--agency",
                agency,
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
                "--db",
                str(db or self.layout.store(agency)),
                *extra,
            ],
            url=f"https://127.0.0.1:{port}",
            metrics_port=metrics_port,
            ca=home.ca,
        )

    def check_client(self, agency: str, client: str = "auditor", **kw: Any) -> CheckClient:
        """A check client of ``agency``'s running subscriber, as the local client system ``client``."""
        from services.subscriber.client import CheckClient, Identity

        home = self.subscriber_home(agency)
        key = home.client_key(client)
        identity = (
            Identity(ca=home.ca, api_key=key.read_text().strip())
            if key.exists()
            else Identity(ca=home.ca, cert=home.client_cert(client))
        )
        return CheckClient(self.subscriber_urls()[agency], identity, agency=agency, **kw)

    def start_adapter(self, agency: str, inbox: Path | None = None, port: int | None = None) -> Service:
        """``concord adapter run`` on ``inbox`` (default ``<home>/inbox/<agency>``), with its /metrics."""
        port = port or free_port()
        inbox = inbox or self.layout.inbox(agency)
        inbox.mkdir(parents=True, exist_ok=True)
        return self._spawn(
            f"adapter-{agency}",
            ["adapter", "run", "--agency", agency, "--inbox", str(inbox), "--metrics-port", str(port)],
            metrics_port=port,
        )

    def start_registry_publisher(self, every: float = 3600.0) -> Service:
        """``concord registry publish --every``: keeps the registry younger than its maximum age, and
        publishes what is edited in the world folder meanwhile."""
        return self._spawn("registry", ["registry", "publish", "--every", f"{every:.0f}s"])

    def start_drift(self, interval: float = 60.0, port: int | None = None) -> Service:
        """``concord acl drift`` checking every ``interval`` seconds, its gauges on /metrics."""
        port = port or free_port()
        return self._spawn(
            "drift", ["acl", "drift", "--metrics-port", str(port), "--interval", str(interval)], metrics_port=port
        )

    def subscriber_urls(self) -> dict[str, str]:
        return {
            s.name.removeprefix("subscriber-"): s.url
            for s in self.services
            if s.url and s.name.startswith("subscriber-")
        }

    def start_all(self) -> None:
        self.start_fanout()
        for agency in self.world.implementers():
            self.start_subscriber(agency.agency_id)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        pending = [s for s in self.services if s.url]
        while pending:
            for s in list(pending):
                if s.proc.poll() is not None:
                    raise ConfigError(f"{s.name} exited with status {s.proc.returncode}; see {s.log}")
                try:
                    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(s.ca)) if s.ca else True
                    if httpx.get(f"{s.url}/healthz", timeout=1.0, verify=verify).status_code == 200:
                        pending.remove(s)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise ConfigError(f"not healthy after {timeout:.0f}s: {', '.join(s.name for s in pending)}")
            time.sleep(0.2)

    def stop(self, name: str | None = None, *, kill: bool = False, grace: float = 15.0) -> None:
        for s in [s for s in self.services if name is None or s.name == name]:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    s.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
                    s.proc.wait(5)
            self.layout.service_file(s.name).unlink(missing_ok=True)
            self.unregister_scrape_target(s.name)
            self.services.remove(s)
