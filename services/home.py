"""The home folder: where a running Concord keeps everything it writes.

``<home>/`` (``.local`` by default, ignored by git; ``CONCORD_HOME``):

    concord.json        bootstrap, CA file, namespace, "registry": "follow" — how commands find the
                        cluster, and that services take their world and keys from the signed registry
    credentials/        one SCRAM credentials file per principal (0600; services.credentials)
    credentials.json    an older setup's one shared credentials file, split into credentials/ when found
    keys/               signing keys per agency, the admin-signed keyring and the registry key
    broker/             the embedded Kafka node's data, logs and TLS material (``brokers-<n>/``
                        for a local cluster of n nodes)
    run/                one JSON file per running service (pid, url), for `concord status`
    run/scrape/         one Prometheus file_sd target list per /metrics endpoint
                        (deploy/prometheus/prometheus.yml reads them)
    logs/               each local service's output
    data/               the subscribers' SQLite stores and query logs
    subscribers/        each subscriber's CA, server certificate, clients file, client identities
                        and query-log key (services.subscriber.identity)
    fanout/<name>/      a fan-out worker's state
    inbox/<agency>/     the adapter's drop folder
    adapter/            each agency adapter's ledger of what it published
    demo/               what ``make demo`` publishes and the answers it got
    prometheus/         the local Prometheus's configuration and data

Every module that reads or writes one of these asks :class:`Home` for its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    """The paths of one home folder; nothing is created until a caller writes."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "concord.json"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials"

    @property
    def legacy_credentials(self) -> Path:
        """The one shared credentials file of older setups, split into ``credentials/`` when found."""
        return self.root / "credentials.json"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def scrape(self) -> Path:
        return self.run / "scrape"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    def broker(self, brokers: int = 1) -> Path:
        """The local cluster of that size: one node in ``broker/``, more in ``brokers-<n>/``."""
        return self.root / "broker" if brokers == 1 else self.root / f"brokers-{brokers}"

    def service_file(self, name: str) -> Path:
        """``run/<name>.json``: a running service's pid and url."""
        return self.run / f"{name}.json"

    def scrape_file(self, name: str) -> Path:
        """``run/scrape/<name>.json``: the file_sd target list of one /metrics endpoint."""
        return self.scrape / f"{name}.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def store(self, agency: str) -> Path:
        """An agency subscriber's SQLite store."""
        return self.data / f"{agency}.sqlite"

    def query_log(self, agency: str) -> Path:
        return self.data / f"{agency}-queries.sqlite"

    def subscriber(self, agency: str) -> Path:
        """An agency subscriber's TLS material, clients file and query-log key."""
        return self.root / "subscribers" / agency

    def fanout_state(self, name: str) -> Path:
        return self.root / "fanout" / name

    def inbox(self, agency: str) -> Path:
        return self.root / "inbox" / agency

    def adapter_ledger(self, agency: str) -> Path:
        return self.root / "adapter" / f"{agency}.sqlite"

    @property
    def demo(self) -> Path:
        return self.root / "demo"
