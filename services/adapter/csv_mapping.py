"""
The mapping file: how the columns of an agency's CSV export become the fields of a record.

Mapping file format (YAML; ``deploy/examples/court-mapping.yaml`` is a full example)::

    csv:                         # optional, how to read the file
      delimiter: ","             # one character (default ",")
      quotechar: '"'             # one character (default '"')
      encoding: utf-8-sig        # any Python codec, e.g. gb18030 (default utf-8-sig,
                                 # which also reads UTF-8 with or without a BOM)
      columns: [a, b, c]         # only for files WITHOUT a header line: the column
                                 # names in order; otherwise the first line is the header
    fields:                      # required: target path -> where its value comes from
      entry_id: case_no                              # shorthand for {column: case_no}
      version: {column: version, type: int}
      list_kind: {const: SANCTION}                   # the same value on every row
      event_id: {template: "court:{case_no}:{version}"}  # columns put into a text
      event_type:
        column: action
        map: {L: LISTED, D: DELISTED}                # translate the agency's codes
      basis.decided_on: {column: decided, type: date, format: "%Y/%m/%d"}
      effective_from: {column: listed, type: datetime, format: "%Y/%m/%d",
                       timezone: "+08:00"}
      subject.identifiers[0].value: uscc             # nested paths, list indexes
      delisting.reason: {column: why, default: OTHER}

Target paths name fields of the record shape (``subject.related_parties[0].names[0]
.value``) and are checked against it when the mapping is loaded, so a typo is a
mapping error, not a thousand rejected rows.  Each field takes exactly one of
``column``, ``const`` or ``template``; the other keys are:

``type``      ``string`` (default), ``int``, ``date`` or ``datetime``
``format``    a ``strptime`` format for ``date``/``datetime`` cells (default: ISO 8601)
``timezone``  for ``datetime`` cells without an offset: ``UTC``, ``+08:00`` or an IANA
              name such as ``Asia/Shanghai``; required when ``format`` has no ``%z``
``map``       cell value -> field value; a value not in the map is a row problem
``default``   the value when the cell is empty

Errors in the mapping file raise :class:`MappingInvalid` (a ``ConfigError``) carrying a
:class:`~services.core.problems.Problem` per mistake (file, line, path such as
``fields["subject.kind"].column``, reason), all at once.  The file is read by the same
YAML reader as the declared world (:mod:`services.core.documents`) and checked by the
pydantic models below; the rows themselves are read by :mod:`.csv_source`.
"""

from __future__ import annotations

import codecs
import io
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO, Annotated, Any, Literal, cast, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.core.documents import YamlDocument, YamlInvalid, model_problems, read_yaml, unwrap_optional
from services.core.errors import ConfigError
from services.core.models import ListEntryEvent
from services.core.problems import Loc, Problem, describe

__all__ = ["CsvMapping", "FieldRule", "FieldType", "MappingInvalid", "load_mapping", "parse_mapping"]

FieldType = Literal["string", "int", "date", "datetime"]
_TYPES: tuple[FieldType, ...] = get_args(FieldType)
_SOURCES = ("column", "const", "template")
_SEGMENT = re.compile(r"([a-z_][a-z0-9_]*)((?:\[\d+\])*)")
MAX_INDEX = 99


class MappingInvalid(ConfigError):
    """A mapping file (or a CSV header) that cannot be used; every problem at once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(describe(self.problems, "the mapping"))


# --------------------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class FieldRule:
    """Where one field of the record comes from."""

    target: str
    path: tuple[str | int, ...]
    column: str | None = None
    const: Any = None
    template: str | None = None
    template_columns: tuple[str, ...] = ()
    type: FieldType = "string"
    format: str | None = None
    tz: tzinfo | None = None
    values: Mapping[str, Any] | None = None
    default: Any = None
    line: int | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column is not None else self.template_columns


@dataclass(frozen=True)
class CsvMapping:
    source: str
    rules: tuple[FieldRule, ...]
    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8-sig"
    columns: tuple[str, ...] | None = None

    def needed_columns(self) -> dict[str, list[str]]:
        """Column name -> the targets that read it."""
        out: dict[str, list[str]] = {}
        for r in self.rules:
            for c in r.columns:
                out.setdefault(c, []).append(r.target)
        return out

    def wrap(self, raw: IO[bytes]) -> io.TextIOWrapper:
        """An open binary file as text the way csv wants it (bytes not in the encoding kept
        as surrogates, so that the row holding them is refused, not the file).  Detach it
        when done if ``raw`` must stay open."""
        return io.TextIOWrapper(raw, encoding=self.encoding, errors="surrogateescape", newline="")


# --------------------------------------------------------------------------- the file's models


def _nonempty_text(value: Any) -> Any:
    if value is None or value == "":
        raise ValueError("must be a non-empty text")
    if isinstance(value, (dict, list)):
        raise ValueError("must be a non-empty text")  # noqa: TRY004 - pydantic wants ValueError
    return value


def _single_value(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        raise ValueError("must be a single value, not a list or mapping")  # noqa: TRY004 - pydantic wants ValueError
    return value


def _one_character(value: str) -> str:
    if len(value) != 1:
        raise ValueError(f"must be one character, got {value!r}")
    return value


def _known_encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown encoding {value!r}") from None
    return value


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise ValueError(f"duplicate column names: {', '.join(dupes)}")
    return names


def _known_type(value: str) -> str:
    if value not in _TYPES:
        raise ValueError(f"unknown type {value!r} (expected {', '.join(_TYPES)})")
    return value


Text = Annotated[str, BeforeValidator(_nonempty_text)]
Const = Annotated[Any, BeforeValidator(_single_value)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CsvOptions(_Model):
    """The ``csv:`` section: how to read the file."""

    delimiter: Annotated[Text, AfterValidator(_one_character)] = ","
    quotechar: Annotated[Text, AfterValidator(_one_character)] = '"'
    encoding: Annotated[Text, AfterValidator(_known_encoding)] = "utf-8-sig"
    columns: Annotated[tuple[Text, ...], AfterValidator(_distinct)] | None = None

    @field_validator("columns")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("must be a non-empty list of column names")
        return value


class FieldSpec(_Model):
    """One entry of ``fields:`` (a bare column name is read as ``{column: NAME}``)."""

    column: Text | None = None
    const: Const = None
    template: Text | None = None
    type: Annotated[Text, AfterValidator(_known_type)] = "string"
    format: Text | None = None
    timezone: Text | None = None
    map: Mapping[str, Const] | None = None
    default: Const = None

    @field_validator("const")
    @classmethod
    def _const_given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be empty (leave the field unmapped)")
        return value

    @field_validator("template")
    @classmethod
    def _template_names_columns(cls, value: str | None) -> str | None:
        if value is not None:
            template_columns(value)
        return value

    @field_validator("format")
    @classmethod
    def _format_for_dates(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.data.get("type", "string") not in ("date", "datetime"):
            raise ValueError("only a date or datetime field takes a format")
        reason = _format_problem(value)
        if reason is not None:
            raise ValueError(reason)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.data.get("type", "string") != "datetime":
            raise ValueError("only a datetime field takes a timezone")
        if parse_timezone(value) is None:
            raise ValueError(f"unknown time zone {value!r} (use UTC, an offset like +08:00, or e.g. Asia/Shanghai)")
        return value

    @field_validator("map")
    @classmethod
    def _map_of_a_column(cls, value: Mapping[str, Any] | None, info: ValidationInfo) -> Mapping[str, Any] | None:
        if value is None:
            return value
        if info.data.get("template") is not None:
            raise ValueError("only a column can be mapped through a map")
        if not value:
            raise ValueError("must be a non-empty mapping of cell value -> field value")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        reason = source_problem([k for k in _SOURCES if getattr(self, k) is not None])
        if reason is None and self.const is not None:
            extra = [k for k in ("type", "format", "timezone", "map", "default") if k in self.model_fields_set]
            reason = f"a const takes no {', '.join(extra)}" if extra else None
        if reason is None and self.type == "datetime" and self.format and "%z" not in self.format and not self.timezone:
            reason = 'a datetime format without %z needs a timezone (e.g. timezone: "+08:00")'
        if reason is not None:
            raise ValueError(reason)
        return self


class _MappingFile(_Model):
    csv: Any = None  # checked as CsvOptions
    fields: Any = None  # checked entry by entry as FieldSpec


def source_problem(sources: Sequence[str]) -> str | None:
    """Why a field spec with these of column, const and template is wrong, or None."""
    if len(sources) == 1:
        return None
    got = f"got {', '.join(sources)}" if sources else "got none"
    return f"needs exactly one of column, const, template ({got})"


def template_columns(text: str) -> tuple[str, ...]:
    """The columns a template names, or ValueError saying why it is not a template."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"not a template: {exc} (write {{column}}; {{{{ for a brace)") from None
    columns: list[str] = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name or any(c in name for c in ".[]") or spec or conv:
            raise ValueError(f"{{{name}}}: name a column plainly, e.g. {{case_no}}")
        columns.append(name)
    if not columns:
        raise ValueError("names no column; use const for a fixed value")
    return tuple(dict.fromkeys(columns))


def _format_problem(fmt: str) -> str | None:
    if "%" not in fmt:
        return f"{fmt!r} has no % directive (e.g. %Y/%m/%d)"
    sample = datetime(2026, 3, 10, 8, 30, 15, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)  # noqa: DTZ007 - only whether the format parses
    except ValueError as exc:
        return f"not a usable strptime format: {exc}"
    return None


_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def parse_timezone(name: str) -> tzinfo | None:
    """``UTC``, an offset like ``+08:00`` or an IANA name; None if it is none of these."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    m = _OFFSET.fullmatch(name)
    if m:
        delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
        if delta >= timedelta(hours=24):
            return None
        return timezone(-delta if m[1] == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


# --------------------------------------------------------------------------- loading


def load_mapping(path: Path | str) -> CsvMapping:
    """Read and check a mapping file; every problem is reported at once."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingInvalid([Problem(file=name, reason="no such mapping file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingInvalid([Problem(file=name, reason=f"cannot read: {exc}")]) from None
    return parse_mapping(text, name)


def parse_mapping(text: str, name: str = "<mapping>") -> CsvMapping:
    try:
        # Codes in a map are text as written (`yes`, `01`), and so are dates in constants.
        doc = read_yaml(text, name, keys_as_written=True, dates_as_written=True)
    except YamlInvalid as exc:
        raise MappingInvalid(exc.problems) from None
    return _MappingReader(doc).read()


#: Keys whose value is a name or a format: read as written even where YAML sees a number.
_TEXT_KEYS = frozenset({"column", "template", "type", "format", "timezone", "delimiter", "quotechar", "encoding"})


class _MappingReader:
    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def problem(self, loc: Loc, reason: str) -> None:
        self.problems.append(self.doc.problem(loc, reason))

    def validate(self, model: type[_Model], data: Any, loc: Loc) -> Any:
        try:
            return model.model_validate(self.as_written(data, loc))
        except ValidationError as exc:
            self.problems.extend(model_problems(exc, self.doc, file=self.doc.file, loc=loc, model=model))
            return None

    def as_written(self, data: Any, loc: Loc) -> Any:
        """``data`` with names and formats as written: ``column: 01`` names column ``01``."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            if key in _TEXT_KEYS and isinstance(value, (int, float, bool)):
                out[key] = self.doc.texts.get((*loc, key), value)
            elif key == "columns" and isinstance(value, list):
                out[key] = [
                    self.doc.texts.get((*loc, key, i), v) if isinstance(v, (int, float, bool)) else v
                    for i, v in enumerate(value)
                ]
        return out

    def fail(self) -> MappingInvalid:
        return MappingInvalid(self.problems)

    def read(self) -> CsvMapping:
        root = self.doc.value
        if not isinstance(root, dict):
            self.problem((), "a mapping file is a YAML mapping with `fields:` (and optionally `csv:`)")
            raise self.fail()
        self.validate(_MappingFile, root, ())
        options = CsvOptions() if root.get("csv") is None else self.validate(CsvOptions, root["csv"], ("csv",))
        rules = self.rules(root)
        if self.problems:
            raise self.fail()
        assert options is not None  # a problem was reported otherwise  # noqa: S101 - narrows for the type checker
        mapping = CsvMapping(
            source=self.doc.file,
            rules=tuple(rules),
            delimiter=options.delimiter,
            quotechar=options.quotechar,
            encoding=options.encoding,
            columns=options.columns,
        )
        if mapping.columns is not None:
            declared = set(mapping.columns)
            for r in rules:
                for c in r.columns:
                    if c not in declared:
                        self.problem(("fields", r.target), f"column {c!r} is not in csv.columns")
        if self.problems:
            raise self.fail()
        return mapping

    def rules(self, root: dict[str, Any]) -> list[FieldRule]:
        if "fields" not in root:
            self.problem(("fields",), "is required: the record fields and where each comes from")
            return []
        fields = root["fields"]
        if not isinstance(fields, dict) or not fields:
            self.problem(("fields",), "must be a non-empty mapping of target path -> source")
            return []
        rules: list[FieldRule] = []
        for target, body in fields.items():
            rule = self.rule(target, body)
            if rule is not None:
                rules.append(rule)
        # Every target is a single value of the record shape (checked in rule), so no
        # target can be the parent of another: no conflict check is needed.
        return rules

    def rule(self, target: str, body: Any) -> FieldRule | None:
        loc: Loc = ("fields", target)
        path, reason = target_path(target)
        if reason is not None:
            self.problem(loc, reason)
            return None
        if isinstance(body, list):
            self.problem(loc, "must be a column name or a mapping with column, const or template")
            return None
        if not isinstance(body, dict):
            if body is None or body == "":
                self.problem(loc, "must be a non-empty text")
                return None
            body = {"column": self.doc.texts.get(loc, body)}
        before = len(self.problems)
        spec = self.validate(FieldSpec, body, loc)
        if spec is None:
            # A misspelt key hides the source it meant: say so too, as the model could not.
            reason = source_problem([k for k in _SOURCES if k in body])
            if reason is not None and not any(p.reason == reason for p in self.problems[before:]):
                self.problem(loc, reason)
            return None
        return FieldRule(
            target,
            path,
            column=spec.column,
            const=spec.const,
            template=spec.template,
            template_columns=template_columns(spec.template) if spec.template is not None else (),
            type=cast(FieldType, spec.type),
            format=spec.format,
            tz=parse_timezone(spec.timezone) if spec.timezone is not None else None,
            values=dict(spec.map) if spec.map is not None else None,
            default=spec.default,
            line=self.doc.line(loc),
        )


# --------------------------------------------------------------------------- the record shape


def target_path(target: str) -> tuple[tuple[str | int, ...], str | None]:
    """The path a target names in the record, or why it names no single value of it."""
    path: list[str | int] = []
    for seg in target.split("."):
        m = _SEGMENT.fullmatch(seg)
        if not m:
            return (), f"not a field path ({seg!r}); write e.g. subject.identifiers[0].value"
        path.append(m[1])
        for idx in re.findall(r"\[(\d+)\]", m[2]):
            if int(idx) > MAX_INDEX:
                return (), f"list index {idx} is larger than {MAX_INDEX}"
            path.append(int(idx))
    return tuple(path), _shape_problem(tuple(path))


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _shape_problem(path: tuple[str | int, ...]) -> str | None:
    """Why ``path`` does not name a single value of the record shape, or None."""
    tp: Any = ListEntryEvent
    shown = ""
    i = 0
    while i < len(path):
        seg = path[i]
        if not isinstance(seg, str):
            return f"{shown} is not a list"
        if not _is_model(tp):
            return f"{shown} is a single value; it has no field {seg!r}"
        fields = tp.model_fields
        if seg not in fields:
            where = f"in {shown}" if shown else "in the record"
            return f"no field {seg!r} {where} (fields: {', '.join(fields)})"
        tp = unwrap_optional(fields[seg].annotation)
        shown = f"{shown}.{seg}" if shown else seg
        i += 1
        if get_origin(tp) in (tuple, list):
            if i >= len(path) or not isinstance(path[i], int):
                return f"{shown} is a list: name an item, e.g. {shown}[0]"
            shown += f"[{path[i]}]"
            tp = unwrap_optional(get_args(tp)[0])
            i += 1
        elif i < len(path) and isinstance(path[i], int):
            return f"{shown} is not a list"
    if _is_model(tp):
        return f"{shown} is an object: map its fields, e.g. {shown}.{next(iter(tp.model_fields))}"
    return None
