"""The rules a list record must meet before anyone acts on it.

Structure (types, sizes, enums) comes from the pydantic models; the rules of law
that need context come here: no sanction without a decision and an issuing
authority, identifiers with correct check characters, consistent periods, and a
program the publishing agency actually owns.  Every problem is reported, each with
the dotted path of the field, so a clerk can fix a row in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from services.core.errors import FieldProblem, RecordInvalid
from services.core.identifiers import validate_identifier
from services.core.models import EventType, Identifier, ListEntryEvent, ListKind
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


def _pydantic_problems(exc: ValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "is required"
        problems.append(FieldProblem(_path(loc), msg))
    return problems


def _identifier_problems(prefix: str, ids: Iterable[Identifier]) -> list[FieldProblem]:
    out = []
    for i, ident in enumerate(ids):
        reason = validate_identifier(ident.scheme, ident.value)
        if reason:
            out.append(FieldProblem(f"{prefix}[{i}].value", f"{ident.scheme} {ident.value!r}: {reason}"))
    return out


def context_problems(ev: ListEntryEvent, *, agency: str, world: World) -> list[FieldProblem]:
    """Rules that need to know who publishes and what the world declares."""
    p: list[FieldProblem] = []
    program = world.programs.get(ev.program)
    if program is None:
        p.append(FieldProblem("program", f"unknown program {ev.program!r}"))
    elif program.owner != agency:
        p.append(FieldProblem("program", f"program {ev.program!r} belongs to {program.owner!r}, not {agency!r}"))
    elif program.list_kind != ev.list_kind.value:
        p.append(FieldProblem("list_kind", f"program {ev.program!r} is a {program.list_kind} list"))
    if ev.list_kind is ListKind.SANCTION and ev.event_type in (EventType.LISTED, EventType.AMENDED):
        basis = ev.basis
        if basis is None:
            p.append(FieldProblem("basis", "a sanction needs a legal basis (decision_no and issued_by)"))
        else:
            if not basis.decision_no:
                p.append(FieldProblem("basis.decision_no", "a sanction needs the number of the decision it rests on"))
            if not basis.issued_by:
                p.append(FieldProblem("basis.issued_by", "a sanction needs the authority that issued the decision"))
    if ev.event_type is EventType.DELISTED and ev.delisting is None:
        p.append(FieldProblem("delisting.reason", "a DELISTED event needs a delisting reason"))
    if ev.event_type is not EventType.DELISTED and ev.delisting is not None:
        p.append(FieldProblem("delisting", f"only a DELISTED event carries a delisting, not {ev.event_type.value}"))
    if ev.effective_until is not None and ev.effective_until <= ev.effective_from:
        p.append(FieldProblem("effective_until", "must be after effective_from"))
    if ev.publication_until is not None and ev.publication_until <= ev.effective_from:
        p.append(FieldProblem("publication_until", "must be after effective_from"))
    if ev.basis is not None and ev.basis.decided_on is not None and ev.basis.decided_on > ev.listed_on:
        p.append(FieldProblem("basis.decided_on", "a decision cannot postdate the listing it grounds"))
    p += _identifier_problems("subject.identifiers", ev.subject.identifiers)
    for j, party in enumerate(ev.subject.related_parties):
        p += _identifier_problems(f"subject.related_parties[{j}].identifiers", party.identifiers)
    return p


def validate_record(raw: Any, *, agency: str, world: World) -> ListEntryEvent:
    """A valid :class:`ListEntryEvent` from the adapter's JSON shape, or RecordInvalid."""
    if not isinstance(raw, dict):
        raise RecordInvalid([FieldProblem("", f"a record must be a JSON object, not {type(raw).__name__}")])
    try:
        ev = ListEntryEvent.model_validate(raw)
    except ValidationError as exc:
        raise RecordInvalid(_pydantic_problems(exc)) from None
    problems = context_problems(ev, agency=agency, world=world)
    if problems:
        raise RecordInvalid(problems)
    return ev
