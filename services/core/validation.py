"""The rules a list record must meet before anyone acts on it.

Structure (types, sizes, enums) comes from the pydantic models; the rules of law
that need context come here: no sanction without a decision and an issuing
authority, identifiers with correct check characters, consistent periods, and a
program the publishing agency actually owns.  Every problem is reported, each with
the dotted path of the field, so a clerk can fix a row in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from services.core.errors import RecordInvalid
from services.core.identifiers import validate_identifier
from services.core.models import EventType, ListEntryEvent, ListKind
from services.core.problems import Problem
from services.core.world import World

MAX_RECORD_BYTES = 256 * 1024


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "is required"
        problems.append(Problem.of(_path(loc), msg))
    return problems


def _get(data: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(key, int):
            if not isinstance(data, (list, tuple)) or key >= len(data):
                return None
        elif not isinstance(data, Mapping):
            return None
        data = data[key] if isinstance(key, int) else data.get(key)
    return data


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str) else None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else None
    return None


def _day(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _ids(prefix: str, ids: Any) -> list[Problem]:
    out = []
    for i, ident in enumerate(ids if isinstance(ids, (list, tuple)) else ()):
        scheme, value = _text(_get(ident, "scheme")), _text(_get(ident, "value"))
        if scheme and value:
            reason = validate_identifier(scheme, value)
            if reason:
                out.append(Problem.of(f"{prefix}[{i}].value", f"{scheme} {value!r}: {reason}"))
    return out


def rule_problems(data: Mapping[str, Any], *, agency: str, world: World) -> list[Problem]:
    """Rules that need to know who publishes and what the world declares.

    Works on a plain mapping — the adapter's raw JSON or a decoded record's dump —
    and skips what is absent or mistyped, so it also runs on a record with
    structural problems: the clerk sees every problem of a row at once.
    """
    p: list[Problem] = []
    event_type = _text(data.get("event_type"))
    list_kind = _text(data.get("list_kind"))
    program_id = _text(data.get("program"))
    program = world.programs.get(program_id) if program_id else None
    if program_id and program is None:
        p.append(Problem.of("program", f"unknown program {program_id!r}"))
    elif program is not None and program.owner != agency:
        p.append(Problem.of("program", f"program {program_id!r} belongs to {program.owner!r}, not {agency!r}"))
    elif program is not None and list_kind and program.list_kind != list_kind:
        p.append(Problem.of("list_kind", f"program {program_id!r} is a {program.list_kind} list"))
    if list_kind == ListKind.SANCTION.value and event_type in (EventType.LISTED.value, EventType.AMENDED.value):
        basis = data.get("basis")
        if basis is None:
            p.append(Problem.of("basis", "a sanction needs a legal basis (decision_no and issued_by)"))
        elif isinstance(basis, Mapping):
            if not basis.get("decision_no"):
                p.append(Problem.of("basis.decision_no", "a sanction needs the number of the decision it rests on"))
            if not basis.get("issued_by"):
                p.append(Problem.of("basis.issued_by", "a sanction needs the authority that issued the decision"))
    delisting = data.get("delisting")
    if event_type == EventType.DELISTED.value and delisting is None:
        p.append(Problem.of("delisting.reason", "a DELISTED event needs a delisting reason"))
    if event_type and event_type != EventType.DELISTED.value and delisting is not None:
        p.append(Problem.of("delisting", f"only a DELISTED event carries a delisting, not {event_type}"))
    start, until = _when(data.get("effective_from")), _when(data.get("effective_until"))
    if start and until and until <= start:
        p.append(Problem.of("effective_until", "must be after effective_from"))
    published = _when(data.get("publication_until"))
    if start and published and published <= start:
        p.append(Problem.of("publication_until", "must be after effective_from"))
    decided, listed = _day(_get(data, "basis", "decided_on")), _day(data.get("listed_on"))
    if decided and listed and decided > listed:
        p.append(Problem.of("basis.decided_on", "a decision cannot postdate the listing it grounds"))
    p += _ids("subject.identifiers", _get(data, "subject", "identifiers"))
    parties = _get(data, "subject", "related_parties")
    for j, party in enumerate(parties if isinstance(parties, (list, tuple)) else ()):
        p += _ids(f"subject.related_parties[{j}].identifiers", _get(party, "identifiers"))
    return p


def _ids_view(ids: Iterable[Any]) -> list[dict[str, str]]:
    return [{"scheme": i.scheme, "value": i.value} for i in ids]


def context_problems(ev: ListEntryEvent, *, agency: str, world: World) -> list[Problem]:
    """:func:`rule_problems` for a record that is already structurally valid.

    Builds only the fields the rules read (a full ``model_dump`` costs more than the rules
    themselves on the fan-out's path).
    """
    basis = ev.basis
    view: dict[str, Any] = {
        "event_type": ev.event_type.value,
        "list_kind": ev.list_kind.value,
        "program": ev.program,
        "basis": None
        if basis is None
        else {"decision_no": basis.decision_no, "issued_by": basis.issued_by, "decided_on": basis.decided_on},
        "delisting": ev.delisting,
        "effective_from": ev.effective_from,
        "effective_until": ev.effective_until,
        "publication_until": ev.publication_until,
        "listed_on": ev.listed_on,
        "subject": {
            "identifiers": _ids_view(ev.subject.identifiers),
            "related_parties": [{"identifiers": _ids_view(p.identifiers)} for p in ev.subject.related_parties],
        },
    }
    return rule_problems(view, agency=agency, world=world)


# C0 controls but tab, line feed and carriage return, and DEL: never part of a name, a number or a
# reason, and a NUL ends a string in too many of the systems a directive reaches.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_problems(raw: Any) -> list[Problem]:
    """Every text (and key) of ``raw`` holding a control character, by field path."""
    out: list[Problem] = []
    stack: list[tuple[Any, str]] = [(raw, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            m = _CONTROL.search(value)
            if m:
                out.append(
                    Problem.of(path, f"contains the control character U+{ord(m[0]):04X} at position {m.start() + 1}")
                )
        elif isinstance(value, Mapping):
            for k, v in value.items():
                key = str(k)
                if _CONTROL.search(key):
                    out.append(Problem.of(path, f"a field name contains a control character: {key!r}"))
                    continue
                stack.append((v, f"{path}.{key}" if path else key))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return sorted(out, key=lambda p: p.path)


def validate_record(raw: Any, *, agency: str, world: World) -> ListEntryEvent:
    """A valid :class:`ListEntryEvent` from the adapter's JSON shape, or RecordInvalid."""
    if not isinstance(raw, dict):
        raise RecordInvalid([Problem.of("", f"a record must be a JSON object, not {type(raw).__name__}")])
    controls = control_problems(raw)
    try:
        ev = ListEntryEvent.model_validate(raw)
    except ValidationError as exc:
        structural = _pydantic_problems(exc)
        seen = {p.path for p in structural}
        structural += [p for p in controls if p.path not in seen]
        seen |= {p.path for p in controls}
        rules = [p for p in rule_problems(raw, agency=agency, world=world) if p.path not in seen]
        raise RecordInvalid(structural + rules) from None
    problems = controls + [
        p for p in context_problems(ev, agency=agency, world=world) if p.path not in {c.path for c in controls}
    ]
    if problems:
        raise RecordInvalid(problems)
    return ev
