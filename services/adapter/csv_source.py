"""CSV exports, turned into the adapter's JSON shape by a mapping file.

Agencies rarely export JSON; their case systems write CSV with their own column
names, codes and date formats.  A mapping file says, once, how each column becomes
a field of the record, so the rest of the adapter (validation, signing, rejects,
the ledger) treats a CSV row exactly like a JSON line: a :class:`Row` with the CSV
line number, and problems reported as ``FILE:LINE: field.path: message``.

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

Cells are stripped of surrounding spaces.  An empty cell leaves its field out, and
an object (or list item) whose mapped columns are all empty on a row is left out
entirely, constants included: a row without a legal representative gets no
``related_parties[0]``, and a listing row no ``delisting``.  Objects mapped only
from constants are always kept.  List items left out close up, so a later item
takes the index of an absent earlier one.

Errors in the mapping file raise :class:`MappingInvalid` (a ``ConfigError``) with one
line per problem, ``MAPPING:LINE: fields["path"].key: reason``; a header that lacks a
mapped column raises it too, naming the CSV file.  Both stop the whole file.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import string
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO, Annotated, Any, Literal, NoReturn, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel

from services.adapter.sources import DEFAULT_LIMITS, PREVIEW, ReadLimits, Row
from services.core.errors import ConfigError
from services.core.models import ListEntryEvent
from services.core.problems import Problem, describe

FieldType = Literal["string", "int", "date", "datetime"]
_TYPES: tuple[str, ...] = ("string", "int", "date", "datetime")
_SPEC_KEYS = ("column", "const", "template", "type", "format", "timezone", "map", "default")
_CSV_KEYS = ("delimiter", "quotechar", "encoding", "columns")
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
    return _MappingParser(name).parse(text)


class _MappingParser:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def problem(self, node: yaml.Node | None, where: str, reason: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(Problem(file=self.name, line=line, path=where, reason=reason))

    def fail(self) -> NoReturn:
        raise MappingInvalid(self.problems)

    def parse(self, text: str) -> CsvMapping:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            reason = f"malformed YAML: {exc.problem or exc.context}"
            raise MappingInvalid([Problem(file=self.name, line=line, reason=reason)]) from None
        except yaml.YAMLError as exc:
            raise MappingInvalid([Problem(file=self.name, reason=f"malformed YAML: {exc}")]) from None
        if not isinstance(root, yaml.MappingNode):
            self.problem(root, "", "a mapping file is a YAML mapping with `fields:` (and optionally `csv:`)")
            self.fail()
        top = self.items(root, "")
        for key, (knode, _) in top.items():
            if key not in ("csv", "fields"):
                self.problem(knode, key, "unknown key (expected csv, fields)")
        options = self.csv_options(top.get("csv"))
        rules = self.fields(top.get("fields"), root)
        if self.problems:
            self.fail()
        mapping = CsvMapping(source=self.name, rules=tuple(rules), **options)
        if mapping.columns is not None:
            declared = set(mapping.columns)
            for r in rules:
                for c in r.columns:
                    if c not in declared:
                        self.problems.append(
                            Problem(
                                file=self.name,
                                line=r.line,
                                path=_where(r.target),
                                reason=f"column {c!r} is not in csv.columns",
                            )
                        )
        if self.problems:
            self.fail()
        return mapping

    # --- YAML helpers ---------------------------------------------------------

    def items(self, node: yaml.MappingNode, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.problem(knode, where, "keys must be plain text")
                continue
            key = knode.value
            if key in out:
                self.problem(knode, _join(where, key), "duplicate key")
                continue
            out[key] = (knode, vnode)
        return out

    def text(self, node: yaml.Node, where: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.value != "" and node.tag != "tag:yaml.org,2002:null":
            return str(node.value)
        self.problem(node, where, "must be a non-empty text")
        return None

    def value(self, node: yaml.Node, where: str) -> Any:
        """A constant: YAML's typed value, except that dates stay the text written."""
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, where, "must be a single value, not a list or mapping")
            return None
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value
        return self._constructor.construct_object(node, deep=True)

    # --- csv: -------------------------------------------------------------------

    def csv_options(self, entry: tuple[yaml.Node, yaml.Node] | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if entry is None:
            return out
        _, node = entry
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "csv", "must be a mapping of options (" + ", ".join(_CSV_KEYS) + ")")
            return out
        for key, (kn, vn) in self.items(node, "csv").items():
            where = f"csv.{key}"
            if key in ("delimiter", "quotechar"):
                ch = self.text(vn, where)
                if ch is not None and len(ch) != 1:
                    self.problem(vn, where, f"must be one character, got {ch!r}")
                elif ch is not None:
                    out[key] = ch
            elif key == "encoding":
                enc = self.text(vn, where)
                if enc is not None:
                    try:
                        codecs.lookup(enc)
                        out[key] = enc
                    except LookupError:
                        self.problem(vn, where, f"unknown encoding {enc!r}")
            elif key == "columns":
                if not isinstance(vn, yaml.SequenceNode) or not vn.value:
                    self.problem(vn, where, "must be a non-empty list of column names")
                    continue
                cols = [self.text(c, f"{where}[{i}]") for i, c in enumerate(vn.value)]
                names = [c for c in cols if c is not None]
                dupes = sorted({c for c in names if names.count(c) > 1})
                if dupes:
                    self.problem(vn, where, f"duplicate column names: {', '.join(dupes)}")
                out[key] = tuple(names)
            else:
                self.problem(kn, where, "unknown option (expected " + ", ".join(_CSV_KEYS) + ")")
        return out

    # --- fields: ----------------------------------------------------------------

    def fields(self, entry: tuple[yaml.Node, yaml.Node] | None, root: yaml.Node) -> list[FieldRule]:
        if entry is None:
            self.problem(root, "fields", "is required: the record fields and where each comes from")
            return []
        _, node = entry
        if not isinstance(node, yaml.MappingNode) or not node.value:
            self.problem(node, "fields", "must be a non-empty mapping of target path -> source")
            return []
        rules: list[FieldRule] = []
        for target, (kn, vn) in self.items(node, "fields").items():
            path = self.target_path(kn, target)
            if path is None:
                continue
            rule = self.rule(target, path, kn, vn)
            if rule is not None:
                rules.append(rule)
        # Every target is a single value of the record shape (checked above), so no
        # target can be the parent of another: no conflict check is needed.
        return rules

    def target_path(self, node: yaml.Node, target: str) -> tuple[str | int, ...] | None:
        where = _where(target)
        path: list[str | int] = []
        for seg in target.split("."):
            m = _SEGMENT.fullmatch(seg)
            if not m:
                self.problem(node, where, f"not a field path ({seg!r}); write e.g. subject.identifiers[0].value")
                return None
            path.append(m[1])
            for idx in re.findall(r"\[(\d+)\]", m[2]):
                if int(idx) > MAX_INDEX:
                    self.problem(node, where, f"list index {idx} is larger than {MAX_INDEX}")
                    return None
                path.append(int(idx))
        reason = _check_shape(tuple(path))
        if reason:
            self.problem(node, where, reason)
            return None
        return tuple(path)

    def rule(self, target: str, path: tuple[str | int, ...], knode: yaml.Node, node: yaml.Node) -> FieldRule | None:
        where = _where(target)
        line = knode.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            column = self.text(node, where)
            return FieldRule(target, path, column=column, line=line) if column else None
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, where, "must be a column name or a mapping with column, const or template")
            return None
        spec = self.items(node, where)
        before = len(self.problems)
        for key, (kn, _) in spec.items():
            if key not in _SPEC_KEYS:
                self.problem(kn, f"{where}.{key}", "unknown key (expected " + ", ".join(_SPEC_KEYS) + ")")
        sources = [k for k in ("column", "const", "template") if k in spec]
        if len(sources) != 1:
            got = f"got {', '.join(sources)}" if sources else "got none"
            self.problem(node, where, f"needs exactly one of column, const, template ({got})")
            return None
        kw: dict[str, Any] = {}
        src = sources[0]
        if src == "const":
            extra = [k for k in spec if k != "const" and k in _SPEC_KEYS]
            if extra:
                self.problem(node, where, f"a const takes no {', '.join(extra)}")
            kw["const"] = self.value(spec["const"][1], f"{where}.const")
            if kw["const"] is None:
                self.problem(spec["const"][1], f"{where}.const", "must not be empty (leave the field unmapped)")
        elif src == "column":
            kw["column"] = self.text(spec["column"][1], f"{where}.column")
        else:
            kw.update(self.template(spec["template"][1], f"{where}.template"))
        ftype: str = "string"
        if "type" in spec:
            tnode = spec["type"][1]
            t = self.text(tnode, f"{where}.type")
            if t is not None and t not in _TYPES:
                self.problem(tnode, f"{where}.type", f"unknown type {t!r} (expected {', '.join(_TYPES)})")
            elif t is not None:
                ftype = t
        kw["type"] = ftype
        if "format" in spec:
            fnode = spec["format"][1]
            fmt = self.text(fnode, f"{where}.format")
            if fmt is not None:
                if ftype not in ("date", "datetime"):
                    self.problem(fnode, f"{where}.format", "only a date or datetime field takes a format")
                elif (reason := _check_format(fmt)) is not None:
                    self.problem(fnode, f"{where}.format", reason)
                kw["format"] = fmt
        if "timezone" in spec:
            znode = spec["timezone"][1]
            name = self.text(znode, f"{where}.timezone")
            if name is not None:
                if ftype != "datetime":
                    self.problem(znode, f"{where}.timezone", "only a datetime field takes a timezone")
                tz = _timezone(name)
                if tz is None:
                    self.problem(
                        znode,
                        f"{where}.timezone",
                        f"unknown time zone {name!r} (use UTC, an offset like +08:00, or e.g. Asia/Shanghai)",
                    )
                kw["tz"] = tz
        fmt = kw.get("format")
        if ftype == "datetime" and fmt is not None and "%z" not in fmt and "tz" not in kw:
            self.problem(node, where, 'a datetime format without %z needs a timezone (e.g. timezone: "+08:00")')
        if "map" in spec:
            mnode = spec["map"][1]
            if src == "template":
                self.problem(mnode, f"{where}.map", "only a column can be mapped through a map")
            elif src == "const":
                pass  # reported above
            elif not isinstance(mnode, yaml.MappingNode) or not mnode.value:
                self.problem(mnode, f"{where}.map", "must be a non-empty mapping of cell value -> field value")
            else:
                kw["values"] = {
                    k: self.value(v, f"{where}.map.{k}") for k, (_, v) in self.items(mnode, f"{where}.map").items()
                }
        if "default" in spec:
            if src == "const":
                pass  # reported above
            else:
                kw["default"] = self.value(spec["default"][1], f"{where}.default")
        if len(self.problems) > before:
            return None
        return FieldRule(target, path, line=line, **kw)

    def template(self, node: yaml.Node, where: str) -> dict[str, Any]:
        text = self.text(node, where)
        if text is None:
            return {}
        columns: list[str] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            self.problem(node, where, f"not a template: {exc} (write {{column}}; {{{{ for a brace)")
            return {}
        for _, name, spec, conv in parsed:
            if name is None:
                continue
            if not name or any(c in name for c in ".[]") or spec or conv:
                self.problem(node, where, f"{{{name}}}: name a column plainly, e.g. {{case_no}}")
                continue
            columns.append(name)
        if not columns and not self.problems:
            self.problem(node, where, "names no column; use const for a fixed value")
        return {"template": text, "template_columns": tuple(dict.fromkeys(columns))}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _where(target: str) -> str:
    return f'fields["{target}"]'


def _check_format(fmt: str) -> str | None:
    if "%" not in fmt:
        return f"{fmt!r} has no % directive (e.g. %Y/%m/%d)"
    sample = datetime(2026, 3, 10, 8, 30, 15, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)  # noqa: DTZ007 - only whether the format parses
    except ValueError as exc:
        return f"not a usable strptime format: {exc}"
    return None


_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})")


def _timezone(name: str) -> tzinfo | None:
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


# --------------------------------------------------------------------------- the record shape


def _unwrap(tp: Any) -> Any:
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


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _check_shape(path: tuple[str | int, ...]) -> str | None:
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
        tp = _unwrap(fields[seg].annotation)
        shown = f"{shown}.{seg}" if shown else seg
        i += 1
        if get_origin(tp) in (tuple, list):
            if i >= len(path) or not isinstance(path[i], int):
                return f"{shown} is a list: name an item, e.g. {shown}[0]"
            shown += f"[{path[i]}]"
            tp = _unwrap(get_args(tp)[0])
            i += 1
        elif i < len(path) and isinstance(path[i], int):
            return f"{shown} is not a list"
    if _is_model(tp):
        return f"{shown} is an object: map its fields, e.g. {shown}.{next(iter(tp.model_fields))}"
    return None


# --------------------------------------------------------------------------- reading rows

_CONST, _EMPTY, _FILLED = 0, 1, 2
_MISSING = object()


class _RecordTooLong(Exception):
    """Raised by :class:`_Tap` into csv.reader, which starts afresh on the next line."""

    def __init__(self, size: int, head: str) -> None:
        super().__init__(size)
        self.size = size
        self.head = head


_LINE_ENDS = ("\r\n", "\n", "\r")


class _Tap:
    """Hands lines to csv.reader while keeping them, so a row keeps its text and line.

    Never holds more than ``limit`` characters of a record: a longer physical line is
    skipped in bounded pieces, and a quoted field running on over lines stops at the
    limit too; either raises :class:`_RecordTooLong` through the reader.
    """

    def __init__(self, stream: IO[str], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.lines = 0
        self._held: list[str] = []
        self._size = 0

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> str:
        line = self._stream.readline(self._limit + 2)
        if not line:
            raise StopIteration
        self.lines += 1
        if len(line) == self._limit + 2 and not line.endswith(_LINE_ENDS):
            size = len(line)
            while rest := self._stream.readline(1 << 20):
                size += len(rest)
                if rest.endswith(_LINE_ENDS):
                    break
            raise _RecordTooLong(self._size + size, "".join(self._held)[:PREVIEW] or line[:PREVIEW])
        self._held.append(line)
        self._size += len(line)
        if self._size > self._limit + 2:
            raise _RecordTooLong(self._size, "".join(self._held)[:PREVIEW])
        return line

    def take(self) -> str:
        text = "".join(self._held)
        self._held.clear()
        self._size = 0
        return text


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _printable(text: str, encoding: str) -> str:
    raw = text.encode(encoding, "surrogateescape")
    return raw.decode(encoding, "replace").rstrip("\r\n")


def read_csv(stream: IO[str], mapping: CsvMapping, *, file: str, limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[Row]:
    """Rows of a CSV export in the record shape; ``stream`` comes from :meth:`CsvMapping.open`
    or :meth:`CsvMapping.wrap`.  A record longer than ``limits.max_line_bytes`` is refused
    without being held (see :class:`_Tap`)."""
    limit = limits.max_line_bytes
    tap = _Tap(stream, limit)
    reader = csv.reader(tap, delimiter=mapping.delimiter, quotechar=mapping.quotechar, strict=False)
    header: tuple[str, ...] | None = mapping.columns
    index: dict[str, int] = {}
    if header is not None:
        index = {c: i for i, c in enumerate(header)}
    while True:
        start = tap.lines + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _RecordTooLong as exc:
            tap.take()
            reason = f"record is {exc.size:,} characters, longer than the limit of {limit:,} (--max-line-bytes)"
            if header is None:
                raise MappingInvalid([Problem(file=file, line=start, reason=f"the header line: {reason}")]) from None
            yield Row.unreadable(start, reason, _printable(exc.head, mapping.encoding))
            continue
        except csv.Error as exc:
            tap.take()
            yield Row.unreadable(start, f"unreadable CSV: {exc}")
            if tap.lines < start:
                return
            continue
        text = tap.take()
        if not cells or all(not c.strip() for c in cells):
            continue
        if header is None:
            header = tuple(c.strip() for c in cells)
            header = (header[0].lstrip("\ufeff"), *header[1:])  # a BOM read with encoding: utf-8
            index = _header_index(header, mapping, file, start)
            continue
        shown = _printable(text, mapping.encoding)
        size = len(text.encode("utf-8", "surrogateescape"))
        if size > limit:
            yield Row.unreadable(
                start,
                f"record is {size:,} bytes, longer than the limit of {limit:,} (--max-line-bytes)",
                shown[:PREVIEW],
            )
            continue
        if _has_surrogates(text):
            yield Row.unreadable(start, f"line is not valid {mapping.encoding}", shown)
            continue
        if len(cells) != len(header):
            yield Row.unreadable(start, f"row has {len(cells)} fields, the header has {len(header)}", shown)
            continue
        raw, problems = build_record(mapping, {c: cells[i].strip() for c, i in index.items()})
        yield Row(start, raw, tuple(problems), shown)


def _header_index(header: tuple[str, ...], mapping: CsvMapping, file: str, line: int) -> dict[str, int]:
    needed = mapping.needed_columns()
    problems: list[Problem] = []
    missing = [c for c in needed if c not in header]
    if missing:
        listed = "; ".join(f"{c!r} (for {', '.join(needed[c])})" for c in missing)
        reason = f"the header lacks column(s) the mapping {mapping.source} reads: {listed}"
        problems.append(Problem(file=file, line=line, reason=reason))
    dupes = sorted({c for c in needed if header.count(c) > 1})
    if dupes:
        reason = f"the header names {', '.join(map(repr, dupes))} more than once"
        problems.append(Problem(file=file, line=line, reason=reason))
    if problems:
        raise MappingInvalid(problems)
    return {c: header.index(c) for c in needed}


def build_record(mapping: CsvMapping, cells: Mapping[str, str]) -> tuple[dict[str, Any], list[Problem]]:
    """The record shape for one row's cells, and the problems converting them."""
    problems: list[Problem] = []
    tree: dict[Any, Any] = {}
    for rule in mapping.rules:
        value, state = _leaf(rule, cells, problems)
        node = tree
        for seg in rule.path[:-1]:
            node = node.setdefault(seg, {})
        node[rule.path[-1]] = (value, state)
    built, _ = _finish(tree, root=True)
    return built, problems


def _leaf(rule: FieldRule, cells: Mapping[str, str], problems: list[Problem]) -> tuple[Any, int]:
    if rule.column is None and rule.template is None:
        return rule.const, _CONST
    if rule.template is not None:
        values = {c: cells[c] for c in rule.template_columns}
        cell = "" if any(v == "" for v in values.values()) else rule.template.format_map(values)
        what = f"template {rule.template!r}"
    else:
        cell = cells[rule.column or ""]
        what = f"column {rule.column}"
    if cell == "":
        if rule.default is not None:
            return rule.default, _EMPTY
        return _MISSING, _EMPTY
    value: Any = cell
    if rule.values is not None:
        if cell not in rule.values:
            known = ", ".join(map(str, rule.values))
            problems.append(Problem.of(rule.target, f"{cell!r} ({what}) is not one of {known}"))
            return cell, _FILLED
        value = rule.values[cell]
        if not isinstance(value, str):
            return value, _FILLED
    try:
        return _convert(rule, value), _FILLED
    except ValueError as exc:
        problems.append(Problem.of(rule.target, f"{value!r} ({what}) {exc}"))
        return value, _FILLED


def _convert(rule: FieldRule, value: str) -> Any:
    if rule.type == "int":
        if not re.fullmatch(r"[+-]?\d+", value):
            raise ValueError("is not a whole number")
        return int(value)
    if rule.type == "date":
        if rule.format is None:
            return value
        try:
            return datetime.strptime(value, rule.format).date().isoformat()  # noqa: DTZ007 - a calendar date
        except ValueError:
            raise ValueError(f"does not match the date format {rule.format}") from None
    if rule.type == "datetime":
        if rule.format is None:
            if rule.tz is None:
                return value
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("is not an ISO 8601 date and time") from None
        else:
            try:
                parsed = datetime.strptime(value, rule.format)  # noqa: DTZ007 - given rule.tz below
            except ValueError:
                raise ValueError(f"does not match the datetime format {rule.format}") from None
        if parsed.tzinfo is None and rule.tz is not None:
            parsed = parsed.replace(tzinfo=rule.tz)
        return parsed.isoformat()
    return value


def _finish(node: dict[Any, Any], *, root: bool = False) -> tuple[Any, int]:
    """Nested dicts of leaves -> the record shape, dropping objects whose columns were all empty."""
    out: dict[Any, Any] = {}
    state = _CONST
    for key, child in node.items():
        if isinstance(child, tuple):
            value, s = child
        else:
            value, s = _finish(child)
        state = max(state, s)
        if value is not _MISSING:
            out[key] = value
    if root:
        return out, state
    if state == _EMPTY:
        return _MISSING, _EMPTY
    if out and all(isinstance(k, int) for k in out):
        return [out[k] for k in sorted(out)], state
    if node and all(isinstance(k, int) for k in node):
        return _MISSING, state
    return out, state
