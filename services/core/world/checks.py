"""Consistency checks across the world's files: what the shapes of single files cannot say
(an MOU naming an agency that does not exist, two MOU versions in force on one day, a
measure that rewards where its program punishes, topics that would not co-partition)."""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from services.core.documents import line_of
from services.core.models import ListKind
from services.core.principals import UNTHROTTLED
from services.core.problems import Loc, Problem, format_path
from services.core.world.model import (
    AGENCY_FILE,
    LIST_KIND_MEASURE,
    PROGRAM_FILE,
    TOPIC_FILE,
    Agency,
    Measure,
    Mou,
    Program,
    World,
)
from services.core.world.topics import (
    CO_PARTITIONED,
    KAFKA_TOPIC_MAX,
    RESERVED_CONFIGS,
    TOPIC_CHARS,
    TOPIC_KINDS,
    Quotas,
    TopicKind,
    TopicSpec,
    TopicTemplate,
)

#: Per file: the line of every value, by its location.
LineMap = Mapping[Loc, int]


@dataclass(frozen=True)
class MouSource:
    file: str
    index: int  # position in the file's versions list
    mou: Mou

    @property
    def loc(self) -> Loc:
        return ("versions", self.index)


class WorldChecks:
    """The consistency checks of a world whose files each have the right shape: references
    between files, version histories, topic names and partitions.  Problems are collected,
    not raised, so that every one is reported at once."""

    def __init__(self, lines: Mapping[str, LineMap]) -> None:
        self.lines = lines
        self.problems: list[Problem] = []

    # -- reporting

    def problem(self, file: str, loc: Loc, reason: str) -> None:
        line = line_of(self.lines.get(file, {}), loc)
        self.problems.append(Problem(file=file, line=line, path=format_path(loc), reason=reason))

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
        sources: list[MouSource],
        agencies: Mapping[str, Agency],
        programs: Mapping[str, Program],
    ) -> None:
        by_file: dict[str, list[MouSource]] = {}
        for source in sources:
            by_file.setdefault(source.file, []).append(source)
            self.check_mou_version(source, agencies, programs)
        for versions in by_file.values():
            self.check_version_history(versions)
        self.check_measure_kinds_agree(sources)

    def check_mou_version(
        self, source: MouSource, agencies: Mapping[str, Agency], programs: Mapping[str, Program]
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

    def check_version_history(self, versions: list[MouSource]) -> None:
        numbers: dict[int, MouSource] = {}
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

    def check_measure_kinds_agree(self, sources: list[MouSource]) -> None:
        # The same measure id in several MOUs is the same legal measure (one subscriber
        # check per measure); it cannot punish in one MOU and reward in another.
        first: dict[str, tuple[MouSource, Measure]] = {}
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

    def check_raw_configs(self, loc: Loc, config: Iterable[str]) -> None:
        """A Kafka config Concord sets from a setting of its own may not be given raw."""
        for key in config:
            if key in RESERVED_CONFIGS:
                self.problem(
                    TOPIC_FILE, loc + ("config", key), f"set {RESERVED_CONFIGS[key]} instead of the raw {key} config"
                )

    def check_topics(self, templates: Mapping[TopicKind, TopicTemplate], agencies: Mapping[str, Agency]) -> None:
        before = len(self.problems)
        for kind, template in templates.items():
            loc: Loc = ("topics", kind)
            self.check_topic_name(loc + ("name",), template)
            self.check_raw_configs(loc, template.config)
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
                self.check_raw_configs(oloc, override.config)
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
        if not TOPIC_CHARS.fullmatch(sample) or len(sample) > KAFKA_TOPIC_MAX:
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
