"""Loading the world from ``topics/``: each file's YAML read with its lines, its shape
checked by the models, then the world checked as a whole (:mod:`.checks`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
)

from services.core.documents import YamlDocument, YamlInvalid, model_problems, read_yaml
from services.core.errors import WorldInvalid
from services.core.problems import Loc, Problem
from services.core.world.checks import LineMap, MouSource, WorldChecks
from services.core.world.fields import Frozen, MouId
from services.core.world.model import (
    AGENCY_FILE,
    MOU_DIR,
    PROGRAM_FILE,
    TOPIC_FILE,
    Agency,
    Mou,
    Program,
    World,
)
from services.core.world.topics import TOPIC_KINDS, Quotas, Retention, TopicKind, TopicTemplate


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


class _Parser(WorldChecks):
    """Checks the shape of every file, then the world as a whole; raises every problem together."""

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
        mou_sources: list[MouSource] = []
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

    def parse_mou_file(self, file: str, data: Any) -> list[MouSource]:
        doc = self.validate(_MouDoc, data, file)
        if doc is None:
            return []
        stem = file[len(MOU_DIR) + 1 : -len(".yaml")]
        if doc.mou_id != stem:
            self.problem(file, ("mou_id",), f"file declares MOU {doc.mou_id!r} but is named {stem}.yaml")
        sources: list[MouSource] = []
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
                sources.append(MouSource(file, index, mou))
        return sources


class _AgenciesDoc(Frozen):
    agencies: Annotated[tuple[Agency, ...], Field(min_length=1)]


class _ProgramsDoc(Frozen):
    programs: tuple[Program, ...]


class _MouDoc(Frozen):
    mou_id: MouId
    versions: Annotated[tuple[dict[str, Any], ...], Field(min_length=1)]


class _TopicsDoc(Frozen):
    topics: dict[TopicKind, dict[str, Any]]
    quotas: Any = None  # checked by _Parser.parse_quotas
    retention: Any = None  # checked by _Parser.parse_retention


def iter_problems(error: WorldInvalid) -> Iterator[Problem]:
    """The individual problems of a :class:`WorldInvalid` raised by the loaders."""
    yield from error.problems
