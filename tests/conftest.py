"""Broker fixtures shared by the integration and fault tests.

One real Kafka node (:class:`services.embedded.broker.EmbeddedKafka`) is started
per pytest session, in a temporary directory, with one SCRAM user per principal
the tests play (:data:`TEST_USERS`, random passwords).  It is stopped at the end
of the session, also when tests fail, and is tied to the pytest process so that
a killed run does not leave it behind.

To run the same tests against an existing cluster instead, set:

``CONCORD_TEST_BOOTSTRAP``        bootstrap servers (SASL_SSL, SCRAM-SHA-512)
``CONCORD_TEST_CA_FILE``          CA certificate that signed the brokers' certificates
``CONCORD_TEST_ADMIN_PASSWORD``   password of ``concord-admin`` (a super user there)
``CONCORD_TEST_PASSWORD_<USER>``  password of each other user, the name upper-cased
                                  with ``-`` as ``_`` (``CONCORD_TEST_PASSWORD_COURT``,
                                  ``CONCORD_TEST_PASSWORD_CONCORD_FANOUT``)

A test that asks for a user without a password in the environment fails, saying which.

Broker fixtures may only be used by tests marked ``integration`` or ``fault``
(via ``pytestmark``); collection fails otherwise, so unit runs never start a JVM.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.core.errors import ConfigError
from services.core.principals import ADMIN, CONCORD_PRINCIPALS
from services.credentials import write_credentials
from services.embedded.broker import EmbeddedKafka
from services.embedded.libs import ensure_kafka_libs
from services.kafka_access import KafkaAccess

REPO_ROOT = Path(__file__).resolve().parents[1]

TEST_USERS: tuple[str, ...] = (
    *CONCORD_PRINCIPALS,
    "court",
    "market",
    "tax",
    "aviation",
    "rail",
    "finance",
    "securities",
    "customs",
    "stranger",
)

_BROKER_FIXTURES = frozenset({"kafka_cluster", "kafka_access", "kafka_trio", "cluster_exchange"})
_BROKER_MARKERS = ("integration", "fault")


@dataclass(frozen=True)
class KafkaCluster:
    """The cluster the tests talk to, embedded or external.

    ``embedded`` is the running :class:`EmbeddedKafka` when the session started
    one, else ``None``; tests that restart or kill brokers need their own.
    """

    bootstrap: str
    ca_file: Path | None
    passwords: Mapping[str, str]
    embedded: EmbeddedKafka | None = field(default=None, compare=False)

    @property
    def brokers(self) -> int | None:
        """The embedded cluster's size (topics are fitted to it); None for an external cluster."""
        return len(self.embedded.node_ids) if self.embedded is not None else None

    def access(self, username: str) -> KafkaAccess:
        if username not in TEST_USERS:
            raise ConfigError("not one of the test users", user=username, known=TEST_USERS)
        password = self.passwords.get(username)
        if password is None:
            pytest.fail(
                f"no password for Kafka user {username!r}: set {_password_env(username)} "
                "(the external cluster must have every test user)",
                pytrace=False,
            )
        return KafkaAccess(bootstrap=self.bootstrap, ca_file=self.ca_file).as_principal(username, password)


def _password_env(username: str) -> str:
    return "CONCORD_TEST_PASSWORD_" + username.upper().replace("-", "_")


def _external_cluster(bootstrap: str) -> KafkaCluster:
    passwords = {user: os.environ[_password_env(user)] for user in TEST_USERS if _password_env(user) in os.environ}
    admin = os.environ.get("CONCORD_TEST_ADMIN_PASSWORD")
    if admin is not None:
        passwords[ADMIN] = admin
    ca = os.environ.get("CONCORD_TEST_CA_FILE")
    return KafkaCluster(bootstrap=bootstrap, ca_file=Path(ca) if ca else None, passwords=passwords)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    misused = [
        item.nodeid
        for item in items
        if _BROKER_FIXTURES & set(getattr(item, "fixturenames", ()))
        and not any(item.get_closest_marker(m) for m in _BROKER_MARKERS)
    ]
    if misused:
        raise pytest.UsageError("broker fixtures used by tests not marked integration or fault: " + ", ".join(misused))


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """The session's Kafka cluster: external if CONCORD_TEST_BOOTSTRAP is set, else embedded."""
    bootstrap = os.environ.get("CONCORD_TEST_BOOTSTRAP")
    if bootstrap:
        yield _external_cluster(bootstrap)
        return
    passwords = {user: secrets.token_urlsafe(18) for user in TEST_USERS}
    broker = EmbeddedKafka(
        tmp_path_factory.mktemp("kafka"),
        passwords,
        libs_dir=ensure_kafka_libs(REPO_ROOT),
        tie_to_parent=True,
    )
    try:
        broker.start()
        yield KafkaCluster(broker.bootstrap, broker.ca_file, passwords, embedded=broker)
    finally:
        broker.stop()


@pytest.fixture
def kafka_access(kafka_cluster: KafkaCluster) -> Callable[[str], KafkaAccess]:
    """``kafka_access(username)``: client settings for that user on the session cluster."""
    return kafka_cluster.access


def write_all_credentials(home: Path, passwords: Mapping[str, str]) -> None:
    """One credentials file per principal under ``<home>/credentials/``, as services read them."""
    for principal, password in passwords.items():
        write_credentials(home / "credentials", principal, password)


@pytest.fixture
def unique_ns() -> str:
    """A short namespace unique to this test, for topic and consumer-group names."""
    return "t" + secrets.token_hex(4)
