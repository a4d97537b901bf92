"""The cluster's topics, ACLs and SCRAM users through confluent-kafka's AdminClient.

aiokafka's admin has no ACL or SCRAM calls.  ``ensure_topics`` and ``ensure_acls``
only add what is missing (the local setup uses them); removing bindings, creating
users and reconfiguring topics is for the governance tool's apply
(:mod:`services.governance.apply`), which decides what may be touched.  Every call
that changes ACLs returns only once the broker enforces the change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from enum import Enum
from typing import Any, TypeVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from services.core.access import AclRule
from services.core.cluster_state import TopicState
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
        for s in specs
        if s.name not in existing
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


def _binding_args(rule: AclRule) -> tuple[Any, ...]:
    """(restype, name, pattern type, principal, host, operation, permission) in librdkafka's terms."""
    return (
        _TO_RT.get(rule.resource_type) or ResourceType[rule.resource_type],
        rule.resource_name,
        ResourcePatternType[rule.pattern_type],
        rule.principal,
        rule.host,
        AclOperation[rule.operation],
        AclPermissionType[rule.permission],
    )


def to_binding(rule: AclRule) -> AclBinding:
    return AclBinding(*_binding_args(rule))


_E = TypeVar("_E", bound=Enum)


def _member(kind: type[_E], value: _E | str | int) -> _E:
    """The enum member an AclBinding field holds.

    AclBinding accepts a member, its name or its value and converts them on construction; its
    field annotations keep the accepted union, so each field is narrowed here.
    """
    if isinstance(value, kind):
        return value
    return kind[value] if isinstance(value, str) else kind(value)


def from_binding(b: AclBinding) -> AclRule:
    restype = _member(ResourceType, b.restype)
    return AclRule(
        principal=b.principal,
        resource_type=_FROM_RT.get(restype, restype.name),
        pattern_type=_member(ResourcePatternType, b.resource_pattern_type).name,
        resource_name=b.name,
        operation=_member(AclOperation, b.operation).name,
        permission=_member(AclPermissionType, b.permission_type).name,
        host=b.host,
    )


# Every binding: None matches any name, principal and host (AclBindingFilter's docstring).
ALL_BINDINGS = AclBindingFilter(
    ResourceType.ANY,
    None,  # type: ignore[arg-type]  # AclBindingFilter inherits AclBinding's `str`; None matches any name
    ResourcePatternType.ANY,
    None,  # type: ignore[arg-type]  # any principal, as above
    None,  # type: ignore[arg-type]  # any host, as above
    AclOperation.ANY,
    AclPermissionType.ANY,
)


def live_acls(admin: AdminClient) -> list[AclRule]:
    f = ALL_BINDINGS
    try:
        return sorted(from_binding(b) for b in admin.describe_acls(f, request_timeout=TIMEOUT).result())
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read ACLs: {exc}") from None


def ensure_acls(admin: AdminClient, rules: Iterable[AclRule]) -> list[AclRule]:
    """Create the ACL bindings that are missing; return them."""
    have = set(live_acls(admin))
    missing = sorted(set(rules) - have)
    if not missing:
        return []
    for fut in admin.create_acls([to_binding(r) for r in missing], request_timeout=TIMEOUT).values():
        try:
            fut.result()
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot create ACL: {exc}") from None
    _await_acls(admin, missing)
    return missing


def _await_acls(admin: AdminClient, rules: list[AclRule], timeout: float = 30.0, *, gone: bool = False) -> None:
    """Return once the broker enforces ``rules`` (or, with ``gone``, no longer holds them).

    The controller commits ACL changes before the broker's authorizer has applied them
    from the metadata log; a client started in between sees the old state.  DescribeAcls
    is answered from the broker's authorizer, so seeing the change there means it holds.
    """
    deadline = time.monotonic() + timeout
    want = set(rules)
    while True:
        live = set(live_acls(admin))
        if (not want & live) if gone else want <= live:
            return
        if time.monotonic() > deadline:
            what = "still in force" if gone else "not in force"
            raise BrokerUnavailable(f"ACLs {what} {timeout:.0f}s after they were changed")
        time.sleep(0.1)


def exact_filter(rule: AclRule) -> AclBindingFilter:
    """A filter matching exactly one binding: deleting through it cannot take a neighbour along."""
    return AclBindingFilter(*_binding_args(rule))


def delete_acls(admin: AdminClient, rules: Iterable[AclRule]) -> list[AclRule]:
    """Delete exactly these bindings; return them once the broker no longer enforces them."""
    doomed = sorted(set(rules))
    if not doomed:
        return []
    for fut in admin.delete_acls([exact_filter(r) for r in doomed], request_timeout=TIMEOUT).values():
        try:
            fut.result()
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot delete ACL: {exc}") from None
    _await_acls(admin, doomed, gone=True)
    return doomed


# --- SCRAM users ---------------------------------------------------------------

SCRAM_ITERATIONS = 8192


def scram_users(admin: AdminClient) -> frozenset[str]:
    """Every user with a SCRAM credential on the cluster."""
    request = admin.describe_user_scram_credentials(request_timeout=TIMEOUT)
    if not isinstance(request, Future):  # one future per user only when users are named
        raise TypeError(f"describe_user_scram_credentials answered {type(request).__name__}, not a Future")
    try:
        described = request.result()
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot describe SCRAM users: {exc}") from None
    return frozenset(described)


def create_scram_users(admin: AdminClient, passwords: dict[str, str], timeout: float = 30.0) -> list[str]:
    """Give each user a SCRAM-SHA-512 credential; return once the broker describes them all.

    Like ACLs, credentials reach the broker's authenticator through the metadata log a
    moment after the controller commits them; DescribeUserScramCredentials is answered
    from the broker's own metadata, so once it lists a user, that user can log in.
    """
    if not passwords:
        return []
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, pw.encode()) for user, pw in sorted(passwords.items())
    ]
    for user, fut in admin.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT).items():
        try:
            fut.result()
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot create SCRAM user {user}: {exc}") from None
    deadline = time.monotonic() + timeout
    while not set(passwords) <= scram_users(admin):
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"SCRAM users not in force {timeout:.0f}s after they were created")
        time.sleep(0.1)
    return sorted(passwords)


# --- topics --------------------------------------------------------------------


def topic_states(admin: AdminClient, keep: Callable[[str], bool]) -> dict[str, TopicState]:
    """Partitions, replication and effective configs of the topics ``keep`` selects."""
    try:
        md = admin.list_topics(timeout=TIMEOUT)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot list topics: {exc}") from None
    names = sorted(n for n in md.topics if keep(n))
    if not names:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    configs: dict[str, dict[str, str]] = {}
    for res, fut in admin.describe_configs(resources, request_timeout=TIMEOUT).items():
        try:
            entries = fut.result()
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot describe topic {res.name}: {exc}") from None
        configs[res.name] = {k: e.value for k, e in entries.items() if e.value is not None}
    out: dict[str, TopicState] = {}
    for n in names:
        parts = md.topics[n].partitions
        replication = min((len(p.replicas) for p in parts.values()), default=0)
        out[n] = TopicState(n, len(parts), replication, configs.get(n, {}))
    return out


def set_topic_configs(admin: AdminClient, changes: dict[str, dict[str, str]]) -> None:
    """Set the given configs of each topic, leaving every other config as it is."""
    if not changes:
        return
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sorted(cfg.items())
            ],
        )
        for name, cfg in sorted(changes.items())
    ]
    for res, fut in admin.incremental_alter_configs(resources, request_timeout=TIMEOUT).items():
        try:
            fut.result()
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot reconfigure topic {res.name}: {exc}") from None
