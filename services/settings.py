"""Settings, read from the environment at entry points only.

Resolution order for how to reach Kafka, most specific first:

1. ``CONCORD_BOOTSTRAP`` (+ ``CONCORD_CA_FILE``, ``CONCORD_SECURITY_PROTOCOL``,
   ``CONCORD_USERNAME``/``CONCORD_PASSWORD``): an existing cluster run by someone else;
2. ``<home>/concord.json`` and ``<home>/credentials.json`` written by the local setup
   (``make run``), so that commands typed in the repository find the embedded broker
   with no flags at all.

``home`` defaults to ``.local`` in the current directory (``CONCORD_HOME``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.adapter.sources import ReadLimits
from services.core.errors import ConfigError
from services.kafka_access import KafkaAccess, SecurityProtocol

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONCORD_", frozen=True, extra="ignore")

    home: Path = Path(".local")
    bootstrap: str | None = None
    ca_file: Path | None = None
    security_protocol: SecurityProtocol = "SASL_SSL"
    username: str | None = None
    password: SecretStr | None = None
    namespace: str = "concord"
    world_dir: Path = REPO_ROOT / "topics"
    keys_dir: Path | None = None
    # What the adapter's readers accept (services.adapter.sources.ReadLimits has the defaults and why).
    max_line_bytes: int = 256 * 1024
    max_json_depth: int = 16
    max_file_bytes: int = 8 * 1024**3
    # How many brokers the cluster is set up with, when fewer than topics/ declares replicas
    # for (the local setup writes it); topics are then created as that many can hold.
    brokers: int | None = None

    @property
    def keys_path(self) -> Path:
        return self.keys_dir or self.home / "keys"

    def read_limits(
        self, *, max_line_bytes: int | None = None, max_depth: int | None = None, max_file_bytes: int | None = None
    ) -> ReadLimits:
        """The readers' limits: a command-line flag wins over the environment."""
        return ReadLimits(
            max_line_bytes=max_line_bytes or self.max_line_bytes,
            max_depth=max_depth or self.max_json_depth,
            max_file_bytes=max_file_bytes or self.max_file_bytes,
        )

    @property
    def config_file(self) -> Path:
        return self.home / "concord.json"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials.json"

    def local_config(self) -> dict[str, Any]:
        if self.config_file.exists():
            data = json.loads(self.config_file.read_text())
            if isinstance(data, dict):
                return data
        return {}

    def cluster_size(self) -> int | None:
        """``CONCORD_BROKERS``, else what the local setup recorded, else None (topics exactly as declared)."""
        if self.brokers is not None or self.bootstrap:
            return self.brokers
        size = self.local_config().get("brokers")
        return int(size) if size is not None else None

    def effective_namespace(self) -> str:
        return str(self.local_config().get("namespace", self.namespace)) if not self.bootstrap else self.namespace

    def access(self, principal: str) -> KafkaAccess:
        """How ``principal`` reaches the cluster, or a ConfigError saying what is missing."""
        local = self.local_config()
        bootstrap = self.bootstrap or local.get("bootstrap")
        if not bootstrap:
            raise ConfigError(
                "no Kafka cluster configured: run `make run` for the local one, "
                "or set CONCORD_BOOTSTRAP (and CONCORD_CA_FILE, CONCORD_USERNAME, CONCORD_PASSWORD)"
            )
        ca = self.ca_file or (Path(local["ca_file"]) if local.get("ca_file") else None)
        password = self._password_for(principal)
        return KafkaAccess(
            bootstrap=bootstrap,
            username=principal,
            password=SecretStr(password),
            security_protocol=self.security_protocol if self.bootstrap else local.get("security_protocol", "SASL_SSL"),
            ca_file=ca,
        )

    def _password_for(self, principal: str) -> str:
        if self.password is not None and (self.username is None or self.username == principal):
            return self.password.get_secret_value()
        if self.credentials_file.exists():
            creds = json.loads(self.credentials_file.read_text())
            if principal in creds:
                return str(creds[principal])
        raise ConfigError(
            f"no credentials for principal {principal!r}: set CONCORD_USERNAME/CONCORD_PASSWORD "
            f"or add it to {self.credentials_file}",
            principal=principal,
        )
