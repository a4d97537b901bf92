"""What the fan-out decides, as pure functions on an entry's state.

For each list entry the fan-out keeps an :class:`EntryState`: the publisher's last
accepted record (once: its signed bytes and where it sits in the evidential log),
and for every (measure, subject) the entry ever touched, the latest directive sent
for it (APPLY or LIFT) without a copy of that record.  That map is the per-entry
slice of the compacted directive topics, which gives three properties cheaply:

* **Difference only.** A new event computes the *desired* directives and emits
  only keys whose APPLY changed materially, plus LIFTs for keys no longer desired.
* **Deterministic ids.** A directive id hashes the entry, key, state sequence
  number and action, so replaying the same inputs yields the same ids.
* **Crash safety.** When a record is delivered again (its offset is not newer than
  the last one applied for the entry) the state already reflects it.  Re-sending
  the latest directive of every key is then always right: subscribers drop ids and
  sequence numbers they already hold.

Every directive carries the publisher's signed record it follows from — a LIFT
too, whatever ended it — so that an implementing agency can check it against the
record and the MOUs itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from enum import StrEnum
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.core.codec import default_registry
from services.core.disclosure import for_target, reveal
from services.core.models import (
    Action,
    Cause,
    Directive,
    Identifier,
    ListEntryEvent,
    ListingCommitments,
    MeasureKind,
    Name,
    Notice,
    SourceRecord,
    Subject,
    SubjectKind,
    TargetSubject,
    directive_key,
)
from services.core.reasons import Reason
from services.core.world import Measure, Mou, World

SUBJECT_REF = "SUBJECT"


class Outcome(StrEnum):
    APPLIED = "APPLIED"  # a new version was applied
    RESYNC = "RESYNC"  # a redelivered record: latest directives sent again
    STALE_VERSION = Reason.STALE_VERSION.value  # an older version than the one held
    REPLAYED = Reason.REPLAYED.value  # an event id seen before, with other content
    TICK = "TICK"  # a re-evaluation by time or MOU change


class EntryState(BaseModel):
    """What the fan-out keeps of one entry: the routing facts, not copies of the record."""

    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    origin: str
    entry_id: str
    version: int
    event_id: str
    digest: bytes
    source: SourceRecord
    seq: int
    directives: Mapping[str, Directive]  # latest per key, ``source`` left out: it is ``self.source``
    offsets: Mapping[str, int]  # "topic:partition" -> last offset applied
    world_rev: str = ""  # the declared world this state was last evaluated against

    @property
    def table_key(self) -> str:
        return f"{self.origin}/{self.entry_id}"

    @cached_property
    def event(self) -> ListEntryEvent:
        """The publisher's event, read back from its signed commitments and every disclosure when
        needed (a tick, an MOU change)."""
        commitments = default_registry().decode_model(self.source.record, ListingCommitments)
        return reveal(commitments, self.source.disclosures).full_event()

    def applied(self) -> list[Directive]:
        return [d for d in self.directives.values() if d.action is Action.APPLY]

    def next_deadline(self) -> datetime | None:
        """When the earliest APPLY held by this entry runs out, if ever."""
        ends = [d.valid_until for d in self.applied() if d.valid_until is not None]
        return min(ends) if ends else None

    def latest(self) -> tuple[Directive, ...]:
        """The latest directive of every key, as the state keeps it (without the source record)."""
        return tuple(self.directives.values())


class Transition(BaseModel):
    """What one record or tick did to an entry.

    ``changed`` holds the directives it issued as the state keeps them (without the publisher's
    record); each is sent with its entry of ``sources``: the publisher's signed commitments and
    the disclosures its agency may see (:func:`sources_for`), which :attr:`emitted` attaches.
    """

    model_config = ConfigDict(frozen=True)

    state: EntryState | None
    changed: tuple[Directive, ...]
    sources: tuple[SourceRecord, ...]
    outcome: Outcome

    @cached_property
    def emitted(self) -> tuple[Directive, ...]:
        """The directives as they are sent: each carrying the publisher's record it follows from."""
        return tuple(_with_source(d, s) for d, s in zip(self.changed, self.sources, strict=True))


class Accepted(BaseModel):
    """A list record that passed decoding, signature and validation checks."""

    model_config = ConfigDict(frozen=True)

    origin: str
    event: ListEntryEvent
    source: SourceRecord
    digest: bytes


def listing_end(event: ListEntryEvent) -> datetime | None:
    """When a listing stops applying: its ``effective_until``, or its ``publication_until`` if sooner
    (nothing of a listing may be acted on once it may no longer be published)."""
    ends = [e for e in (event.effective_until, event.publication_until) if e is not None]
    return min(ends) if ends else None


def _as_utc_datetime(d: date | None) -> datetime | None:
    """An MOU's day boundary as the instant it begins, in UTC."""
    if d is None or isinstance(d, datetime):
        return d
    return datetime.combine(d, time.min, tzinfo=UTC)


def measure_window(world: World, mou: Mou, measure_id: str) -> tuple[datetime, datetime | None]:
    """When the legal basis for ``measure_id`` under ``mou`` starts and ends.

    The end follows the MOU's later versions for as long as each one starts the day
    the previous one ends and still contains the measure: a measure an amendment
    keeps must not lapse at the switch (subscribers enforce ``valid_until`` on their
    own), while one it drops — or an announced termination — ends exactly then.
    """
    start = _as_utc_datetime(mou.valid_from)
    if start is None:  # a Day is never None; the loader guarantees it
        raise ValueError(f"{mou.mou_id} v{mou.version} has no valid_from")
    end = mou.ends_on
    for later in world.mou_versions(mou.mou_id):
        if end is None or later.version <= mou.version:
            continue
        if later.valid_from == end and any(m.measure_id == measure_id for m in later.measures):
            end = later.ends_on
    return start, _as_utc_datetime(end)


class _Route(BaseModel):
    """One (MOU version, measure) a program triggers, with what routing needs of it precomputed."""

    model_config = ConfigDict(frozen=True)

    mou: Mou
    measure: Measure
    window: tuple[datetime, datetime | None]
    visible: tuple[str, ...] | None
    roles: frozenset[str]


_ROUTES: dict[tuple[int, str, date], tuple[_Route, ...]] = {}


def _routes(world: World, program: str, now: datetime) -> tuple[_Route, ...]:
    """The measures ``program`` triggers on ``now``'s UTC day, computed once per world and day.

    MOU validity is judged per whole UTC day, so the answer can only change at midnight or
    with another world.
    """
    key = (id(world), program, now.astimezone(UTC).date())
    hit = _ROUTES.get(key)
    if hit is not None:
        return hit
    if len(_ROUTES) > 1024 or len(_WORLDS) > 16:
        _ROUTES.clear()
        _WORLDS.clear()
    routes = tuple(
        _Route(
            mou=mou,
            measure=measure,
            window=measure_window(world, mou, measure.measure_id),
            visible=mou.visible_fields.get(measure.implementing_agency),
            roles=measure.related_roles(),
        )
        for mou, measure in world.triggered_measures(program, now)
    )
    _ROUTES[key] = routes
    # Keep the world alive while its id is a key, so that the id cannot be reused by another world.
    _WORLDS[id(world)] = world
    return routes


_WORLDS: dict[int, World] = {}


def _target(
    subject_kind: SubjectKind,
    names: tuple[Name, ...],
    ids: tuple[Identifier, ...],
    role: str | None,
    visible: tuple[str, ...] | None,
) -> TargetSubject:
    # Identifiers are always passed: a measure cannot be applied to a subject one cannot identify.
    show_names = visible is None or "names" in visible
    return TargetSubject.model_construct(
        kind=subject_kind, role=role, names=names if show_names else (), identifiers=ids
    )


def _targets(
    subject: Subject, route: _Route, made: dict[tuple[str, tuple[str, ...] | None], TargetSubject]
) -> dict[str, TargetSubject]:
    """The subjects ``route``'s measure reaches, by reference; ``made`` shares them between the
    measures of one evaluation that see the same fields."""
    out: dict[str, TargetSubject] = {}
    if route.measure.applies_to_subject(subject.kind.value):
        hit = made.get((SUBJECT_REF, route.visible))
        if hit is None:
            hit = made[(SUBJECT_REF, route.visible)] = _target(
                subject.kind, subject.names, subject.identifiers, None, route.visible
            )
        out[SUBJECT_REF] = hit
    for party in subject.related_parties:
        if party.role not in route.roles:
            continue
        first = party.identifiers[0]
        ref = f"{party.role}:{first.scheme}:{first.value}"
        hit = made.get((ref, route.visible))
        if hit is None:
            hit = made[(ref, route.visible)] = _target(
                party.kind, party.names, party.identifiers, party.role, route.visible
            )
        out[ref] = hit
    return out


def directive_id(key: str, entry_version: int, seq: int, action: Action) -> str:
    h = hashlib.sha256(f"{key}|v{entry_version}|s{seq}|{action.value}".encode()).hexdigest()
    return h[:32]


def desired_directives(origin: str, event: ListEntryEvent, world: World, now: datetime) -> dict[str, dict[str, Any]]:
    """Keys and material fields of every APPLY this event calls for at ``now``."""
    if event.ends_entry:
        return {}
    period_end = listing_end(event)
    if period_end is not None and period_end <= now:
        return {}
    want: dict[str, dict[str, Any]] = {}
    made: dict[tuple[str, tuple[str, ...] | None], TargetSubject] = {}
    for route in _routes(world, event.program, now):
        mou, measure = route.mou, route.measure
        mou_start, mou_end = route.window
        valid_from = max(event.effective_from, mou_start)
        ends = [e for e in (period_end, mou_end) if e is not None]
        valid_until = min(ends) if ends else None
        for ref, target in _targets(event.subject, route, made).items():
            key = directive_key(origin, event.entry_id, measure.measure_id, ref)
            want[key] = {
                "subscriber": measure.implementing_agency,
                "measure_id": measure.measure_id,
                "measure_kind": MeasureKind(measure.kind),
                "mou_id": mou.mou_id,
                "mou_version": mou.version,
                "subject_ref": ref,
                "target": target,
                "valid_from": valid_from,
                "valid_until": valid_until,
            }
    return want


_MATERIAL = ("subscriber", "measure_kind", "mou_id", "mou_version", "target", "valid_from", "valid_until")


def _same(held: Directive, spec: Mapping[str, object]) -> bool:
    return held.action is Action.APPLY and all(getattr(held, f) == spec[f] for f in _MATERIAL)


def _with_source(d: Directive, source: SourceRecord | None) -> Directive:
    fields = dict(d.__dict__)
    fields["source"] = source
    return Directive.model_construct(**fields)


def source_for(d: Directive, source: SourceRecord, world: World) -> SourceRecord:
    """``source`` with only the disclosures ``d``'s agency may see: what its MOU version's
    ``visible_fields`` name and what its target needs to be checked."""
    visible = world.mou(d.mou_id, d.mou_version).visible_fields.get(d.subscriber, ())
    party = None if d.subject_ref == SUBJECT_REF else (d.target.role or "", d.target.identifiers[0].value)
    chosen = for_target(source.disclosures, d.subject_ref, party, visible)
    return SourceRecord.model_construct(**{**source.__dict__, "disclosures": chosen})


def sources_for(directives: tuple[Directive, ...], source: SourceRecord, world: World) -> tuple[SourceRecord, ...]:
    return tuple(source_for(d, source, world) for d in directives)


def notice_fields(d: Directive, world: World) -> dict[str, Any]:
    """What the listing agency is told about ``d`` (a Notice's fields): the measure, its legal basis,
    where and until when."""
    # The measure as its MOU version states it, or as the latest version that still has it (a
    # version rewritten in place may have dropped it: the LIFT that follows still needs saying).
    versions = [world.mou(d.mou_id, d.mou_version), *reversed(world.mou_versions(d.mou_id))]
    measure = next((m for v in versions for m in v.measures if m.measure_id == d.measure_id), None)
    return {
        "notice_id": d.directive_id,
        "origin_agency": d.origin_agency,
        "entry_id": d.entry_id,
        "entry_version": d.entry_version,
        "action": d.action.value,
        "cause": d.cause.value,
        "subject_ref": d.subject_ref,
        "implementing_agency": d.subscriber,
        "measure_id": d.measure_id,
        "measure_kind": d.measure_kind.value,
        "measure_text": measure.text if measure else "a measure no longer in the memorandum",
        "legal_basis": measure.legal_basis if measure else f"{d.mou_id} v{d.mou_version}",
        "mou_id": d.mou_id,
        "mou_version": d.mou_version,
        "valid_from": d.valid_from,
        "valid_until": d.valid_until,
        "issued_at": d.issued_at,
    }


def notice_for(d: Directive, world: World) -> Notice:
    return Notice.model_validate(notice_fields(d, world))


def _lift_cause(event: ListEntryEvent, reevaluation: bool, now: datetime) -> Cause:
    """Why a held APPLY is lifted: the publisher's own word first, then the entry's
    period; a directive that ends earlier because its MOU or measure ends was lifted
    by an MOU change."""
    if not reevaluation and event.ends_entry:
        return Cause(event.event_type.value)
    end = listing_end(event)
    if end is not None and end <= now:
        return Cause.PERIOD_ENDED
    return Cause.MOU_CHANGED if reevaluation else Cause.AMENDED


def _evaluate(
    *,
    origin: str,
    event: ListEntryEvent,
    source: SourceRecord,
    held: Mapping[str, Directive],
    seq: int,
    world: World,
    now: datetime,
    reevaluation: bool,
    hold_applies: bool = False,
) -> tuple[dict[str, Directive], list[Directive]]:
    """The held map after ``event`` and the directives that change it (as held: sent with the source).

    With ``hold_applies`` no APPLY is issued or changed (what is held stays as it is) while LIFTs
    are: what the fan-out does while the registry it routes by is not known to be current.
    """
    want = desired_directives(origin, event, world, now)
    latest = dict(held)
    emitted: list[Directive] = []
    apply_cause = Cause.MOU_CHANGED if reevaluation else Cause(event.event_type.value)
    for key, spec in want.items():
        current = held.get(key)
        if current is not None and _same(current, spec):
            continue
        if hold_applies:
            continue
        fields = {
            "directive_id": directive_id(key, event.version, seq, Action.APPLY),
            "action": Action.APPLY,
            "origin_agency": origin,
            "entry_id": event.entry_id,
            "entry_version": event.version,
            "program": event.program,
            "seq": seq,
            "cause": apply_cause,
            "issued_at": now,
            "source": None,
            **spec,
        }
        held_d = Directive.model_construct(**fields)
        latest[key] = held_d
        emitted.append(held_d)
    for key, current in held.items():
        if key in want or current.action is Action.LIFT:
            continue
        fields = dict(current.__dict__)
        fields.update(
            directive_id=directive_id(key, event.version, seq, Action.LIFT),
            action=Action.LIFT,
            entry_version=event.version,
            seq=seq,
            cause=_lift_cause(event, reevaluation, now),
            issued_at=now,
            source=None,
        )
        held_d = Directive.model_construct(**fields)
        latest[key] = held_d
        emitted.append(held_d)
    return latest, emitted


def world_revision(world: World) -> str:
    """A short fingerprint of the declared world; a change means entries need re-evaluation."""
    docs = json.dumps(world.to_documents(), sort_keys=True, default=str)
    return hashlib.sha256(docs.encode()).hexdigest()[:16]


def world_epoch(world: World, world_rev: str, now: datetime, *, holding: bool = False) -> str:
    """What every entry's directives depend on besides its own record: the declared world, which
    MOU versions are in force on ``now``'s UTC day, and whether APPLYs are withheld (``holding``:
    the registry is not known to be current).  When it changes, every entry must be evaluated
    again (a new MOU in force backfills, a terminated one lifts, and the end of a hold issues
    what was withheld)."""
    in_force = ",".join(f"{m.mou_id}@{m.version}" for m in world.current_mous(now))
    held = "|holding" if holding else ""
    return hashlib.sha256(f"{world_rev}|{in_force}{held}".encode()).hexdigest()[:16]


def _offset_key(source: SourceRecord) -> str:
    return f"{source.topic}:{source.partition}"


def on_record(
    state: EntryState | None,
    rec: Accepted,
    world: World,
    now: datetime,
    world_rev: str = "",
    *,
    hold_applies: bool = False,
) -> Transition:
    """Apply one verified list record to the entry it names (withholding APPLYs with ``hold_applies``)."""
    ev = rec.event
    if state is not None:
        last = state.offsets.get(_offset_key(rec.source))
        if last is not None and rec.source.offset <= last:
            again = state.latest()
            return Transition(
                state=state, changed=again, sources=sources_for(again, state.source, world), outcome=Outcome.RESYNC
            )
        if ev.version < state.version:
            return Transition(state=state, changed=(), sources=(), outcome=Outcome.STALE_VERSION)
        if ev.version == state.version:
            outcome = Outcome.RESYNC if rec.digest == state.digest else Outcome.REPLAYED
            changed = state.latest() if outcome is Outcome.RESYNC else ()
            return Transition(
                state=state, changed=changed, sources=sources_for(changed, state.source, world), outcome=outcome
            )
        if ev.event_id == state.event_id:
            return Transition(state=state, changed=(), sources=(), outcome=Outcome.REPLAYED)
    seq = (state.seq if state else 0) + 1
    held = state.directives if state else {}
    latest, emitted = _evaluate(
        origin=rec.origin,
        event=ev,
        source=rec.source,
        held=held,
        seq=seq,
        world=world,
        now=now,
        reevaluation=False,
        hold_applies=hold_applies,
    )
    offsets = dict(state.offsets) if state else {}
    offsets[_offset_key(rec.source)] = rec.source.offset
    new = EntryState(
        origin=rec.origin,
        entry_id=ev.entry_id,
        version=ev.version,
        event_id=ev.event_id,
        digest=rec.digest,
        source=rec.source,
        seq=seq,
        directives=latest,
        offsets=offsets,
        world_rev=world_rev,
    )
    new.__dict__["event"] = ev  # the cached_property's slot: no need to decode what was just decoded
    changed = tuple(emitted)
    return Transition(
        state=new, changed=changed, sources=sources_for(changed, rec.source, world), outcome=Outcome.APPLIED
    )


def on_tick(
    state: EntryState, world: World, now: datetime, world_rev: str = "", *, hold_applies: bool = False
) -> Transition:
    """Re-evaluate an entry against the clock and the MOUs in force now.

    Lifts what has run out (cause PERIOD_ENDED) or lost its MOU (MOU_CHANGED) and
    backfills measures a new MOU or measure added (unless ``hold_applies``: then it only
    lifts).  Emits nothing when nothing changed.
    """
    seq = state.seq + 1
    latest, emitted = _evaluate(
        origin=state.origin,
        event=state.event,
        source=state.source,
        held=state.directives,
        seq=seq,
        world=world,
        now=now,
        reevaluation=True,
        hold_applies=hold_applies,
    )
    if not emitted:
        if world_rev and world_rev != state.world_rev:
            return Transition(
                state=state.model_copy(update={"world_rev": world_rev}), changed=(), sources=(), outcome=Outcome.TICK
            )
        return Transition(state=state, changed=(), sources=(), outcome=Outcome.TICK)
    new = state.model_copy(update={"seq": seq, "directives": latest, "world_rev": world_rev or state.world_rev})
    changed = tuple(emitted)
    return Transition(
        state=new, changed=changed, sources=sources_for(changed, state.source, world), outcome=Outcome.TICK
    )
