"""What applies to one person or organisation, from the exchange's own evidence (pure).

``concord subject-report --id ID`` answers a listed person's questions: which listings name
me, what does each implementing agency do to me because of them, who decided it and on what
legal basis, since when and until when, what has been lifted and why, and how do I get off.
Every answer comes from records verified as the exchange's services verify them:

* **the evidential list topics**: every listing that names the identifier, as the listed
  subject or as a related party; the entry's latest version decides its status;
* **the directive topics**: the latest directive of each key whose target carries the
  identifier.  An APPLY is a measure in force (``SCHEDULED`` before its ``valid_from``); one
  past its ``valid_until`` has ended by itself (its subscriber already answers "clear") and is
  reported as lifted with cause ``PERIOD_ENDED`` even before the fan-out's LIFT arrives; a
  LIFT is a measure lifted, with the directive's cause and, when the publisher ended the entry,
  the delisting's reason from its record;
* **the receipts topics**: whether the implementing agency confirmed each directive;
* **the declared world**: program titles and legal bases, each MOU's title and document
  number, each measure's text and legal basis, and how removal works (the program's
  ``removal`` and when a measure ends by itself: with the listing's period, with the MOU's
  end, or when the listing agency delists the entry).

Identifiers are matched as a check matches them: the asked value is normalised by
:func:`services.core.identifiers.query_identifier` (with a scheme, only that scheme's
identifiers match), and each identifier of a record by
:func:`~services.core.identifiers.normalize_identifier`.

The report names the listed subject and the asked party as each listing names them; other
related parties of a listing (a second legal representative) never appear in it.

A report is signed over :func:`signed_bytes`: its canonical JSON (sorted keys, no spaces,
UTF-8), framed like a single-object record with the two marker bytes of the registry's JSON
records and an 8-byte fingerprint of :data:`FORMAT`, so that the signature, which covers those
8 bytes, also binds the format (see :mod:`services.core.registry`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from services.core.errors import ConcordError
from services.core.identifiers import normalize_identifier, query_identifier
from services.core.models import (
    Action,
    Delisting,
    Directive,
    Identifier,
    ListEntryEvent,
    Name,
    Receipt,
    SubjectKind,
)
from services.core.registry import MAGIC
from services.core.routing import SUBJECT_REF, listing_end, measure_window
from services.core.world import Mou, World

FORMAT: Final = "concord.subject-report/v1+json"
FORMAT_FINGERPRINT = hashlib.sha256(FORMAT.encode()).digest()[:8]
SUBJECT = SUBJECT_REF  # how a report names the listed subject's own place in a listing

MEASURES_END = (
    "A measure ends by itself when the listing's period ends or when the memorandum of understanding "
    "under which it applies ends, whichever comes first (each measure's 'ends'); it ends earlier when "
    "the listing agency delists the entry. The implementing agency is then told to lift it and confirms "
    "with a signed receipt; once a measure's period has ended, its check service already answers that "
    "the measure no longer applies."
)


class SubjectReportInvalid(ConcordError):
    """The question cannot be answered as asked (a malformed identifier)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListingStatus(StrEnum):
    """Where a listing stands at the report's time."""

    LISTED = "LISTED"  # in force
    NOT_YET_EFFECTIVE = "NOT_YET_EFFECTIVE"  # its effective_from is still ahead
    PERIOD_ENDED = "PERIOD_ENDED"  # its effective_until (or publication_until) has passed
    DELISTED = "DELISTED"
    EXPIRED = "EXPIRED"
    RETRACTED = "RETRACTED"


class MeasureStatus(StrEnum):
    IN_FORCE = "IN_FORCE"
    SCHEDULED = "SCHEDULED"  # applied, from a valid_from still ahead


class AgencyRef(_Model):
    agency_id: str
    name: str


class ProgramRef(_Model):
    program_id: str
    title: str | None
    list_kind: str | None
    legal_basis: str | None


class MouRef(_Model):
    mou_id: str
    version: int
    title: str | None  # None: the declared world no longer has this version
    document_no: str | None


class IdentifierOut(_Model):
    scheme: str
    value: str


class Party(_Model):
    """A subject as a listing names it: ``role`` is ``SUBJECT`` for the listed subject itself."""

    role: str
    kind: SubjectKind
    names: tuple[str, ...]
    identifiers: tuple[IdentifierOut, ...]


class DelistingOut(_Model):
    reason: str
    note: str | None
    decision_no: str | None
    decided_on: date | None


class ReceiptOut(_Model):
    """The implementing agency's signed answer to a directive."""

    status: str
    recorded_at: datetime
    reason: str | None


class Listing(_Model):
    """One list entry that names the asked party, as its latest version stands."""

    listing_agency: AgencyRef
    entry_id: str
    version: int
    status: ListingStatus
    program: ProgramRef
    named_as: tuple[Party, ...]  # the asked party, as the latest version naming it names it
    named_in_latest_version: bool  # False: a later version no longer names the asked party
    subject: Party  # the listed subject
    decision_no: str | None
    issued_by: str | None
    decided_on: date | None
    reason: str | None
    listed_on: date
    since: datetime
    until: datetime | None  # the earlier of effective_until and publication_until
    delisting: DelistingOut | None


class Ends(_Model):
    """When a measure in force ends by itself, and who can end it sooner."""

    with_listing_period: datetime | None  # None: the listing has no end date
    with_mou: datetime | None  # None: the MOU (and the amendments that keep the measure) has no end
    on_delisting_by: AgencyRef


class _Measure(_Model):
    implementing_agency: AgencyRef
    measure_id: str
    kind: str
    text: str | None  # None: the declared world no longer has this measure
    legal_basis: str | None
    mou: MouRef
    listing_agency: AgencyRef
    entry_id: str
    entry_version: int
    program_id: str
    applies_as: str  # SUBJECT, or the related party's role
    decision_no: str | None
    issued_by: str | None
    since: datetime
    until: datetime | None
    directive_id: str
    receipt: ReceiptOut | None  # None: not (yet) confirmed by the implementing agency


class InForce(_Measure):
    status: MeasureStatus
    ends: Ends


class Lifted(_Measure):
    lifted_at: datetime
    cause: str  # the LIFT's cause (DELISTED, EXPIRED, RETRACTED, PERIOD_ENDED, MOU_CHANGED, AMENDED)
    lift_issued: bool  # False: ended with its validity; the fan-out's LIFT has not been read yet
    delisting: DelistingOut | None  # the publisher's delisting, when its record ended the entry


class ProgramRemoval(_Model):
    program: ProgramRef
    listing_agency: AgencyRef
    how: str | None  # the program's declared way off the list; None when not declared


class Removal(_Model):
    programs: tuple[ProgramRemoval, ...]
    measures_end: str


class Evidence(_Model):
    """What the report was assembled from: records read and verified, and those refused."""

    list_records: int = 0
    list_records_refused: int = 0
    directives: int = 0
    directives_refused: int = 0
    receipts: int = 0
    receipts_refused: int = 0


class SubjectReport(_Model):
    format: Literal["concord.subject-report/v1+json"] = FORMAT
    id: str
    scheme: str | None
    generated_at: datetime
    listings: tuple[Listing, ...]
    in_force: tuple[InForce, ...]
    lifted: tuple[Lifted, ...]
    removal: Removal
    evidence: Evidence


@dataclass(frozen=True)
class Asked:
    """The identifier a report is about, normalised as a check normalises it."""

    value: str
    scheme: str | None

    @classmethod
    def parse(cls, value: str, scheme: str | None = None) -> Asked:
        normal, problem = query_identifier(value, scheme or None)
        if problem is not None:
            raise SubjectReportInvalid(f"--id is not an identifier that can be looked up: {problem}")
        return cls(normal, scheme or None)

    def matches(self, identifiers: Iterable[Identifier]) -> bool:
        return any(
            (self.scheme is None or i.scheme == self.scheme) and normalize_identifier(i.scheme, i.value) == self.value
            for i in identifiers
        )


# --- assembly ----------------------------------------------------------------------------------------


def _agency(world: World, agency_id: str) -> AgencyRef:
    a = world.agencies.get(agency_id)
    return AgencyRef(agency_id=agency_id, name=a.name if a else agency_id)


def _program(world: World, program_id: str) -> ProgramRef:
    p = world.programs.get(program_id)
    if p is None:
        return ProgramRef(program_id=program_id, title=None, list_kind=None, legal_basis=None)
    return ProgramRef(program_id=program_id, title=p.title, list_kind=p.list_kind, legal_basis=p.legal_basis)


def _names(names: Iterable[Name]) -> tuple[str, ...]:
    return tuple(n.value for n in names)


def _ids(ids: Iterable[Identifier]) -> tuple[IdentifierOut, ...]:
    return tuple(IdentifierOut(scheme=i.scheme, value=i.value) for i in ids)


def _named_as(ev: ListEntryEvent, asked: Asked) -> tuple[Party, ...]:
    s = ev.subject
    out: list[Party] = []
    if asked.matches(s.identifiers):
        out.append(Party(role=SUBJECT, kind=s.kind, names=_names(s.names), identifiers=_ids(s.identifiers)))
    out += [
        Party(role=p.role, kind=p.kind, names=_names(p.names), identifiers=_ids(p.identifiers))
        for p in s.related_parties
        if asked.matches(p.identifiers)
    ]
    return tuple(out)


def _delisting(d: Delisting | None) -> DelistingOut | None:
    if d is None:
        return None
    return DelistingOut(reason=d.reason.value, note=d.note, decision_no=d.decision_no, decided_on=d.decided_on)


def listing_status(ev: ListEntryEvent, now: datetime) -> ListingStatus:
    if ev.ends_entry:
        return ListingStatus(ev.event_type.value)
    end = listing_end(ev)
    if end is not None and end <= now:
        return ListingStatus.PERIOD_ENDED
    if ev.effective_from > now:
        return ListingStatus.NOT_YET_EFFECTIVE
    return ListingStatus.LISTED


def _listing(
    origin: str, latest: ListEntryEvent, named: ListEntryEvent, asked: Asked, world: World, now: datetime
) -> Listing:
    basis = latest.basis
    s = latest.subject
    return Listing(
        listing_agency=_agency(world, origin),
        entry_id=latest.entry_id,
        version=latest.version,
        status=listing_status(latest, now),
        program=_program(world, latest.program),
        named_as=_named_as(named, asked),
        named_in_latest_version=named.version == latest.version,
        subject=Party(role=SUBJECT, kind=s.kind, names=_names(s.names), identifiers=_ids(s.identifiers)),
        decision_no=basis.decision_no if basis else None,
        issued_by=basis.issued_by if basis else None,
        decided_on=basis.decided_on if basis else None,
        reason=latest.reason,
        listed_on=latest.listed_on,
        since=latest.effective_from,
        until=listing_end(latest),
        delisting=_delisting(latest.delisting),
    )


def _mou_facts(world: World, d: Directive) -> tuple[MouRef, Mou | None, str | None, str | None]:
    """The MOU version a directive names, and its measure's text and legal basis (from the latest
    version still declaring the measure when this one is gone)."""
    versions = world.mou_versions(d.mou_id)
    exact = next((m for m in versions if m.version == d.mou_version), None)
    ref = MouRef(
        mou_id=d.mou_id,
        version=d.mou_version,
        title=exact.title if exact else None,
        document_no=exact.document_no if exact else None,
    )
    candidates = ([exact] if exact else []) + list(reversed(versions))
    measure = next((x for v in candidates for x in v.measures if x.measure_id == d.measure_id), None)
    return ref, exact, measure.text if measure else None, measure.legal_basis if measure else None


def _receipt(receipts: Mapping[str, Receipt], d: Directive) -> ReceiptOut | None:
    r = receipts.get(d.directive_id)
    if r is None or r.agency != d.subscriber:
        return None
    return ReceiptOut(status=r.status.value, recorded_at=r.recorded_at, reason=r.reason)


def _measure_fields(
    d: Directive, event: ListEntryEvent | None, world: World, receipts: Mapping[str, Receipt]
) -> tuple[dict[str, Any], Mou | None]:
    mou, exact, text, legal_basis = _mou_facts(world, d)
    basis = event.basis if event is not None else None
    return {
        "implementing_agency": _agency(world, d.subscriber),
        "measure_id": d.measure_id,
        "kind": d.measure_kind.value,
        "text": text,
        "legal_basis": legal_basis,
        "mou": mou,
        "listing_agency": _agency(world, d.origin_agency),
        "entry_id": d.entry_id,
        "entry_version": d.entry_version,
        "program_id": d.program,
        "applies_as": SUBJECT if d.subject_ref == SUBJECT_REF else (d.target.role or d.subject_ref.split(":", 1)[0]),
        "decision_no": basis.decision_no if basis else None,
        "issued_by": basis.issued_by if basis else None,
        "since": d.valid_from,
        "until": d.valid_until,
        "directive_id": d.directive_id,
        "receipt": _receipt(receipts, d),
    }, exact


def _latest_receipts(receipts: Iterable[Receipt]) -> dict[str, Receipt]:
    out: dict[str, Receipt] = {}
    for r in receipts:
        held = out.get(r.directive_id)
        if held is None or r.recorded_at >= held.recorded_at:
            out[r.directive_id] = r
    return out


def assemble(
    *,
    asked: Asked,
    events: Iterable[tuple[str, ListEntryEvent]],
    latest_directives: Iterable[Directive],
    receipts: Iterable[Receipt],
    world: World,
    now: datetime,
    evidence: Evidence | None = None,
) -> SubjectReport:
    """The report for ``asked`` at ``now``.

    ``events`` are every admitted list record as ``(origin agency, event)``, any version, any
    order; ``latest_directives`` the latest directive of each key (``services.ops.audit.latest_of``),
    each admitted; ``receipts`` every verified receipt.
    """
    by_version: dict[tuple[str, str, int], ListEntryEvent] = {}
    latest: dict[tuple[str, str], ListEntryEvent] = {}
    naming: dict[tuple[str, str], ListEntryEvent] = {}  # the latest version of each entry naming ``asked``
    for origin, ev in events:
        entry = (origin, ev.entry_id)
        by_version[(origin, ev.entry_id, ev.version)] = ev
        held = latest.get(entry)
        if held is None or ev.version > held.version:
            latest[entry] = ev
        if _named_as(ev, asked) and (entry not in naming or ev.version > naming[entry].version):
            naming[entry] = ev
    listings = [
        _listing(origin, latest[(origin, entry_id)], named, asked, world, now)
        for (origin, entry_id), named in sorted(naming.items())
    ]

    answered = _latest_receipts(receipts)
    in_force: list[InForce] = []
    lifted: list[Lifted] = []
    for d in latest_directives:
        if not asked.matches(d.target.identifiers):
            continue
        event = by_version.get((d.origin_agency, d.entry_id, d.entry_version))
        fields, mou = _measure_fields(d, event, world, answered)
        if d.action is Action.APPLY and (d.valid_until is None or d.valid_until > now):
            listed = latest.get((d.origin_agency, d.entry_id))
            period = listing_end(listed) if listed is not None else d.valid_until
            in_force.append(
                InForce(
                    **fields,
                    status=MeasureStatus.IN_FORCE if d.valid_from <= now else MeasureStatus.SCHEDULED,
                    ends=Ends(
                        with_listing_period=period,
                        with_mou=measure_window(world, mou, d.measure_id)[1] if mou is not None else None,
                        on_delisting_by=_agency(world, d.origin_agency),
                    ),
                )
            )
        elif d.action is Action.APPLY:
            assert d.valid_until is not None  # noqa: S101 - the branch above took every open-ended APPLY
            lifted.append(
                Lifted(**fields, lifted_at=d.valid_until, cause="PERIOD_ENDED", lift_issued=False, delisting=None)
            )
        else:
            ended_by = event.delisting if event is not None and event.ends_entry else None
            lifted.append(
                Lifted(
                    **fields,
                    lifted_at=d.issued_at,
                    cause=d.cause.value,
                    lift_issued=True,
                    delisting=_delisting(ended_by),
                )
            )

    def order(m: _Measure) -> tuple[str, str, str, str, str]:
        return (m.listing_agency.agency_id, m.entry_id, m.implementing_agency.agency_id, m.measure_id, m.applies_as)

    programs = {(x.listing_agency.agency_id, x.program.program_id) for x in listings}
    programs |= {(m.listing_agency.agency_id, m.program_id) for m in (*in_force, *lifted)}
    removal = Removal(
        programs=tuple(
            ProgramRemoval(
                program=_program(world, program_id),
                listing_agency=_agency(world, origin),
                how=p.removal if (p := world.programs.get(program_id)) else None,
            )
            for origin, program_id in sorted(programs)
        ),
        measures_end=MEASURES_END,
    )
    return SubjectReport(
        id=asked.value,
        scheme=asked.scheme,
        generated_at=now,
        listings=tuple(listings),
        in_force=tuple(sorted(in_force, key=order)),
        lifted=tuple(sorted(lifted, key=order)),
        removal=removal,
        evidence=evidence or Evidence(),
    )


# --- the signed form ---------------------------------------------------------------------------------


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_bytes(report: SubjectReport | Mapping[str, Any]) -> bytes:
    """The exact bytes a report's signature covers: framed canonical JSON of the report."""
    doc = report.model_dump(mode="json") if isinstance(report, SubjectReport) else report
    return MAGIC + FORMAT_FINGERPRINT + canonical_json(doc)
