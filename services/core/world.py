"""The declared world: agencies, programs, MOUs and topic specs, loaded from ``topics/``.

Everything Concord decides about who may receive what starts here: the governance
compiler turns this world into topics and ACLs, the fan-out routes list entries by its
MOUs, subscribers learn their measures from it. So the world is loaded into frozen
pydantic models (nobody can change it behind the loader's back) and checked as a whole
before anyone acts on it. A typo in an agency id must never silently route a listing
nowhere, or grant a topic to a principal that does not exist.

Layout of ``topics/`` (the loader's root):

``agencies.yaml``
    ``agencies:`` a list of ``{agency_id, name, publishes, implements}``.
``programs.yaml``
    ``programs:`` a list of ``{program_id, owner, list_kind, title, legal_basis, removal}``
    (``removal`` is optional).
``mous/<mou_id>.yaml``
    One file per MOU: ``mou_id`` once at the top and ``versions:``, the list of its
    versions. Keeping every version in one file makes the amendment history of an MOU
    readable in one place and lets the loader check versions against each other.
``topics.yaml``
    ``topics:`` a mapping from topic kind to a template; per-agency kinds may carry
    ``overrides`` for single agencies.

Errors are reported as :class:`~services.core.errors.WorldInvalid` whose message has one
line per problem, each in the CLI's ``FILE[:LINE]: path: reason`` shape, e.g.
``mous/mou-food-safety.yaml:21: versions[0].measures[1].implementing_agency: unknown
agency 'securites'``. Every problem found is reported at once, so a person fixes the
files in one round instead of one error per run. Shape problems (missing or unknown
keys, wrong types) are reported before consistency problems, because cross-checking a
half-parsed world only produces noise.

Validity periods are half-open ranges of whole UTC days, ``[valid_from, end)``, where
``end`` is the earlier of ``valid_until`` and ``terminated_on`` (open-ended if neither is
set). ``valid_until`` is therefore the first day an MOU version no longer applies, and
``terminated_on`` the day a termination takes effect. Half-open periods let one
version hand over to the next on the same date with neither a gap nor an overlap.

Misusing the API (a naive datetime, an unknown program or topic kind, a bad namespace)
raises :class:`ValueError`: that is a bug in the caller, not a broken world.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from services.core.documents import YamlDocument, YamlInvalid, line_of, model_problems, read_yaml
from services.core.errors import WorldInvalid
from services.core.models import ListKind, MeasureKind, SubjectKind
from services.core.principals import UNTHROTTLED
from services.core.problems import Loc, Problem, format_path

__all__ = [
    "AGENCY_FILE",
    "LIST_KIND_MEASURE",
    "MEASURE_KINDS",
    "PROGRAM_FILE",
    "SUBJECT_FIELDS",
    "TOPIC_FILE",
    "TOPIC_KINDS",
    "UNTHROTTLED",
    "Agency",
    "FrozenDict",
    "ListKind",
    "Measure",
    "MeasureKind",
    "Mou",
    "Program",
    "QuotaValues",
    "Quotas",
    "Retention",
    "SubjectKind",
    "TopicKind",
    "TopicOverride",
    "TopicSpec",
    "TopicTemplate",
    "World",
    "iter_problems",
    "load_world",
    "parse_world",
]

TopicKind = Literal["lists", "directives", "receipts", "quarantine", "registry", "fanout_state", "notices"]
CleanupPolicy = Literal["delete", "compact"]

AGENCY_FILE = "agencies.yaml"
PROGRAM_FILE = "programs.yaml"
TOPIC_FILE = "topics.yaml"
MOU_DIR = "mous"

#: Which measure kind a list kind may trigger: a blacklist punishes, a redlist rewards.
#: Mixing them up would punish the taxpayers a program meant to reward.
LIST_KIND_MEASURE: Mapping[ListKind, MeasureKind] = {
    ListKind.SANCTION: MeasureKind.PUNISH,
    ListKind.INCENTIVE: MeasureKind.INCENT,
}
MEASURE_KINDS: tuple[MeasureKind, ...] = tuple(MeasureKind)

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

#: Subject fields an MOU may make visible to an implementing agency.
#: Parts of a listing an MOU may make visible to an implementing agency: the subject's fields and,
#: beside them, the listing's reason, legal basis and delisting (see services/core/disclosure.py).
SUBJECT_FIELDS: tuple[str, ...] = ("kind", "names", "identifiers", "related_parties", "reason", "basis", "delisting")

# Agency ids end up in topic names, principals and consumer-group prefixes, so they stay
# within the characters all three accept, and without dots (a dot separates the parts
# of a topic name and of program and measure ids).
_AGENCY_ID = re.compile(r"[a-z][a-z0-9-]{0,47}")
_LOCAL_NAME = r"[a-z0-9][a-z0-9-]{0,63}"
# Program and measure ids are "<agency>.<name>": the agency part names who owns them.
_SCOPED_ID = re.compile(rf"(?P<agency>{_AGENCY_ID.pattern})\.(?P<local>{_LOCAL_NAME})")
_MOU_ID = re.compile(r"[a-z][a-z0-9-]{0,63}")
_ROLE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_KAFKA_TOPIC_MAX = 249
# These topic configs have their own declared fields; setting them twice would let the
# extra config silently contradict the declaration.
_RESERVED_CONFIGS = {
    "cleanup.policy": "cleanup_policy",
    "retention.ms": "retention_ms",
    "min.insync.replicas": "min_insync_replicas",
}

_K = TypeVar("_K")
_V = TypeVar("_V")


class FrozenDict(dict[_K, _V]):
    """A dict that refuses mutation and hashes by content.

    Frozen models only stop attribute assignment; a plain dict field could still be
    changed in place, and it would make the model unhashable. This closes both holes
    while still being a ``dict`` for serialisation and equality.
    """

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def _readonly(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("this mapping is part of the frozen world and cannot be changed")

    __setitem__ = _readonly
    __delitem__ = _readonly
    __ior__ = _readonly
    clear = _readonly
    pop = _readonly
    popitem = _readonly
    setdefault = _readonly
    update = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        # dict's default pickling rebuilds by item assignment, which this class refuses.
        return (FrozenDict, (dict(self),))


def _freeze(value: Mapping[Any, Any]) -> FrozenDict[Any, Any]:
    return FrozenDict(value)


FrozenMapping = Annotated[Mapping[_K, _V], AfterValidator(_freeze)]


def _check_agency_id(value: str) -> str:
    if not _AGENCY_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid agency id (lowercase letters, digits and '-', "
            "starting with a letter, at most 48 characters)"
        )
    if value == "concord" or value.startswith("concord-"):
        raise ValueError(
            f"agency id {value!r} is reserved: 'concord' and 'concord-*' name Concord's own "
            "principals (fan-out, admin, ops)"
        )
    return value


def _check_scoped_id(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not _SCOPED_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid {what} id (expected '<agency>.<name>', lowercase letters, digits and '-')"
            )
        return value

    return AfterValidator(check)


def _check_mou_id(value: str) -> str:
    if not _MOU_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid MOU id (lowercase letters, digits and '-', starting with a letter)")
    return value


def _check_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_applies_to(value: str) -> str:
    if value in frozenset(SubjectKind):
        return value
    if value.startswith("RELATED:") and _ROLE.fullmatch(value[len("RELATED:") :]):
        return value
    raise ValueError(
        f"bad applies_to value {value!r}: expected PERSON, ORGANIZATION or RELATED:<ROLE> with ROLE in UPPER_SNAKE_CASE"
    )


def _check_subject_field(value: str) -> str:
    if value not in SUBJECT_FIELDS:
        raise ValueError(f"unknown subject field {value!r}; known: {', '.join(SUBJECT_FIELDS)}")
    return value


def _check_retention(value: int) -> int:
    if value != -1 and value < 1:
        raise ValueError(f"retention_ms must be -1 (keep forever) or positive, not {value}")
    return value


def _no_number_dates(value: Any) -> Any:
    # Pydantic reads numbers as Unix timestamps; in a legal document a number where a
    # date belongs is a typo (20160120), never a timestamp.
    if isinstance(value, (bool, int, float)):
        raise ValueError(f"expected a date (YYYY-MM-DD), got the number {value!r}")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, datetime):
        raise ValueError(f"expected a date (YYYY-MM-DD), got the date-time {value.isoformat()}")  # noqa: TRY004 - as above
    return value


def _config_value(value: Any) -> Any:
    # Kafka topic configs are strings; YAML readers naturally write numbers and booleans.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


def _unique(values: tuple[Any, ...]) -> tuple[Any, ...]:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(value)
    return values


AgencyId = Annotated[str, AfterValidator(_check_agency_id)]
ProgramId = Annotated[str, _check_scoped_id("program")]
MeasureId = Annotated[str, _check_scoped_id("measure")]
MouId = Annotated[str, AfterValidator(_check_mou_id)]
Text = Annotated[str, AfterValidator(_check_text)]
AppliesTo = Annotated[str, AfterValidator(_check_applies_to)]
SubjectField = Annotated[str, AfterValidator(_check_subject_field)]
Count = Annotated[int, Strict(), Field(ge=1)]
RetentionMs = Annotated[int, Strict(), AfterValidator(_check_retention)]
Day = Annotated[date, BeforeValidator(_no_number_dates)]
ConfigValue = Annotated[str, BeforeValidator(_config_value)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Agency(_Frozen):
    """A government department taking part in the exchange."""

    agency_id: AgencyId
    name: Text
    publishes: Annotated[bool, Strict()]
    implements: Annotated[bool, Strict()]

    @property
    def principal(self) -> str:
        """The Kafka principal the agency authenticates as (SCRAM user = agency id)."""
        return f"User:{self.agency_id}"


class Program(_Frozen):
    """A list an agency publishes: a blacklist (SANCTION) or a redlist (INCENTIVE)."""

    program_id: ProgramId
    owner: AgencyId
    list_kind: ListKind
    title: Text
    legal_basis: Text
    removal: Annotated[
        Text | None,
        Field(
            description="How a listed subject gets off this list, in words a listed person can act on: what "
            "they must do and whom they ask (e.g. perform the judgment, then ask the court to delist). "
            "Shown in `concord subject-report`; absent when the owner has not declared it."
        ),
    ] = None


class Measure(_Frozen):
    """One clause of an MOU: what an implementing agency does to a listed subject."""

    measure_id: MeasureId
    kind: MeasureKind
    text: Text
    implementing_agency: AgencyId
    legal_basis: Text
    applies_to: Annotated[tuple[AppliesTo, ...], Field(min_length=1), AfterValidator(_unique)]

    def applies_to_subject(self, kind: str) -> bool:
        """Whether the measure targets a listed subject of this kind itself.

        ``kind`` is a :class:`~services.core.models.SubjectKind` or its value.
        """
        return kind in self.applies_to

    def related_roles(self) -> frozenset[str]:
        """Roles of related parties (``RELATED:<ROLE>``) the measure reaches through the subject."""
        return frozenset(item[len("RELATED:") :] for item in self.applies_to if item.startswith("RELATED:"))


class Mou(_Frozen):
    """One version of a memorandum of understanding: a versioned measure catalogue.

    An amendment is a new version with a later ``valid_from``; the previous version
    must end (``valid_until`` or ``terminated_on``) no later than the new one starts.
    """

    mou_id: MouId
    version: Count
    title: Text
    document_no: Text
    signatories: Annotated[tuple[AgencyId, ...], Field(min_length=1), AfterValidator(_unique)]
    valid_from: Day
    valid_until: Day | None = None
    terminated_on: Day | None = None
    trigger_programs: Annotated[tuple[ProgramId, ...], Field(min_length=1), AfterValidator(_unique)]
    measures: Annotated[tuple[Measure, ...], Field(min_length=1)]
    visible_fields: FrozenMapping[AgencyId, Annotated[tuple[SubjectField, ...], AfterValidator(_unique)]]

    @field_validator("valid_until")
    @classmethod
    def _until_after_from(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and value <= start:
            raise ValueError(
                f"valid_until {value} must be after valid_from {start} "
                "(valid_until is the first day the version no longer applies)"
            )
        return value

    @field_validator("terminated_on")
    @classmethod
    def _terminated_not_before_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and value < start:
            raise ValueError(f"terminated_on {value} is before valid_from {start}")
        return value

    @property
    def ends_on(self) -> date | None:
        """First day the version no longer applies: the earlier of expiry and termination."""
        ends = [d for d in (self.valid_until, self.terminated_on) if d is not None]
        return min(ends) if ends else None

    def is_active(self, at: datetime) -> bool:
        """Whether this version is in force at ``at`` (a timezone-aware datetime).

        Active on ``valid_from`` itself, inactive from ``valid_until`` and from
        ``terminated_on`` onwards (both exclusive), judged on the UTC calendar day.
        """
        day = _utc_day(at)
        ends_on = self.ends_on
        return self.valid_from <= day and (ends_on is None or day < ends_on)

    def overlaps(self, other: Mou) -> bool:
        """Whether the two half-open validity periods share at least one day."""
        return _before(self.valid_from, other.ends_on) and _before(other.valid_from, self.ends_on)

    def implementing_agencies(self) -> tuple[str, ...]:
        """Agencies that implement at least one measure of this version, sorted."""
        return tuple(sorted({m.implementing_agency for m in self.measures}))

    def measure(self, measure_id: str) -> Measure:
        for item in self.measures:
            if item.measure_id == measure_id:
                return item
        raise ValueError(f"{self.mou_id} v{self.version} has no measure {measure_id!r}")

    def fields_visible_to(self, agency_id: str) -> tuple[str, ...]:
        """Subject fields the MOU lets ``agency_id`` see; none for an agency it does not name."""
        return self.visible_fields.get(agency_id, ())


def _before(day: date, end: date | None) -> bool:
    return end is None or day < end


def _utc_day(at: datetime) -> date:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {at.isoformat()}")
    return at.astimezone(UTC).date()


class TopicSpec(_Frozen):
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


class TopicOverride(_Frozen):
    """Per-agency deviations from a topic template (e.g. a busier agency's retention)."""

    partitions: Count | None = None
    replication: Count | None = None
    min_insync_replicas: Count | None = None
    retention_ms: RetentionMs | None = None
    config: FrozenMapping[str, ConfigValue] = Field(default_factory=FrozenDict)


class TopicTemplate(_Frozen):
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


class QuotaValues(_Frozen):
    """The quota values of one principal; a value left out is not limited
    (see :mod:`services.core.quotas`)."""

    producer_byte_rate: ByteRate | None = None
    consumer_byte_rate: ByteRate | None = None
    request_percentage: Percentage | None = None

    def config(self) -> dict[str, float]:
        """As Kafka's quota config: key -> value, the unset keys left out."""
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class Quotas(_Frozen):
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


class Retention(_Frozen):
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


class World(_Frozen):
    """The whole declared world. Build it with :func:`load_world` or :func:`parse_world`.

    Constructing ``World`` directly skips the consistency checks that need file
    context (unknown agencies, overlapping versions, ...); the loaders run them.
    """

    agencies: FrozenMapping[AgencyId, Agency]
    programs: FrozenMapping[ProgramId, Program]
    mous: tuple[Mou, ...]
    topic_templates: FrozenMapping[TopicKind, TopicTemplate]
    quotas: Quotas = Quotas()
    retention: Retention = Retention()

    def publishers(self) -> tuple[Agency, ...]:
        """Agencies that publish list entries, sorted by id."""
        return tuple(a for a in self._sorted_agencies() if a.publishes)

    def implementers(self) -> tuple[Agency, ...]:
        """Agencies that implement measures, sorted by id."""
        return tuple(a for a in self._sorted_agencies() if a.implements)

    def _sorted_agencies(self) -> list[Agency]:
        return sorted(self.agencies.values(), key=lambda a: a.agency_id)

    def mou_versions(self, mou_id: str) -> tuple[Mou, ...]:
        """All declared versions of one MOU, oldest first (empty if the id is unknown)."""
        return tuple(m for m in self.mous if m.mou_id == mou_id)

    def mou(self, mou_id: str, version: int) -> Mou:
        for item in self.mous:
            if item.mou_id == mou_id and item.version == version:
                return item
        raise ValueError(f"no MOU {mou_id!r} version {version}")

    def current_mous(self, at: datetime) -> tuple[Mou, ...]:
        """For each MOU, the version in force at ``at``, sorted by MOU id.

        The version in force is the latest whose ``valid_from`` has been reached; an
        MOU is left out when that version has expired or been terminated, since an
        expired amendment does not revive its predecessor.
        """
        day = _utc_day(at)
        latest: dict[str, Mou] = {}
        for item in self.mous:
            if item.valid_from <= day:
                held = latest.get(item.mou_id)
                if held is None or item.version > held.version:
                    latest[item.mou_id] = item
        return tuple(latest[k] for k in sorted(latest) if latest[k].is_active(at))

    def triggered_measures(self, program_id: str, at: datetime) -> list[tuple[Mou, Measure]]:
        """Every (MOU version, measure) a listing in ``program_id`` triggers at ``at``."""
        if program_id not in self.programs:
            raise ValueError(f"unknown program {program_id!r}")
        return [
            (item, measure)
            for item in self.current_mous(at)
            if program_id in item.trigger_programs
            for measure in item.measures
        ]

    def measures_for(self, agency_id: str, at: datetime) -> list[tuple[Mou, Measure]]:
        """Every (MOU version, measure) ``agency_id`` implements at ``at``."""
        return [
            (item, measure)
            for item in self.current_mous(at)
            for measure in item.measures
            if measure.implementing_agency == agency_id
        ]

    def topic_specs(self, namespace: str = "concord") -> tuple[TopicSpec, ...]:
        """Every topic the world needs, expanded per agency, in kind then agency order."""
        _check_namespace(namespace)
        specs: list[TopicSpec] = []
        for kind in TOPIC_KINDS:
            template = self.topic_templates[kind]
            specs.extend(template.render(namespace, agency) for agency in self._scope_agencies(template))
        return tuple(specs)

    def topic_spec(self, kind: TopicKind, agency: str | None = None, namespace: str = "concord") -> TopicSpec:
        """The spec of one topic; ``agency`` is required exactly for per-agency kinds."""
        _check_namespace(namespace)
        if kind not in self.topic_templates:
            raise ValueError(f"unknown topic kind {kind!r}; known: {', '.join(TOPIC_KINDS)}")
        template = self.topic_templates[kind]
        if template.scope is None:
            if agency is not None:
                raise ValueError(f"{kind} is one shared topic, not per agency")
        elif agency is None:
            raise ValueError(f"{kind} topics are per agency: pass agency")
        elif agency not in self._scope_agencies(template):
            raise ValueError(f"agency {agency!r} has no {kind} topic (not one of the {template.scope})")
        return template.render(namespace, agency)

    def topic_name(self, kind: TopicKind, agency: str | None = None, namespace: str = "concord") -> str:
        """The name of one topic: ``topic_name("lists", "court")`` is ``concord.lists.court``."""
        return self.topic_spec(kind, agency, namespace).name

    def _scope_agencies(self, template: TopicTemplate) -> list[str | None]:
        if template.scope == "publishers":
            return [a.agency_id for a in self.publishers()]
        if template.scope == "implementers":
            return [a.agency_id for a in self.implementers()]
        return [None]

    def to_documents(self) -> dict[str, Any]:
        """The world as JSON-compatible documents, keyed like the files of ``topics/``.

        ``parse_world(world.to_documents())`` gives back an equal world, which is how the
        registry can ship the world over Kafka without a second format.
        """
        docs: dict[str, Any] = {
            AGENCY_FILE: {"agencies": [a.model_dump(mode="json") for a in self.agencies.values()]},
            PROGRAM_FILE: {"programs": [p.model_dump(mode="json") for p in self.programs.values()]},
            TOPIC_FILE: {
                "topics": {
                    kind: t.model_dump(mode="json", exclude={"kind"}) for kind, t in self.topic_templates.items()
                }
            },
        }
        if not self.quotas.is_empty():
            docs[TOPIC_FILE]["quotas"] = self.quotas.model_dump(mode="json", exclude_none=True)
        if self.retention != Retention():
            docs[TOPIC_FILE]["retention"] = self.retention.model_dump(mode="json")
        for mou_id in dict.fromkeys(m.mou_id for m in self.mous):
            docs[f"{MOU_DIR}/{mou_id}.yaml"] = {
                "mou_id": mou_id,
                "versions": [m.model_dump(mode="json", exclude={"mou_id"}) for m in self.mou_versions(mou_id)],
            }
        return docs


def _check_namespace(namespace: str) -> None:
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"bad topic namespace {namespace!r}: letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 100 characters"
        )


# --------------------------------------------------------------------------- loading

LineMap = Mapping[Loc, int]


def load_world(root: Path) -> World:
    """Load and check the world declared in ``root`` (the ``topics/`` folder)."""
    root = Path(root)
    if not root.is_dir():
        raise WorldInvalid([Problem(file=str(root), reason="world folder not found")])
    docs: dict[str, Any] = {}
    lines: dict[str, LineMap] = {}
    stray: list[Problem] = []
    names = [AGENCY_FILE, PROGRAM_FILE, TOPIC_FILE]
    mou_dir = root / MOU_DIR
    if mou_dir.is_dir():
        for path in sorted(mou_dir.iterdir()):
            rel = f"{MOU_DIR}/{path.name}"
            if path.suffix == ".yaml":
                names.append(rel)
            elif path.suffix == ".yml":
                # Silently skipping an MOU because of its extension would drop its measures.
                stray.append(Problem(file=rel, reason="MOU files must end in .yaml"))
    for name in names:
        path = root / name
        if not path.is_file():
            continue  # reported by parse_world as a missing file
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WorldInvalid([Problem(file=name, reason=f"cannot read: {exc}")]) from exc
        try:
            doc = read_yaml(text, name)
        except YamlInvalid as exc:
            raise WorldInvalid(exc.problems) from None
        docs[name], lines[name] = doc.value, doc.lines
    if stray:
        _raise(stray)
    return _Parser(lines).parse(docs)


def parse_world(docs: Mapping[str, Any], lines: Mapping[str, LineMap] | None = None) -> World:
    """Check and build a world from already-parsed documents.

    ``docs`` maps file names relative to ``topics/`` (``agencies.yaml``,
    ``programs.yaml``, ``topics.yaml``, ``mous/<mou_id>.yaml``) to their content, so
    tests and the registry build worlds without files. ``lines`` optionally maps each
    file to ``{path tuple: line}`` for error messages.
    """
    return _Parser(lines or {}).parse(docs)


def _raise(problems: list[Problem]) -> NoReturn:
    raise WorldInvalid(problems)


_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class _MouSource:
    file: str
    index: int  # position in the file's versions list
    mou: Mou

    @property
    def loc(self) -> Loc:
        return ("versions", self.index)


class _Parser:
    """Collects every problem of a world, then raises them together."""

    def __init__(self, lines: Mapping[str, LineMap]) -> None:
        self.lines = lines
        self.problems: list[Problem] = []

    # -- reporting

    def problem(self, file: str, loc: Loc, reason: str) -> None:
        line = line_of(self.lines.get(file, {}), loc)
        self.problems.append(Problem(file=file, line=line, path=format_path(loc), reason=reason))

    def check_point(self) -> None:
        if self.problems:
            _raise(self.problems)

    def validate(self, model: type[_M], data: Any, file: str, loc: Loc = ()) -> _M | None:
        if not isinstance(data, Mapping):
            self.problem(file, loc, f"expected a mapping, got {type(data).__name__}")
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            doc = YamlDocument(file, data, self.lines.get(file, {}))
            self.problems.extend(model_problems(exc, doc, file=file, loc=loc))
            return None

    # -- the whole world

    def parse(self, docs: Mapping[str, Any]) -> World:
        for name in (AGENCY_FILE, PROGRAM_FILE, TOPIC_FILE):
            if name not in docs:
                self.problem(name, (), "file is missing")
        for name in docs:
            if name not in (AGENCY_FILE, PROGRAM_FILE, TOPIC_FILE) and not (
                name.startswith(f"{MOU_DIR}/") and name.endswith(".yaml") and name.count("/") == 1
            ):
                self.problem(name, (), "not a file of the declared world")
        self.check_point()

        agencies_doc = self.validate(_AgenciesDoc, docs[AGENCY_FILE], AGENCY_FILE)
        programs_doc = self.validate(_ProgramsDoc, docs[PROGRAM_FILE], PROGRAM_FILE)
        templates = self.parse_topics(docs[TOPIC_FILE])
        quotas = self.parse_quotas(docs[TOPIC_FILE])
        retention = self.parse_retention(docs[TOPIC_FILE])
        mou_sources: list[_MouSource] = []
        for name in sorted(n for n in docs if n.startswith(f"{MOU_DIR}/")):
            mou_sources.extend(self.parse_mou_file(name, docs[name]))
        self.check_point()
        if agencies_doc is None or programs_doc is None or templates is None:  # reported: check_point raised
            _raise(self.problems)

        agencies = self.check_agencies(agencies_doc.agencies)
        programs = self.check_programs(programs_doc.programs, agencies)
        self.check_mous(mou_sources, agencies, programs)
        self.check_topics(templates, agencies)
        self.check_quotas(quotas, agencies)
        self.check_point()

        mous = sorted((s.mou for s in mou_sources), key=lambda m: (m.mou_id, m.version))
        return World(
            agencies=agencies,
            programs=programs,
            mous=tuple(mous),
            topic_templates=templates,
            quotas=quotas,
            retention=retention,
        )

    # -- shapes

    def parse_topics(self, data: Any) -> dict[TopicKind, TopicTemplate] | None:
        doc = self.validate(_TopicsDoc, data, TOPIC_FILE)
        if doc is None:
            return None
        templates: dict[TopicKind, TopicTemplate] = {}
        for kind in TOPIC_KINDS:
            if kind not in doc.topics:
                self.problem(TOPIC_FILE, ("topics",), f"missing topic kind {kind!r}")
                continue
            body = doc.topics[kind]
            loc: Loc = ("topics", kind)
            if "kind" in body:
                self.problem(TOPIC_FILE, loc + ("kind",), "unknown key (the kind is the key under topics)")
                continue
            template = self.validate(TopicTemplate, {**body, "kind": kind}, TOPIC_FILE, loc)
            if template is not None:
                templates[kind] = template
        return templates

    def parse_quotas(self, data: Any) -> Quotas:
        section = data.get("quotas") if isinstance(data, Mapping) else None
        if section is None:
            return Quotas()
        return self.validate(Quotas, section, TOPIC_FILE, ("quotas",)) or Quotas()

    def parse_retention(self, data: Any) -> Retention:
        section = data.get("retention") if isinstance(data, Mapping) else None
        if section is None:
            return Retention()
        return self.validate(Retention, section, TOPIC_FILE, ("retention",)) or Retention()

    def check_quotas(self, quotas: Quotas, agencies: Mapping[str, Agency]) -> None:
        for name in quotas.principals:
            loc: Loc = ("quotas", "principals", name)
            if name in UNTHROTTLED:
                self.problem(
                    TOPIC_FILE,
                    loc,
                    f"{name} is never throttled: the fan-out carries every agency's "
                    "delistings and the admin must always be able to repair",
                )
            elif name not in agencies and not name.startswith("concord-"):
                known = ", ".join(sorted(agencies))
                self.problem(
                    TOPIC_FILE,
                    loc,
                    f"unknown principal {name!r}: an agency ({known}) or a Concord service principal (concord-...)",
                )

    def parse_mou_file(self, file: str, data: Any) -> list[_MouSource]:
        doc = self.validate(_MouDoc, data, file)
        if doc is None:
            return []
        stem = file[len(MOU_DIR) + 1 : -len(".yaml")]
        if doc.mou_id != stem:
            self.problem(file, ("mou_id",), f"file declares MOU {doc.mou_id!r} but is named {stem}.yaml")
        sources: list[_MouSource] = []
        for index, body in enumerate(doc.versions):
            loc: Loc = ("versions", index)
            if "mou_id" in body:
                self.problem(
                    file,
                    loc + ("mou_id",),
                    "unknown key (mou_id is declared once at the top of the file)",
                )
                continue
            mou = self.validate(Mou, {**body, "mou_id": doc.mou_id}, file, loc)
            if mou is not None:
                sources.append(_MouSource(file, index, mou))
        return sources

    # -- consistency

    def check_agencies(self, items: tuple[Agency, ...]) -> dict[str, Agency]:
        agencies: dict[str, Agency] = {}
        first: dict[str, int] = {}
        for index, agency in enumerate(items):
            if agency.agency_id in agencies:
                self.problem(
                    AGENCY_FILE,
                    ("agencies", index, "agency_id"),
                    f"agency {agency.agency_id!r} declared twice (first at agencies[{first[agency.agency_id]}])",
                )
                continue
            agencies[agency.agency_id] = agency
            first[agency.agency_id] = index
        return agencies

    def check_agency_ref(
        self,
        file: str,
        loc: Loc,
        agency_id: str,
        agencies: Mapping[str, Agency],
        role: Literal["publishes", "implements"] | None = None,
    ) -> bool:
        agency = agencies.get(agency_id)
        if agency is None:
            self.problem(file, loc, f"unknown agency {agency_id!r}")
            return False
        if role == "publishes" and not agency.publishes:
            self.problem(file, loc, f"agency {agency_id!r} does not publish (publishes: false in {AGENCY_FILE})")
            return False
        if role == "implements" and not agency.implements:
            self.problem(
                file,
                loc,
                f"agency {agency_id!r} is not an implementer (implements: false in {AGENCY_FILE})",
            )
            return False
        return True

    def check_programs(self, items: tuple[Program, ...], agencies: Mapping[str, Agency]) -> dict[str, Program]:
        programs: dict[str, Program] = {}
        first: dict[str, int] = {}
        for index, program in enumerate(items):
            loc: Loc = ("programs", index)
            held = programs.get(program.program_id)
            if held is not None:
                where = f"programs[{first[program.program_id]}]"
                if held.owner != program.owner:
                    self.problem(
                        PROGRAM_FILE,
                        loc + ("owner",),
                        f"program {program.program_id!r} has two owners: {held.owner!r} ({where}) "
                        f"and {program.owner!r}",
                    )
                else:
                    self.problem(
                        PROGRAM_FILE,
                        loc + ("program_id",),
                        f"program {program.program_id!r} declared twice (first at {where})",
                    )
                continue
            programs[program.program_id] = program
            first[program.program_id] = index
            owner_loc = loc + ("owner",)
            if self.check_agency_ref(PROGRAM_FILE, owner_loc, program.owner, agencies, "publishes"):
                namespace = program.program_id.split(".", 1)[0]
                if namespace != program.owner:
                    self.problem(
                        PROGRAM_FILE,
                        loc + ("program_id",),
                        f"program {program.program_id!r} is owned by {program.owner!r}, so its id "
                        f"must start with '{program.owner}.'",
                    )
        return programs

    def check_mous(
        self,
        sources: list[_MouSource],
        agencies: Mapping[str, Agency],
        programs: Mapping[str, Program],
    ) -> None:
        by_file: dict[str, list[_MouSource]] = {}
        for source in sources:
            by_file.setdefault(source.file, []).append(source)
            self.check_mou_version(source, agencies, programs)
        for versions in by_file.values():
            self.check_version_history(versions)
        self.check_measure_kinds_agree(sources)

    def check_mou_version(
        self, source: _MouSource, agencies: Mapping[str, Agency], programs: Mapping[str, Program]
    ) -> None:
        mou, file, loc = source.mou, source.file, source.loc
        for i, signatory in enumerate(mou.signatories):
            self.check_agency_ref(file, loc + ("signatories", i), signatory, agencies)
        signed = set(mou.signatories)

        trigger_kinds: set[ListKind] = set()
        for i, program_id in enumerate(mou.trigger_programs):
            program = programs.get(program_id)
            if program is None:
                self.problem(file, loc + ("trigger_programs", i), f"unknown program {program_id!r}")
                continue
            trigger_kinds.add(program.list_kind)
            # An unknown owner is reported in programs.yaml; repeating it here is noise.
            if program.owner in agencies and program.owner not in signed:
                self.problem(
                    file,
                    loc + ("signatories",),
                    f"{program.owner!r} owns trigger program {program_id!r} but is not a signatory",
                )

        seen: dict[str, int] = {}
        bad_agency_refs = False
        for i, measure in enumerate(mou.measures):
            mloc = loc + ("measures", i)
            if measure.measure_id in seen:
                self.problem(
                    file,
                    mloc + ("measure_id",),
                    f"duplicate measure {measure.measure_id!r} (also measures[{seen[measure.measure_id]}])",
                )
            else:
                seen[measure.measure_id] = i
            agency_id = measure.implementing_agency
            if not self.check_agency_ref(file, mloc + ("implementing_agency",), agency_id, agencies, "implements"):
                bad_agency_refs = True
            else:
                if agency_id not in signed:
                    self.problem(
                        file,
                        mloc + ("implementing_agency",),
                        f"{agency_id!r} implements this measure but is not a signatory",
                    )
                if measure.measure_id.split(".", 1)[0] != agency_id:
                    self.problem(
                        file,
                        mloc + ("measure_id",),
                        f"measure {measure.measure_id!r} is implemented by {agency_id!r}, so its id "
                        f"must start with '{agency_id}.'",
                    )
            for list_kind in sorted(trigger_kinds):
                if LIST_KIND_MEASURE[list_kind] != measure.kind:
                    self.problem(
                        file,
                        mloc + ("kind",),
                        f"{measure.kind} measures cannot be triggered by {list_kind} programs "
                        f"({list_kind} triggers {LIST_KIND_MEASURE[list_kind]})",
                    )

        # While an implementing agency is misspelt, which agencies implement this version
        # is unclear; judging visible_fields against the typo would only add noise.
        implementers = {m.implementing_agency for m in mou.measures}
        for agency_id, fields in mou.visible_fields.items():
            floc = loc + ("visible_fields", agency_id)
            if agency_id not in agencies:
                self.problem(file, floc, f"unknown agency {agency_id!r}")
            elif bad_agency_refs:
                continue
            elif agency_id not in implementers:
                self.problem(
                    file,
                    floc,
                    f"{agency_id!r} implements no measure of this version, so it may see no subject fields",
                )
            elif "identifiers" not in fields:
                self.problem(
                    file,
                    floc,
                    "must include 'identifiers': an implementing agency matches subjects by identifier",
                )
        for agency_id in sorted(implementers - set(mou.visible_fields)):
            if not bad_agency_refs:
                self.problem(
                    file,
                    loc + ("visible_fields",),
                    f"no visible fields declared for implementing agency {agency_id!r}",
                )

    def check_version_history(self, versions: list[_MouSource]) -> None:
        numbers: dict[int, _MouSource] = {}
        for source in versions:
            held = numbers.get(source.mou.version)
            if held is not None:
                self.problem(
                    source.file,
                    source.loc + ("version",),
                    f"version {source.mou.version} declared twice (also versions[{held.index}])",
                )
                return
            numbers[source.mou.version] = source
        ordered = [numbers[n] for n in sorted(numbers)]
        for earlier, later in itertools.pairwise(ordered):
            if later.mou.valid_from <= earlier.mou.valid_from:
                self.problem(
                    later.file,
                    later.loc + ("valid_from",),
                    f"version {later.mou.version} starts {later.mou.valid_from}, not after version "
                    f"{earlier.mou.version} ({earlier.mou.valid_from}); "
                    "later versions must start later",
                )
                return
        for i, later in enumerate(ordered):
            for earlier in ordered[:i]:
                if earlier.mou.overlaps(later.mou):
                    self.problem(
                        later.file,
                        later.loc + ("valid_from",),
                        f"version {later.mou.version} ({_period(later.mou)}) overlaps version "
                        f"{earlier.mou.version} ({_period(earlier.mou)}); end version "
                        f"{earlier.mou.version} (valid_until or terminated_on) on or before "
                        f"{later.mou.valid_from}",
                    )

    def check_measure_kinds_agree(self, sources: list[_MouSource]) -> None:
        # The same measure id in several MOUs is the same legal measure (one subscriber
        # check per measure); it cannot punish in one MOU and reward in another.
        first: dict[str, tuple[_MouSource, Measure]] = {}
        for source in sources:
            for i, measure in enumerate(source.mou.measures):
                held = first.setdefault(measure.measure_id, (source, measure))
                if held[1].kind != measure.kind:
                    other = held[0].mou
                    self.problem(
                        source.file,
                        source.loc + ("measures", i, "kind"),
                        f"measure {measure.measure_id!r} is {held[1].kind} in {other.mou_id} "
                        f"v{other.version} but {measure.kind} here",
                    )

    def check_topics(self, templates: Mapping[TopicKind, TopicTemplate], agencies: Mapping[str, Agency]) -> None:
        before = len(self.problems)
        for kind, template in templates.items():
            loc: Loc = ("topics", kind)
            self.check_topic_name(loc + ("name",), template)
            for key in template.config:
                if key in _RESERVED_CONFIGS:
                    self.problem(
                        TOPIC_FILE,
                        loc + ("config", key),
                        f"set {_RESERVED_CONFIGS[key]} instead of the raw {key} config",
                    )
            if template.overrides and template.scope is None:
                self.problem(
                    TOPIC_FILE,
                    loc + ("overrides",),
                    f"{kind} is one shared topic; it has no per-agency overrides",
                )
                continue
            role: Literal["publishes", "implements"] = "publishes" if template.scope == "publishers" else "implements"
            for agency_id, override in template.overrides.items():
                oloc = loc + ("overrides", agency_id)
                self.check_agency_ref(TOPIC_FILE, oloc, agency_id, agencies, role)
                for key in override.config:
                    if key in _RESERVED_CONFIGS:
                        self.problem(
                            TOPIC_FILE,
                            oloc + ("config", key),
                            f"set {_RESERVED_CONFIGS[key]} instead of the raw {key} config",
                        )
        if len(self.problems) > before or len(templates) != len(TOPIC_KINDS):
            return
        world = World(agencies=agencies, programs={}, mous=(), topic_templates=templates)
        self.check_list_partitions(world)
        self.check_topic_names_unique(world)
        self.check_min_insync(world)

    def check_min_insync(self, world: World) -> None:
        # More replicas required in sync than exist would refuse every acks=all write.
        for spec in world.topic_specs():
            if spec.min_insync_replicas > spec.replication:
                template = world.topic_templates[spec.kind]
                override = template.overrides.get(spec.agency) if spec.agency else None
                loc: Loc = ("topics", spec.kind)
                if override is not None and (override.min_insync_replicas or override.replication):
                    loc += ("overrides", spec.agency or "")
                self.problem(
                    TOPIC_FILE,
                    loc + ("min_insync_replicas",),
                    f"min_insync_replicas {spec.min_insync_replicas} exceeds the replication "
                    f"{spec.replication} of {spec.name}: no acks=all write could succeed",
                )
                return

    def check_topic_name(self, loc: Loc, template: TopicTemplate) -> None:
        try:
            fields = [
                (name, spec, conversion)
                for _, name, spec, conversion in string.Formatter().parse(template.name)
                if name is not None
            ]
        except ValueError as exc:
            self.problem(TOPIC_FILE, loc, f"bad name template {template.name!r}: {exc}")
            return
        names = {name for name, _, _ in fields}
        unknown = names - {"ns", "agency"}
        if unknown or any(spec or conversion for _, spec, conversion in fields):
            self.problem(
                TOPIC_FILE,
                loc,
                f"bad name template {template.name!r}: only plain {{ns}} and {{agency}} placeholders are allowed",
            )
            return
        if "ns" not in names:
            self.problem(TOPIC_FILE, loc, f"name template {template.name!r} must contain {{ns}}")
        if template.scope is not None and "agency" not in names:
            self.problem(
                TOPIC_FILE,
                loc,
                f"name template {template.name!r} must contain {{agency}}: "
                f"there is one {template.kind} topic per agency",
            )
        if template.scope is None and "agency" in names:
            self.problem(
                TOPIC_FILE,
                loc,
                f"name template {template.name!r} must not contain {{agency}}: {template.kind} is one shared topic",
            )
        sample = template.name.format(ns="concord", agency="agency")
        if not _TOPIC_CHARS.fullmatch(sample) or len(sample) > _KAFKA_TOPIC_MAX:
            self.problem(
                TOPIC_FILE,
                loc,
                f"name template {template.name!r} gives {sample!r}, not a legal Kafka topic name "
                "(letters, digits, '.', '_', '-')",
            )

    def check_list_partitions(self, world: World) -> None:
        # The fan-out keeps one state partition per partition number: a worker owns partition p
        # of every list topic, every receipts topic and its state changelog together, so all of
        # them need the same partition count (Kafka Streams calls it co-partitioning).
        base = world.topic_templates["lists"].partitions
        for spec in world.topic_specs():
            if spec.kind not in CO_PARTITIONED or spec.partitions == base:
                continue
            loc: Loc = (
                ("topics", spec.kind, "overrides", spec.agency, "partitions")
                if spec.agency and spec.agency in world.topic_templates[spec.kind].overrides
                else ("topics", spec.kind, "partitions")
            )
            who = f"{spec.kind} of {spec.agency}" if spec.agency else spec.kind
            self.problem(
                TOPIC_FILE,
                loc,
                f"{', '.join(CO_PARTITIONED)} topics must all have the same partition count (the fan-out "
                f"co-partitions them): {who} has {spec.partitions}, the list topics {base}",
            )

    def check_topic_names_unique(self, world: World) -> None:
        seen: dict[str, TopicSpec] = {}
        for spec in world.topic_specs():
            held = seen.setdefault(spec.name, spec)
            if held is not spec:
                self.problem(
                    TOPIC_FILE,
                    ("topics", spec.kind, "name"),
                    f"topic {spec.name!r} would be both a {held.kind} and a {spec.kind} topic",
                )


def _period(mou: Mou) -> str:
    end = mou.ends_on
    return f"{mou.valid_from} to {end}" if end is not None else f"from {mou.valid_from}, open-ended"


class _AgenciesDoc(_Frozen):
    agencies: Annotated[tuple[Agency, ...], Field(min_length=1)]


class _ProgramsDoc(_Frozen):
    programs: tuple[Program, ...]


class _MouDoc(_Frozen):
    mou_id: MouId
    versions: Annotated[tuple[dict[str, Any], ...], Field(min_length=1)]


class _TopicsDoc(_Frozen):
    topics: dict[TopicKind, dict[str, Any]]
    quotas: Any = None  # checked by _Parser.parse_quotas
    retention: Any = None  # checked by _Parser.parse_retention


def iter_problems(error: WorldInvalid) -> Iterator[Problem]:
    """The individual problems of a :class:`WorldInvalid` raised by the loaders."""
    yield from error.problems
