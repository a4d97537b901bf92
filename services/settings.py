"""Settings, read from the environment at entry points only.

Resolution order for how to reach Kafka, most specific first:

1. ``CONCORD_BOOTSTRAP`` (+ ``CONCORD_CA_FILE``, ``CONCORD_SECURITY_PROTOCOL``): an existing
   cluster run by someone else;
2. ``<home>/concord.json`` written by the local setup (``make run``), so that commands typed
   in the repository find the embedded broker with no flags at all.

A principal's password comes from ``CONCORD_USERNAME``/``CONCORD_PASSWORD`` when
``CONCORD_USERNAME`` names that principal (an environment password applies to the user it
names and to no other), else from its own credentials file,
``<credentials dir>/<principal>.json`` (:mod:`services.credentials`).

Where the world and the keys come from: the signed registry when one is followed
(``CONCORD_REGISTRY=follow``, or ``"registry": "follow"`` in ``concord.json``, which the local
setup writes), checked against the admin's public key (``CONCORD_REGISTRY_ANCHOR``, default
``<keys>/registry-key.json``) and refused when older than ``CONCORD_REGISTRY_MAX_AGE``
seconds; else the files (``CONCORD_WORLD_DIR``, ``<keys>/keyring.json``).

``home`` defaults to ``.local`` in the current directory (``CONCORD_HOME``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.adapter.sources import ReadLimits
from services.core.errors import ConfigError
from services.credentials import credentials_path, read_password
from services.home import Home
from services.kafka_access import KafkaAccess, SecurityProtocol

DEFAULT_REGISTRY_MAX_AGE = 24 * 3600.0

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
    credentials_dir: Path | None = None
    # The signed registry: "follow" it (world and keyring from the cluster) or use the "files".
    registry: Literal["follow", "files"] | None = None
    registry_max_age: float | None = None  # seconds
    registry_anchor: Path | None = None
    # A passphrase for private keys kept encrypted at rest (given only to the service that signs).
    key_passphrase: SecretStr | None = None
    key_passphrase_file: Path | None = None
    # What the adapter's readers accept (services.adapter.sources.ReadLimits has the defaults and why).
    max_line_bytes: int = 256 * 1024
    max_json_depth: int = 16
    max_file_bytes: int = 8 * 1024**3
    # How many brokers the cluster is set up with, when fewer than topics/ declares replicas
    # for (the local setup writes it); topics are then created as that many can hold.
    brokers: int | None = None

    @property
    def layout(self) -> Home:
        """The paths of the home folder (services.home)."""
        return Home(self.home)

    @property
    def keys_path(self) -> Path:
        return self.keys_dir or self.layout.keys

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
        return self.layout.config

    @property
    def credentials_path(self) -> Path:
        """The folder of per-principal credentials files."""
        return self.credentials_dir or self.layout.credentials

    @property
    def anchor_path(self) -> Path:
        """The admin's public keys: what the registry and the keyring file are checked against."""
        return self.registry_anchor or self.keys_path / "registry-key.json"

    def follows_registry(self) -> bool:
        if self.registry is not None:
            return self.registry == "follow"
        return not self.bootstrap and self.local_config().get("registry") == "follow"

    def max_registry_age(self) -> float:
        if self.registry_max_age is not None:
            return self.registry_max_age
        local = self.local_config().get("registry_max_age") if not self.bootstrap else None
        return float(local) if local else DEFAULT_REGISTRY_MAX_AGE

    def passphrase(self) -> bytes | None:
        """The private keys' passphrase: from its file, else from the environment, else None."""
        if self.key_passphrase_file is not None:
            try:
                return self.key_passphrase_file.read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise ConfigError(f"cannot read the key passphrase file {self.key_passphrase_file}: {exc}") from None
        if self.key_passphrase is not None:
            return self.key_passphrase.get_secret_value().encode()
        return None

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
        password, source = self._password_for(principal)
        return KafkaAccess(
            bootstrap=bootstrap,
            username=principal,
            password=SecretStr(password),
            security_protocol=self.security_protocol if self.bootstrap else local.get("security_protocol", "SASL_SSL"),
            ca_file=ca,
            credentials_file=source,
        )

    def _password_for(self, principal: str) -> tuple[str, Path | None]:
        """The password and the file it came from (None: the environment)."""
        if self.password is not None:
            if self.username is None:
                raise ConfigError("CONCORD_PASSWORD is set without CONCORD_USERNAME: name the user it belongs to")
            if self.username == principal:
                return self.password.get_secret_value(), None
        path = credentials_path(self.credentials_path, principal)
        if not path.exists():
            raise ConfigError(
                f"no credentials for principal {principal!r}: set CONCORD_USERNAME={principal} and "
                f"CONCORD_PASSWORD, or give it its credentials file {path}",
                principal=principal,
            )
        return read_password(self.credentials_path, principal), path
