"""How one principal reaches the Kafka cluster.

A :class:`KafkaAccess` is a frozen settings object: bootstrap servers, the CA that
signed the brokers' certificates, and one principal's SCRAM credentials.  Library
code takes one of these; only entry points (the CLI, test fixtures) build them from
the environment or from the local setup's files.  It renders the same access for
the two client libraries Concord uses (aiokafka, confluent-kafka) so they
can never disagree on security settings.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

if TYPE_CHECKING:
    from services.credentials import CredentialsWatch

SecurityProtocol = Literal["SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT"]


class KafkaAccess(BaseModel):
    model_config = ConfigDict(frozen=True)

    bootstrap: str
    username: str | None = None
    password: SecretStr | None = None
    security_protocol: SecurityProtocol = "SASL_SSL"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    ca_file: Path | None = None
    # Where the password was read from: a service watches it and uses a rotated password for
    # the connections it opens afterwards (services.credentials).
    credentials_file: Path | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SASL_SSL", "SSL")

    def as_principal(self, username: str, password: str) -> KafkaAccess:
        """The same cluster reached as another principal."""
        return self.model_copy(update={"username": username, "password": SecretStr(password)})

    def watch_credentials(self) -> CredentialsWatch | None:
        """A watch on this principal's credentials file, if the password came from one."""
        if self.credentials_file is None or self.username is None:
            return None
        from services.credentials import CredentialsWatch

        return CredentialsWatch(self.credentials_file, self.username)

    def with_password(self, password: str) -> KafkaAccess:
        return self.model_copy(update={"password": SecretStr(password)})

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _secret(self) -> str:
        return self.password.get_secret_value() if self.password else ""

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            kw["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.username
            kw["sasl_plain_password"] = self._secret()
        return kw

    def aiokafka_producer_kwargs(self) -> dict[str, Any]:
        """:meth:`aiokafka_kwargs` for a producer: every write waits for all in-sync replicas
        (``acks=all``, so ``min.insync.replicas`` decides) and is idempotent (a retry after a
        lost acknowledgement or a leader change is not written twice, and order is kept)."""
        return {**self.aiokafka_kwargs(), "acks": "all", "enable_idempotence": True}

    def confluent_producer_config(self) -> dict[str, Any]:
        """:meth:`confluent_config` for a producer, with the same guarantees as :meth:`aiokafka_producer_kwargs`."""
        return {**self.confluent_config(), "acks": "all", "enable.idempotence": True}

    def confluent_config(self) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka clients (AdminClient)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.uses_tls:
            if self.ca_file:
                conf["ssl.ca.location"] = str(self.ca_file)
            conf["ssl.endpoint.identification.algorithm"] = "https"
        if self.uses_sasl:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.username or ""
            conf["sasl.password"] = self._secret()
        return conf

    def refresh_confluent(self, *clients: Any) -> None:
        """Give confluent-kafka clients this access's password for the connections they open next."""
        if self.uses_sasl:
            for client in clients:
                client.set_sasl_credentials(self.username or "", self._secret())

    def refresh_aiokafka(self, *clients: Any) -> None:
        """Give aiokafka producers and consumers this access's password for the connections they open
        next (aiokafka logs in with what its client holds; it has no public call to change it)."""
        if not self.uses_sasl:
            return
        for client in clients:
            inner = getattr(client, "client", None) or getattr(client, "_client", None)
            if inner is not None:
                inner._sasl_plain_password = self._secret()  # noqa: SLF001 - no public setter exists

    def describe(self) -> str:
        who = self.username or "anonymous"
        return f"{who}@{self.bootstrap} ({self.security_protocol})"
