"""The cluster as the governance shell reads it: topics, bindings, users, ledger, quotas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.core.access import AclRule
from services.core.acl_ledger import Ledger


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster has it: partitions, replication, effective configs."""

    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveState:
    """The cluster as read by the shell; ``topics`` are the namespace's topics only."""

    acls: tuple[AclRule, ...]
    topics: Mapping[str, TopicState]
    users: frozenset[str]
    ledger: Ledger | None = None
    ledger_revision: str | None = None
    quotas: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # user -> quota key -> value
