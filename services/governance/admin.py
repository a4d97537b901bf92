"""Making the cluster match the declared world: topics and ACLs.

Uses confluent-kafka's AdminClient (aiokafka's admin has no ACL calls).  These
functions only add what is missing; they never delete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from services.core.access import AclRule
from services.core.errors import BrokerUnavailable
from services.core.world import TopicSpec
from services.kafka_access import KafkaAccess

TIMEOUT = 30.0


_rdkafka_log = logging.getLogger("concord.rdkafka")


def admin_client(access: KafkaAccess) -> AdminClient:
    # librdkafka logs every refused connection to stderr; failures reach callers as exceptions.
    return AdminClient(access.confluent_config(), logger=_rdkafka_log)


def ensure_topics(admin: AdminClient, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the declared topics that do not exist; return their names."""
    try:
        existing = set(admin.list_topics(timeout=TIMEOUT).topics)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot list topics: {exc}") from None
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.kafka_config())
        for s in specs if s.name not in existing
    ]
    if not new:
        return []
    for name, fut in admin.create_topics(new, request_timeout=TIMEOUT).items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: someone else was quicker
                raise BrokerUnavailable(f"cannot create topic {name}: {exc}") from None
    return [t.topic for t in new]


# librdkafka names the cluster resource BROKER; Kafka and our rules call it CLUSTER.
_TO_RT = {"CLUSTER": ResourceType.BROKER}
_FROM_RT = {ResourceType.BROKER: "CLUSTER"}


def to_binding(rule: AclRule) -> AclBinding:
    return AclBinding(
        _TO_RT.get(rule.resource_type) or ResourceType[rule.resource_type],
        rule.resource_name,
        ResourcePatternType[rule.pattern_type],
        rule.principal,
        rule.host,
        AclOperation[rule.operation],
        AclPermissionType[rule.permission],
    )


def from_binding(b: AclBinding) -> AclRule:
    return AclRule(
        principal=b.principal, resource_type=_FROM_RT.get(b.restype, b.restype.name), pattern_type=b.resource_pattern_type.name,
        resource_name=b.name, operation=b.operation.name, permission=b.permission_type.name, host=b.host,
    )


def live_acls(admin: AdminClient) -> list[AclRule]:
    f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                         AclPermissionType.ANY)
    try:
        return sorted(from_binding(b) for b in admin.describe_acls(f, request_timeout=TIMEOUT).result())
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read ACLs: {exc}") from None


def ensure_acls(admin: AdminClient, rules: Iterable[AclRule]) -> list[AclRule]:
    """Create the ACL bindings that are missing; return them."""
    have = set(live_acls(admin))
    missing = sorted({r for r in rules} - have)
    if not missing:
        return []
    for _binding, fut in admin.create_acls([to_binding(r) for r in missing], request_timeout=TIMEOUT).items():
        try:
            fut.result()
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot create ACL: {exc}") from None
    _await_acls(admin, missing)
    return missing


def _await_acls(admin: AdminClient, rules: list[AclRule], timeout: float = 30.0) -> None:
    """Return once the broker enforces ``rules``.

    The controller commits new ACLs before the broker's authorizer has applied them
    from the metadata log; a client started in between is refused.  DescribeAcls is
    answered from the broker's authorizer, so seeing them there means they hold.
    """
    deadline = time.monotonic() + timeout
    want = set(rules)
    while not want <= set(live_acls(admin)):
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"ACLs not in force {timeout:.0f}s after they were created")
        time.sleep(0.1)
