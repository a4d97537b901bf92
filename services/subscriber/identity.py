"""Where a subscriber's TLS material, clients file and query-log key live, and the local setup's
issuing of them.

``<home>/subscribers/<agency>/``:

    ca.pem, ca-key.pem    the agency's own CA (it issues the server's and the clients' certificates)
    server.pem            the check API's key and certificate (127.0.0.1, localhost)
    clients.yaml          the declared clients (format: services.subscriber.clients)
    clients/<name>.pem    a client system's key and certificate (0600), as the local setup issued it
    clients/<name>.key    a client system's API key (0600)
    query-log.key         the HMAC key of the query log (0600)

In a real deployment the agency's own PKI takes the CA's place, and each client system
receives its certificate or key out of band; only ``clients.yaml`` and the server's
certificate need to be where the subscriber is started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from services.embedded.tls import CA_CERT, ensure_ca, issue_client_cert, issue_server_cert
from services.files import write_private
from services.home import Home
from services.subscriber.clients import new_api_key

# What the local setup issues for each agency: (name, scopes, rate, kind).
LOCAL_CLIENTS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("counter", ("check",), "1000/second", "certificate"),
    ("counter-key", ("check",), "1000/second", "api_key"),
    ("operator", ("check", "details"), "100/second", "certificate"),
    ("auditor", ("check", "details", "entries"), "100/second", "certificate"),
)


@dataclass(frozen=True)
class SubscriberHome:
    root: Path

    @classmethod
    def of(cls, home: Path, agency: str) -> SubscriberHome:
        return cls(Home(home).subscriber(agency))

    @property
    def ca(self) -> Path:
        return self.root / CA_CERT

    @property
    def server(self) -> Path:
        return self.root / "server.pem"

    @property
    def clients(self) -> Path:
        return self.root / "clients.yaml"

    @property
    def query_log_key(self) -> Path:
        return self.root / "query-log.key"

    def client_cert(self, name: str) -> Path:
        return self.root / "clients" / f"{name}.pem"

    def client_key(self, name: str) -> Path:
        return self.root / "clients" / f"{name}.key"

    def ensure(self, agency: str) -> None:
        """Issue what is missing: the CA, the server certificate, :data:`LOCAL_CLIENTS` and their file."""
        ensure_ca(self.root, f"Concord {agency} subscriber CA")
        if not self.server.exists():
            issue_server_cert(self.root, filename=self.server.name)
        if self.clients.exists():
            return
        entries = []
        for name, scopes, rate, kind in LOCAL_CLIENTS:
            entry: dict[str, object] = {"name": name, "scopes": list(scopes), "rate": rate}
            if kind == "certificate":
                issue_client_cert(self.root, name, self.client_cert(name))
                entry["certificate"] = name
            else:
                key, hashed = new_api_key(name)
                self.client_key(name).parent.mkdir(parents=True, exist_ok=True)
                write_private(self.client_key(name), key)
                entry["api_key"] = hashed
            entries.append(entry)
        text = "# Who may ask this subscriber (see services/subscriber/clients.py for the format).\n" + yaml.safe_dump(
            {"clients": entries}, sort_keys=False
        )
        self.clients.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.clients, text)
