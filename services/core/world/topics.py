"""Topics as ``topics.yaml`` declares them: per-kind templates, the concrete specs they
render to per agency, and the file's quota and retention sections."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

from pydantic import Field

from services.core.world.fields import (
    AgencyId,
    ConfigValue,
    Count,
    Frozen,
    FrozenDict,
    FrozenMapping,
    RetentionMs,
)

TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")
NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
KAFKA_TOPIC_MAX = 249
# These topic configs have their own declared fields; setting them twice would let the
# extra config silently contradict the declaration.
RESERVED_CONFIGS = {
    "cleanup.policy": "cleanup_policy",
    "retention.ms": "retention_ms",
    "min.insync.replicas": "min_insync_replicas",
}

TopicKind = Literal["lists", "directives", "receipts", "quarantine", "registry", "fanout_state", "notices"]
CleanupPolicy = Literal["delete", "compact"]

#: Topic kinds in the order specs are expanded, and whom each is declared for.
TOPIC_KINDS: tuple[TopicKind, ...] = (
    "lists",
    "directives",
    "receipts",
    "quarantine",
    "registry",
    "fanout_state",
    "notices",
)
_TOPIC_SCOPE: Mapping[TopicKind, Literal["publishers", "implementers"] | None] = {
    "lists": "publishers",
    "directives": "implementers",
    "receipts": "implementers",
    "quarantine": None,
    "registry": None,
    "fanout_state": None,
    "notices": "publishers",
}

#: Topic kinds the fan-out reads or keeps by state partition: one worker owns partition p of
#: all of them, so they must all have the same partition count.
CO_PARTITIONED: tuple[TopicKind, ...] = ("lists", "receipts", "fanout_state")


class TopicSpec(Frozen):
    """One concrete Kafka topic, as the governance tool creates and checks it."""

    name: str
    kind: TopicKind
    agency: str | None
    partitions: Count
    replication: Count
    cleanup_policy: CleanupPolicy
    retention_ms: RetentionMs
    config: FrozenMapping[str, ConfigValue] = Field(default_factory=FrozenDict)
    min_insync_replicas: Count = 1

    def kafka_config(self) -> dict[str, str]:
        """The topic-level configs to set on the broker (declared fields plus extras)."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(self.min_insync_replicas),
            **self.config,
        }

    def fitted(self, brokers: int | None) -> TopicSpec:
        """This spec as a cluster of ``brokers`` can hold it (``None``: as declared).

        A cluster smaller than the declared replication (one broker on a laptop) gets
        one replica per broker, and keeps one replica of slack in ``min.insync.replicas``
        so that ``acks=all`` writes are possible at all; a cluster at least as large gets
        exactly the declaration.
        """
        if brokers is None or brokers >= self.replication:
            return self
        min_isr = min(self.min_insync_replicas, max(1, brokers - 1))
        return self.model_copy(update={"replication": brokers, "min_insync_replicas": min_isr})


class TopicOverride(Frozen):
    """Per-agency deviations from a topic template (e.g. a busier agency's retention)."""

    partitions: Count | None = None
    replication: Count | None = None
    min_insync_replicas: Count | None = None
    retention_ms: RetentionMs | None = None
    config: FrozenMapping[str, ConfigValue] = Field(default_factory=FrozenDict)


class TopicTemplate(Frozen):
    """A topic kind as declared in topics.yaml; ``name`` uses ``{ns}`` and ``{agency}``."""

    kind: TopicKind
    name: str
    partitions: Count
    replication: Count
    cleanup_policy: CleanupPolicy
    retention_ms: RetentionMs
    config: FrozenMapping[str, ConfigValue] = Field(default_factory=FrozenDict)
    overrides: FrozenMapping[AgencyId, TopicOverride] = Field(default_factory=FrozenDict)
    # Writes with acks=all need this many replicas in sync; at most the replication.
    min_insync_replicas: Count = 1

    @property
    def scope(self) -> Literal["publishers", "implementers"] | None:
        """Whom one topic of this kind exists for; ``None`` for a single shared topic."""
        return _TOPIC_SCOPE[self.kind]

    def render(self, namespace: str, agency: str | None = None) -> TopicSpec:
        """The concrete spec for one agency (or the shared topic), overrides applied."""
        override = self.overrides.get(agency) if agency is not None else None
        partitions, replication, retention_ms = self.partitions, self.replication, self.retention_ms
        min_isr = self.min_insync_replicas
        config = dict(self.config)
        if override is not None:
            partitions = override.partitions or partitions
            replication = override.replication or replication
            min_isr = override.min_insync_replicas or min_isr
            if override.retention_ms is not None:
                retention_ms = override.retention_ms
            config.update(override.config)
        return TopicSpec(
            name=self.name.format(ns=namespace, agency=agency or ""),
            kind=self.kind,
            agency=agency,
            partitions=partitions,
            replication=replication,
            min_insync_replicas=min_isr,
            cleanup_policy=self.cleanup_policy,
            retention_ms=retention_ms,
            config=config,
        )


ByteRate = Annotated[int, Field(ge=1024, le=2**40)]
Percentage = Annotated[float, Field(gt=0, le=100_000)]


class QuotaValues(Frozen):
    """The quota values of one principal; a value left out is not limited
    (see :mod:`services.core.quotas`)."""

    producer_byte_rate: ByteRate | None = None
    consumer_byte_rate: ByteRate | None = None
    request_percentage: Percentage | None = None

    def config(self) -> dict[str, float]:
        """As Kafka's quota config: key -> value, the unset keys left out."""
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class Quotas(Frozen):
    """The ``quotas`` section of ``topics.yaml`` (see :mod:`services.core.quotas`)."""

    defaults: QuotaValues = QuotaValues()
    principals: FrozenMapping[str, QuotaValues] = Field(default_factory=FrozenDict)

    def is_empty(self) -> bool:
        return not self.defaults.config() and not any(v.config() for v in self.principals.values())

    def desired(self, agencies: Iterable[str]) -> dict[str, dict[str, tuple[float, str]]]:
        """User -> key -> (value, where it is declared): the defaults for every agency, then
        each principal's overrides."""
        out: dict[str, dict[str, tuple[float, str]]] = {}
        for agency in agencies:
            out[agency] = {k: (v, "quotas.defaults") for k, v in self.defaults.config().items()}
        for name, values in self.principals.items():
            out.setdefault(name, {}).update({k: (v, f"quotas.principals.{name}") for k, v in values.config().items()})
        return {user: keys for user, keys in out.items() if keys}


Days = Annotated[float, Field(gt=0, le=36_500)]  # fractions allowed: tests shorten them


class Retention(Frozen):
    """The ``retention`` section of ``topics.yaml``: how long Concord keeps what it holds about a
    listed subject once it no longer acts on it, per class of data, enforced by the service that
    holds it.  Topics' own retentions (receipts, quarantine) are their ``retention_ms``.

    ``publication_until`` of a listing ends it sooner: no measure applies after it, and once it
    has passed (and everything is lifted) the entry's data leaves the fan-out and the
    subscribers without waiting for these periods.
    """

    ended_entries_days: Days = 30.0  # fan-out: an entry whose every measure is lifted; tombstones for its keys
    lifted_directives_days: Days = 30.0  # subscribers: a lifted directive and its history
    adapter_files_days: Days = 30.0  # adapters: done/ and rejects files
    query_log_days: Days = 180.0  # subscribers: who asked about whom


def check_namespace(namespace: str) -> None:
    if not NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"bad topic namespace {namespace!r}: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 100 characters"
        )
