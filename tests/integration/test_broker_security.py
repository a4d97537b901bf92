"""The broker enforces who may connect and what each principal may do.

Everything here runs real clients (aiokafka for data, confluent-kafka for admin)
against the session's real Kafka: SCRAM logins over TLS, the StandardAuthorizer
with no default allow, and ACLs added through the admin API.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from confluent_kafka import KafkaError
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from services.kafka_access import KafkaAccess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Access = Callable[[str], KafkaAccess]
T = TypeVar("T")
WAIT_S = 20.0
_quiet = logging.getLogger("tests.rdkafka")


@pytest.fixture
def admin(kafka_access: Access) -> AdminClient:
    return AdminClient(kafka_access("concord-admin").confluent_config())


@pytest.fixture
def topic(admin: AdminClient, unique_ns: str) -> str:
    name = f"{unique_ns}.security"
    new = NewTopic(name, num_partitions=1, replication_factor=1)
    for fut in admin.create_topics([new]).values():
        fut.result(timeout=WAIT_S)
    return name


def _allow(admin: AdminClient, topic: str, user: str, op: AclOperation) -> None:
    """Grant *user* the operation *op* on exactly *topic*."""
    binding = AclBinding(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.LITERAL,
        f"User:{user}",
        "*",
        op,
        AclPermissionType.ALLOW,
    )
    for fut in admin.create_acls([binding]).values():
        fut.result(timeout=WAIT_S)


@asynccontextmanager
async def _producer(access: KafkaAccess) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(**access.aiokafka_kwargs(), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(producer.start(), WAIT_S)
        yield producer
    finally:
        await producer.stop()


async def _produce(access: KafkaAccess, topic: str, value: bytes) -> None:
    async with _producer(access) as producer:
        await asyncio.wait_for(producer.send_and_wait(topic, value), WAIT_S)


async def _consume_one(access: KafkaAccess, topic: str, group: str | None) -> bytes | None:
    """First record of partition 0: through *group*, or by plain assignment if None."""
    topics = (topic,) if group else ()
    consumer = AIOKafkaConsumer(*topics, group_id=group, auto_offset_reset="earliest", **access.aiokafka_kwargs())
    try:
        await asyncio.wait_for(consumer.start(), WAIT_S)
        if group is None:
            consumer.assign([TopicPartition(topic, 0)])
        record = await asyncio.wait_for(consumer.getone(), WAIT_S)
        value: bytes | None = record.value
        return value
    finally:
        await consumer.stop()


async def _once_acl_applies(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run *attempt*, retrying while a just-created topic ACL reaches the authorizer.

    create_acls returns once the controller has committed the ACL; the broker
    applies it when it publishes that metadata, a moment later.
    """
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return await attempt()
        except TopicAuthorizationFailedError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_admin_creates_produces_and_consumes(kafka_access: Access, topic: str, unique_ns: str) -> None:
    admin = kafka_access("concord-admin")
    await _produce(admin, topic, b"hello")
    assert await _consume_one(admin, topic, f"{unique_ns}-admin") == b"hello"


async def test_principal_without_acl_can_neither_produce_nor_consume(
    kafka_access: Access, topic: str, unique_ns: str
) -> None:
    stranger = kafka_access("stranger")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(stranger, topic, b"intrusion")
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume_one(stranger, topic, f"{unique_ns}-stranger")


async def test_topic_read_without_group_acl_is_refused_by_group(
    kafka_access: Access, admin: AdminClient, topic: str, unique_ns: str
) -> None:
    await _produce(kafka_access("concord-admin"), topic, b"x")
    _allow(admin, topic, "stranger", AclOperation.READ)
    stranger = kafka_access("stranger")
    with pytest.raises(GroupAuthorizationFailedError):
        await _once_acl_applies(lambda: _consume_one(stranger, topic, f"{unique_ns}-stranger"))


async def test_write_acl_lets_the_principal_produce_and_nothing_more(
    kafka_access: Access, admin: AdminClient, topic: str, unique_ns: str
) -> None:
    stranger = kafka_access("stranger")
    _allow(admin, topic, "stranger", AclOperation.WRITE)
    await _once_acl_applies(lambda: _produce(stranger, topic, b"now allowed"))

    admin_view = await _consume_one(kafka_access("concord-admin"), topic, f"{unique_ns}-admin")
    assert admin_view == b"now allowed"
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume_one(stranger, topic, group=None)
    with pytest.raises(GroupAuthorizationFailedError):
        await _consume_one(stranger, topic, f"{unique_ns}-stranger")


async def test_wrong_password_fails_authentication(kafka_access: Access) -> None:
    wrong = kafka_access("court").as_principal("court", "not-the-password")
    host, port = wrong.bootstrap.split(",")[0].rsplit(":", 1)
    kwargs = wrong.aiokafka_kwargs()
    kwargs.pop("bootstrap_servers")

    async def connect() -> None:
        conn = await asyncio.wait_for(create_conn(host, int(port), **kwargs), WAIT_S)
        conn.close()

    with pytest.raises(SaslAuthenticationFailed):
        await connect()

    with pytest.raises(KafkaConnectionError):
        async with _producer(wrong):
            pass

    errors: list[KafkaError] = []
    client = AdminClient(wrong.confluent_config(), logger=_quiet, error_cb=errors.append)
    deadline = time.monotonic() + WAIT_S
    while not errors and time.monotonic() < deadline:
        client.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION


async def test_client_that_does_not_trust_the_ca_fails_verification(kafka_access: Access) -> None:
    trusting = kafka_access("court")
    host, port = trusting.bootstrap.split(",")[0].rsplit(":", 1)

    system_trust_only = ssl.create_default_context()

    async def connect() -> None:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port), ssl=system_trust_only), WAIT_S)
        writer.close()

    with pytest.raises(ssl.SSLCertVerificationError):
        await connect()

    untrusting = trusting.model_copy(update={"ca_file": None})
    with pytest.raises(KafkaConnectionError):
        async with _producer(untrusting):
            pass
