"""The declared world: agencies, the programs (lists) they publish, versioned MOUs and their
measures, and the topics they need.  Frozen pydantic models; build them with
:func:`services.core.world.load_world` or :func:`~services.core.world.parse_world`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)

from services.core.models import ListKind, MeasureKind
from services.core.world.fields import (
    AgencyId,
    AppliesTo,
    Count,
    Day,
    Frozen,
    FrozenMapping,
    MeasureId,
    MouId,
    ProgramId,
    SubjectField,
    Text,
    unique,
)
from services.core.world.topics import (
    TOPIC_KINDS,
    Quotas,
    Retention,
    TopicKind,
    TopicSpec,
    TopicTemplate,
    check_namespace,
)

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


class Agency(Frozen):
    """A government department taking part in the exchange."""

    agency_id: AgencyId
    name: Text
    publishes: Annotated[bool, Strict()]
    implements: Annotated[bool, Strict()]

    @property
    def principal(self) -> str:
        """The Kafka principal the agency authenticates as (SCRAM user = agency id)."""
        return f"User:{self.agency_id}"


class Program(Frozen):
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


class Measure(Frozen):
    """One clause of an MOU: what an implementing agency does to a listed subject."""

    measure_id: MeasureId
    kind: MeasureKind
    text: Text
    implementing_agency: AgencyId
    legal_basis: Text
    applies_to: Annotated[tuple[AppliesTo, ...], Field(min_length=1), AfterValidator(unique)]

    def applies_to_subject(self, kind: str) -> bool:
        """Whether the measure targets a listed subject of this kind itself.

        ``kind`` is a :class:`~services.core.models.SubjectKind` or its value.
        """
        return kind in self.applies_to

    def related_roles(self) -> frozenset[str]:
        """Roles of related parties (``RELATED:<ROLE>``) the measure reaches through the subject."""
        return frozenset(item[len("RELATED:") :] for item in self.applies_to if item.startswith("RELATED:"))


class Mou(Frozen):
    """One version of a memorandum of understanding: a versioned measure catalogue.

    An amendment is a new version with a later ``valid_from``; the previous version
    must end (``valid_until`` or ``terminated_on``) no later than the new one starts.
    """

    mou_id: MouId
    version: Count
    title: Text
    document_no: Text
    signatories: Annotated[tuple[AgencyId, ...], Field(min_length=1), AfterValidator(unique)]
    valid_from: Day
    valid_until: Day | None = None
    terminated_on: Day | None = None
    trigger_programs: Annotated[tuple[ProgramId, ...], Field(min_length=1), AfterValidator(unique)]
    measures: Annotated[tuple[Measure, ...], Field(min_length=1)]
    visible_fields: FrozenMapping[AgencyId, Annotated[tuple[SubjectField, ...], AfterValidator(unique)]]

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


class World(Frozen):
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
        check_namespace(namespace)
        specs: list[TopicSpec] = []
        for kind in TOPIC_KINDS:
            template = self.topic_templates[kind]
            specs.extend(template.render(namespace, agency) for agency in self._scope_agencies(template))
        return tuple(specs)

    def topic_spec(self, kind: TopicKind, agency: str | None = None, namespace: str = "concord") -> TopicSpec:
        """The spec of one topic; ``agency`` is required exactly for per-agency kinds."""
        check_namespace(namespace)
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
