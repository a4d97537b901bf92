"""YAML documents that remember where every value was written, checked by pydantic models.

The declared world (``topics/``), the CSV mapping files and the subscriber's clients file
are YAML written by people, so a mistake in them must be reported where it is:
:func:`read_yaml` parses a document and records the line of every value by its
location (``("versions", 0, "measures")``), and :func:`model_problems` turns a pydantic
:class:`~pydantic.ValidationError` into :class:`~services.core.problems.Problem` values
located by that record.

The reader is stricter than PyYAML's ``safe_load``: a duplicate key (which PyYAML would
silently resolve to the last one), a merge key or an unusual tag is a problem, since each
hides what the file says from the person reading it.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from services.core.problems import Loc, Problem, format_path

__all__ = ["YamlDocument", "YamlInvalid", "line_of", "model_problems", "read_yaml", "unwrap_optional"]

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class YamlInvalid(ValueError):
    """A document that cannot be read at all; callers wrap its problems in their own error."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class YamlDocument:
    """A parsed document: its value, the line of every value, and the text of every scalar
    as written (``01`` stays ``"01"`` there, where the value holds ``1``)."""

    file: str
    value: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)
    texts: Mapping[Loc, str] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        return line_of(self.lines, loc)

    def problem(self, loc: Loc, reason: str) -> Problem:
        return Problem(file=self.file, line=self.line(loc), path=format_path(loc), reason=reason)


def line_of(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest written ancestor (a missing key's mapping)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def read_yaml(text: str, file: str, *, keys_as_written: bool = False, dates_as_written: bool = False) -> YamlDocument:
    """Parse one YAML document, or raise :class:`YamlInvalid` naming every problem.

    ``keys_as_written`` keeps mapping keys as their text (``yes`` and ``01`` stay text, as
    codes in a mapping file must); ``dates_as_written`` keeps timestamps as their text.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = f"malformed YAML: {exc.problem or exc.context or 'unreadable'}"
        raise YamlInvalid([Problem(file=file, line=line, reason=reason)]) from None
    except yaml.YAMLError as exc:
        raise YamlInvalid([Problem(file=file, reason=f"malformed YAML: {exc}")]) from None
    if node is None:
        raise YamlInvalid([Problem(file=file, reason="file is empty")])
    builder = _Builder(file, keys_as_written=keys_as_written, dates_as_written=dates_as_written)
    value = builder.build(node, ())
    if builder.problems:
        raise YamlInvalid(builder.problems)
    return YamlDocument(file, value, builder.lines, builder.texts)


class _Builder:
    def __init__(self, file: str, *, keys_as_written: bool, dates_as_written: bool) -> None:
        self.file = file
        self.keys_as_written = keys_as_written
        self.dates_as_written = dates_as_written
        self.lines: dict[Loc, int] = {}
        self.texts: dict[Loc, str] = {}
        self.problems: list[Problem] = []
        self.constructor = yaml.SafeLoader("")

    def problem(self, node: yaml.Node, loc: Loc, reason: str) -> None:
        self.problems.append(
            Problem(file=self.file, line=node.start_mark.line + 1, path=format_path(loc), reason=reason)
        )

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                self.problem(node, loc, f"unsupported tag {node.tag}")
                return None
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    self.problem(key_node, loc, "merge keys (<<) are not supported; write the keys out")
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problem(key_node, loc, "mapping keys must be plain values")
                    continue
                key = key_node.value if self.keys_as_written else self.scalar(key_node, loc)
                if key in result:
                    self.problem(key_node, (*loc, key), "duplicate key")
                    continue
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, (*loc, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                self.problem(node, loc, f"unsupported tag {node.tag}")
                return None
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        self.texts[loc] = str(node.value)
        if self.dates_as_written and node.tag == _TIMESTAMP:
            return node.value
        return self.scalar(node, loc)

    def scalar(self, node: yaml.Node, loc: Loc) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.problem(node, loc, f"malformed YAML: {exc.problem or 'cannot read value'}")
            return None


# --------------------------------------------------------------------------- pydantic errors


def model_problems(
    exc: ValidationError, doc: YamlDocument | None, *, file: str, loc: Loc = (), model: type[BaseModel] | None = None
) -> list[Problem]:
    """The problems of a failed ``model.model_validate(value at loc)``, located in ``doc``.

    ``model`` lets an unknown key name the keys that are known.
    """
    errors = exc.errors(include_url=False)
    problems: list[Problem] = []
    for error in errors:
        here = error["loc"]
        if error["type"] == "too_short" and any(
            len(e["loc"]) > len(here) and e["loc"][: len(here)] == here for e in errors
        ):
            # Pydantic also counts the items it just rejected as missing; the item's own
            # error is the one that says what is wrong.
            continue
        where: Loc = tuple(p for p in here if p != "[key]")
        reason = _reason(error, model, where)
        if "[key]" in here:
            reason = f"bad key: {reason}"
        full = (*loc, *where)
        line = doc.line(full) if doc is not None else None
        problems.append(Problem(file=file, line=line, path=format_path(full), reason=reason))
    return problems


def _reason(error: Mapping[str, Any], model: type[BaseModel] | None, where: Loc) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing required key"
    if kind == "extra_forbidden":
        known = _model_at(model, where[:-1]) if model is not None else None
        return f"unknown key (expected {', '.join(known.model_fields)})" if known is not None else "unknown key"
    if kind in ("value_error", "assertion_error"):
        return str(error["ctx"]["error"])
    message = str(error["msg"])
    value = error.get("input")
    if isinstance(value, (str, int, float, bool, date)) or value is None:
        message += f", got {value!r}"
    return message


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model that validates the value at ``loc`` of ``model``'s input, if one does."""
    tp: Any = model
    rest = list(loc)
    while rest:
        tp = unwrap_optional(tp)
        part = rest.pop(0)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if not isinstance(part, str) or part not in tp.model_fields:
                return None
            tp = tp.model_fields[part].annotation
        elif get_origin(tp) in (dict, Mapping):
            tp = get_args(tp)[1]
        elif get_origin(tp) in (tuple, list):
            tp = get_args(tp)[0]
        else:
            return None
    tp = unwrap_optional(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def unwrap_optional(tp: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` as ``X`` (a union of several types stays as it is)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp
