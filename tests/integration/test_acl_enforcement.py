"""What `concord acl apply` grants, the broker enforces: each principal with its own SCRAM login.

One namespace is applied from the repository's topics/ once for this module; every
test then acts as an agency, the fan-out or a stranger with real aiokafka clients.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from services import topic_metadata
from services.cli import main
from services.core.errors import BrokerUnavailable
from services.core.principals import ADMIN, AUDIT, DRIFT, FANOUT, SIGNING_PRINCIPALS
from services.governance.admin import ALL_BINDINGS
from services.governance.reading import read_to_end
from services.kafka_access import KafkaAccess
from services.keystore import ensure_keys
from tests.conftest import KafkaCluster
from tests.integration.support import write_operator_home

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WAIT_S = 20.0
Access = Callable[[str], KafkaAccess]


@pytest.fixture(scope="module")
def applied_home(kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose namespace was set up by `concord acl apply` alone (topics, users, ACLs)."""
    ns = "t" + secrets.token_hex(4)
    home = tmp_path_factory.mktemp("acl-home")
    write_operator_home(home, kafka_cluster, ns)
    ensure_keys(home / "keys", ["court", "market", "tax", *SIGNING_PRINCIPALS])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONCORD_HOME", str(home))
        assert main(["acl", "apply"]) == 0
    return home


@pytest.fixture(scope="module")
def applied_ns(applied_home: Path) -> str:
    return str(json.loads((applied_home / "concord.json").read_text())["namespace"])


async def _produce(access: KafkaAccess, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(**access.aiokafka_kwargs(), request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(producer.start(), WAIT_S)
        await asyncio.wait_for(producer.send_and_wait(topic, value, key=key, partition=0), WAIT_S)
    finally:
        await producer.stop()


def _own_group(access: KafkaAccess, topic: str) -> str:
    """A consumer group the principal may use, so that only the topic can be refused."""
    ns = topic.split(".", 1)[0].split("-", 1)[0]
    if access.username == FANOUT:
        return f"{ns}-fanout"
    return f"{ns}-{access.username}.probe-{secrets.token_hex(3)}"


async def _consume_one(access: KafkaAccess, topic: str, group: str | None = None) -> bytes | None:
    """The first record of ``topic`` through a consumer group (default: one the principal owns).

    A subscription is refused with TopicAuthorizationFailedError; an assigned consumer
    would only log the refusal and wait.
    """
    consumer = AIOKafkaConsumer(
        topic,
        group_id=group or _own_group(access, topic),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **access.aiokafka_kwargs(),
    )
    try:
        await asyncio.wait_for(consumer.start(), WAIT_S)
        record = await asyncio.wait_for(consumer.getone(), WAIT_S)
        value: bytes | None = record.value
        return value
    finally:
        await consumer.stop()


async def test_an_agency_reads_its_own_directives_and_not_another_agencys(
    kafka_access: Access, applied_ns: str
) -> None:
    await _produce(kafka_access(FANOUT), f"{applied_ns}.directives.aviation", b"for aviation")
    await _produce(kafka_access(FANOUT), f"{applied_ns}.directives.rail", b"for rail")
    aviation = kafka_access("aviation")
    assert await _consume_one(aviation, f"{applied_ns}.directives.aviation") == b"for aviation"
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume_one(aviation, f"{applied_ns}.directives.rail")


async def test_an_agency_cannot_read_a_list_topic(kafka_access: Access, applied_ns: str) -> None:
    topic = f"{applied_ns}.lists.court"
    await _produce(kafka_access("court"), topic, b"court's listing")
    for agency in ("aviation", "market", "court"):
        with pytest.raises(TopicAuthorizationFailedError):
            await _consume_one(kafka_access(agency), topic)


async def test_an_agency_writes_its_own_list_and_not_another_agencys(kafka_access: Access, applied_ns: str) -> None:
    court = kafka_access("court")
    await _produce(court, f"{applied_ns}.lists.court", b"mine")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(court, f"{applied_ns}.lists.market", b"impersonating market")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(kafka_access("aviation"), f"{applied_ns}.lists.court", b"impersonating court")


async def test_an_agency_cannot_forge_directives_or_another_agencys_receipts(
    kafka_access: Access, applied_ns: str
) -> None:
    aviation = kafka_access("aviation")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(aviation, f"{applied_ns}.directives.aviation", b"forged directive")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(aviation, f"{applied_ns}.receipts.rail", b"rail's receipt")
    await _produce(aviation, f"{applied_ns}.receipts.aviation", b"own receipt")


async def test_an_agency_cannot_join_another_agencys_consumer_group(kafka_access: Access, applied_ns: str) -> None:
    topic = f"{applied_ns}.directives.aviation"
    await _produce(kafka_access(FANOUT), topic, b"x")
    aviation = kafka_access("aviation")
    assert await _consume_one(aviation, topic, group=f"{applied_ns}-aviation.store") is not None
    with pytest.raises(GroupAuthorizationFailedError):
        await _consume_one(aviation, topic, group=f"{applied_ns}-rail.store")
    with pytest.raises(GroupAuthorizationFailedError):
        await _consume_one(aviation, topic, group=f"{applied_ns}-fanout")


async def test_the_fanout_reads_lists_writes_directives_and_no_more(kafka_access: Access, applied_ns: str) -> None:
    fanout = kafka_access(FANOUT)
    await _produce(kafka_access("market"), f"{applied_ns}.lists.market", b"market's listing")
    assert await _consume_one(fanout, f"{applied_ns}.lists.market") == b"market's listing"
    await _produce(fanout, f"{applied_ns}.directives.finance", b"directive")
    await _produce(fanout, f"{applied_ns}.quarantine", b"bad record")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(fanout, f"{applied_ns}.lists.court", b"forged listing")
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume_one(fanout, f"{applied_ns}.directives.finance")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(fanout, f"{applied_ns}.registry", b"forged registry")


async def test_a_stranger_gets_nothing(kafka_access: Access, applied_ns: str) -> None:
    stranger = kafka_access("stranger")
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume_one(stranger, f"{applied_ns}.registry")
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(stranger, f"{applied_ns}.lists.court", b"x")


def test_apply_created_the_namespace_from_nothing(applied_ns: str, kafka_cluster: KafkaCluster) -> None:
    from services.governance.admin import admin_client, topic_states

    topics = topic_states(
        admin_client(kafka_cluster.access(ADMIN)),
        lambda n: n.startswith((f"{applied_ns}.", f"{applied_ns}-")),
    )
    assert f"{applied_ns}.governance-ledger" in topics
    assert topics[f"{applied_ns}.directives.rail"].config["cleanup.policy"] == "compact"
    assert topics[f"{applied_ns}.fanout.state"].partitions == 3
    assert topics[f"{applied_ns}.fanout.state"].config["cleanup.policy"] == "compact"


# --- the audit and the drift check: their own principals, only what they need ----------------------------


def _run(home: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONCORD_HOME", str(home))
        code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def _reading(access: KafkaAccess, topic: str) -> Callable[[], object]:
    """A call that reads ``topic`` to its end as ``access``."""
    return lambda: list(read_to_end(access, topic))


def _refused(call: Callable[[], object]) -> str:
    """The broker's refusal of ``call``, as text (the test fails if it is allowed)."""
    try:
        call()
    except (KafkaException, BrokerUnavailable) as exc:
        return str(exc)
    raise AssertionError("allowed")


def test_the_audit_and_drift_commands_run_as_their_own_principals(
    applied_home: Path, kafka_access: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = json.loads((applied_home / "concord.json").read_text())["namespace"]
    asyncio.run(_produce(kafka_access("court"), f"{ns}.lists.court", b"not a list record"))
    code, out = _run(applied_home, "audit", capsys=capsys)
    assert code in (0, 1), out  # 2 would be an error such as a refused read
    # Other tests of this namespace write to the court's list too: every record on it is refused.
    assert re.search(r"list records: 0 accepted, [1-9][0-9]* refused", out), out
    assert "not authorized" not in out.lower()
    code, out = _run(applied_home, "acl", "drift", capsys=capsys)
    assert code == 0, out
    assert "In sync." in out


def test_the_audit_reads_the_evidence_and_may_do_nothing_else(applied_ns: str, kafka_access: Access) -> None:
    audit = kafka_access(AUDIT)
    asyncio.run(_produce(kafka_access(FANOUT), f"{applied_ns}.quarantine", b"a refused record"))
    evidence = [
        f"{applied_ns}.lists.court",
        f"{applied_ns}.directives.rail",
        f"{applied_ns}.receipts.rail",
        f"{applied_ns}.quarantine",
    ]
    read = asyncio.run(topic_metadata.read_to_end(audit, evidence))
    assert {topic for topic, _ in read} >= {f"{applied_ns}.quarantine"}
    for topic in (f"{applied_ns}.lists.court", f"{applied_ns}.directives.rail", f"{applied_ns}.registry"):
        with pytest.raises(TopicAuthorizationFailedError):
            asyncio.run(_produce(audit, topic, b"the audit writes nothing"))
    assert "AUTHORIZATION" in _refused(_reading(audit, f"{applied_ns}.governance-ledger"))
    admin = AdminClient(kafka_access(ADMIN).confluent_config())
    assert admin.describe_acls(ALL_BINDINGS).result()  # there are bindings to see
    audit_admin = AdminClient(audit.confluent_config())
    seen: list[object] | str
    try:
        seen = list(audit_admin.describe_acls(ALL_BINDINGS).result())
    except KafkaException as exc:
        seen = str(exc)
    # Refused, or (as Kafka answers a principal without DESCRIBE on the cluster) not one binding.
    assert seen == [] or "AUTHORIZATION" in seen, seen


def test_the_drift_check_describes_and_may_do_nothing_else(applied_ns: str, kafka_access: Access) -> None:
    drift = kafka_access(DRIFT)
    assert list(read_to_end(drift, f"{applied_ns}.governance-ledger", last_only=True))  # what apply recorded
    others = (f"{applied_ns}.lists.court", f"{applied_ns}.directives.rail", f"{applied_ns}.registry")
    for topic in others:  # each holds a record: an empty topic is read to its end without a fetch
        asyncio.run(_produce(kafka_access(ADMIN), topic, b"something to read"))
    for topic in others:
        assert "AUTHORIZATION" in _refused(_reading(drift, topic))
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_produce(drift, f"{applied_ns}.governance-ledger", b"a forged ledger"))
    admin = AdminClient(drift.confluent_config())
    made = f"{applied_ns}.drift-made"
    assert "AUTHORIZATION" in _refused(admin.create_topics([NewTopic(made, 1, 1)])[made].result)


def test_the_fanout_may_not_delete_its_group_or_topics(applied_ns: str, kafka_access: Access) -> None:
    admin = AdminClient(kafka_access(FANOUT).confluent_config())
    state = f"{applied_ns}.fanout.state"
    assert "AUTHORIZATION" in _refused(admin.delete_topics([state])[state].result)
    group = f"{applied_ns}-fanout"
    assert "AUTHORIZATION" in _refused(admin.delete_consumer_groups([group])[group].result)
