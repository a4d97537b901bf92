"""Fan-out decisions on the declared world of ``topics/``: which directives a list
record produces, that only differences are emitted, that every APPLY is lifted again
with the right cause, that replays are harmless and directive ids deterministic."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest

from services.core.models import (
    Action,
    Cause,
    Directive,
    Identifier,
    ListEntryEvent,
    MeasureKind,
    SubjectKind,
    directive_key,
)
from services.core.routing import (
    SUBJECT_REF,
    Accepted,
    EntryState,
    Outcome,
    Transition,
    desired_directives,
    on_record,
    on_tick,
)
from services.core.world import World, parse_world
from tests.unit.factories import (
    EFFECTIVE_FROM,
    EFFECTIVE_UNTIL,
    ENTRY_ID,
    KNOWN_RIC,
    KNOWN_RIC_X,
    KNOWN_USCC,
    NOW,
    days,
    delisting,
    encode,
    entry,
    incentive_dict,
    legal_rep,
    make_ric,
    organization,
    person,
    real_world,
    source_record,
)

pytestmark = pytest.mark.unit

WORLD = real_world()

FINANCE = "finance.procurement-ban"
AVIATION = "aviation.no-air-tickets"
RAIL = "rail.no-high-speed-rail"
SECURITIES = "securities.license-restriction"
GREEN = "customs.green-channel"
JD_MOU = "mous/mou-judgment-defaulters.yaml"

REP2 = make_ric(2, birth=date(1975, 6, 15))
REP_REF = f"LEGAL_REPRESENTATIVE:CN_RIC:{KNOWN_RIC}"
REP2_REF = f"LEGAL_REPRESENTATIVE:CN_RIC:{REP2}"


# --------------------------------------------------------------------------- helpers


def accepted(
    event: ListEntryEvent, offset: int, *, origin: str = "court", digest: bytes | None = None, partition: int = 0
) -> Accepted:
    source = source_record(event, offset, origin=origin, partition=partition)
    if digest is None:
        digest = hashlib.sha256(encode(event)).digest()  # what the record says, whatever its salts
    return Accepted(origin=origin, event=event, source=source, digest=digest)


def feed(
    events: Sequence[ListEntryEvent], *, world: World = WORLD, now: datetime = NOW, origin: str = "court"
) -> tuple[EntryState, list[Transition]]:
    """Apply ``events`` in order at offsets 0, 1, 2, ... from an empty state."""
    state: EntryState | None = None
    out = []
    for offset, ev in enumerate(events):
        t = on_record(state, accepted(ev, offset, origin=origin), world, now)
        out.append(t)
        state = t.state
    assert state is not None
    return state, out


def by_key(directives: Iterable[Directive]) -> dict[tuple[str, str], Directive]:
    out: dict[tuple[str, str], Directive] = {}
    for d in directives:
        k = (d.measure_id, d.subject_ref)
        assert k not in out, f"two directives for {k} in one emission"
        out[k] = d
    return out


def key(measure: str, ref: str, *, origin: str = "court", entry_id: str = ENTRY_ID) -> str:
    return directive_key(origin, entry_id, measure, ref)


def world_with(change: Callable[[dict[str, Any]], None]) -> World:
    docs = copy.deepcopy(WORLD.to_documents())
    change(docs)
    return parse_world(docs)


def _jd_v1(docs: dict[str, Any]) -> dict[str, Any]:
    version: dict[str, Any] = docs[JD_MOU]["versions"][0]
    return version


LISTED = entry()
AMENDED_REASON = entry(version=2, event_type="AMENDED", reason="Failed to perform; assets concealed")
AMENDED_TWO_REPS = entry(
    version=2, event_type="AMENDED", subject=organization(reps=[legal_rep(), legal_rep(REP2, "Second Rep")])
)
AMENDED_BACK_TO_ONE = entry(version=3, event_type="AMENDED", subject=organization(reps=[legal_rep(REP2, "Second Rep")]))
DELISTED = entry(version=2, event_type="DELISTED", delisting=delisting())


# --------------------------------------------------------------------------- routing


def test_listed_organization_with_legal_representative() -> None:
    rec = accepted(LISTED, 0)
    t = on_record(None, rec, WORLD, NOW)
    assert t.outcome is Outcome.APPLIED
    got = by_key(t.emitted)
    assert set(got) == {(FINANCE, SUBJECT_REF), (AVIATION, REP_REF), (RAIL, REP_REF)}

    company = got[(FINANCE, SUBJECT_REF)]
    assert company.subscriber == "finance"
    assert company.target.kind is SubjectKind.ORGANIZATION
    assert company.target.role is None
    assert company.target.identifiers == (Identifier(scheme="CN_USCC", value=KNOWN_USCC),)

    for measure, subscriber in ((AVIATION, "aviation"), (RAIL, "rail")):
        d = got[(measure, REP_REF)]
        assert d.subscriber == subscriber
        assert d.target.role == "LEGAL_REPRESENTATIVE"
        assert d.target.kind is SubjectKind.PERSON
        assert d.target.identifiers == (Identifier(scheme="CN_RIC", value=KNOWN_RIC),)
        assert d.target.names[0].value == "Wei Example"

    for d in t.emitted:
        assert d.action is Action.APPLY
        assert d.cause is Cause.LISTED
        assert d.measure_kind is MeasureKind.PUNISH
        assert (d.mou_id, d.mou_version) == ("mou-judgment-defaulters", 1)
        assert (d.origin_agency, d.entry_id, d.entry_version, d.program) == (
            "court",
            ENTRY_ID,
            1,
            "court.judgment-defaulters",
        )
        assert d.valid_from == EFFECTIVE_FROM
        assert d.valid_until == EFFECTIVE_UNTIL == LISTED.effective_until
        # The publisher's signed commitments, and of its disclosures only those this agency may see.
        assert d.source is not None
        assert d.source.model_copy(update={"disclosures": rec.source.disclosures}) == rec.source
        assert set(d.source.disclosures) <= set(rec.source.disclosures)
        assert d.issued_at == NOW
    finance = got[(FINANCE, SUBJECT_REF)]
    assert finance.source is not None
    assert not [x for x in finance.source.disclosures if x.path.startswith("subject.related_parties")]
    rep_source = got[(AVIATION, REP_REF)].source
    assert rep_source is not None
    assert {x.path for x in rep_source.disclosures} >= {
        "subject.related_parties[0]",
        "subject.related_parties[0].identifiers[0]",
    }

    assert t.state is not None
    # The state keeps the publisher's record once, and each key's latest directive without a copy of it.
    assert t.state.source == rec.source
    assert dict(t.state.directives) == {d.key: d.model_copy(update={"source": None}) for d in t.emitted}
    assert t.state.latest() == t.changed
    assert t.state.offsets == {"concord.lists.court:0": 0}
    assert t.state.next_deadline() == EFFECTIVE_UNTIL


def test_company_itself_gets_no_travel_ban() -> None:
    t = on_record(None, accepted(LISTED, 0), WORLD, NOW)
    assert not [d for d in t.emitted if d.subject_ref == SUBJECT_REF and d.measure_id in (AVIATION, RAIL)]


def test_listed_organization_without_related_parties_gets_only_procurement_ban() -> None:
    t = on_record(None, accepted(entry(subject=organization(reps=[])), 0), WORLD, NOW)
    assert set(by_key(t.emitted)) == {(FINANCE, SUBJECT_REF)}


def test_listed_person() -> None:
    t = on_record(None, accepted(entry(subject=person()), 0), WORLD, NOW)
    got = by_key(t.emitted)
    assert set(got) == {(AVIATION, SUBJECT_REF), (RAIL, SUBJECT_REF)}
    for d in got.values():
        assert d.action is Action.APPLY
        assert d.target.kind is SubjectKind.PERSON
        assert d.target.role is None
        assert d.target.identifiers == (Identifier(scheme="CN_RIC", value=KNOWN_RIC_X),)
        assert d.valid_until == EFFECTIVE_UNTIL


def test_open_ended_listing_gives_open_ended_directives() -> None:
    t = on_record(None, accepted(entry(effective_until=None, publication_until=None), 0), WORLD, NOW)
    assert t.emitted
    assert all(d.valid_until is None for d in t.emitted)
    assert t.state is not None and t.state.next_deadline() is None


def test_incentive_program_routes_to_customs_green_channel() -> None:
    ev = ListEntryEvent.model_validate(incentive_dict())
    t = on_record(None, accepted(ev, 0, origin="tax"), WORLD, NOW)
    (d,) = t.emitted
    assert (d.action, d.measure_id, d.measure_kind, d.subscriber) == (
        Action.APPLY,
        GREEN,
        MeasureKind.INCENT,
        "customs",
    )
    assert (d.mou_id, d.subject_ref, d.origin_agency) == ("mou-a-grade-taxpayers", SUBJECT_REF, "tax")
    assert d.key == key(GREEN, SUBJECT_REF, origin="tax", entry_id=ev.entry_id)
    assert d.valid_until == ev.effective_until


def test_desired_directives_is_what_a_listing_emits() -> None:
    want = desired_directives("court", LISTED, WORLD, NOW)
    assert set(want) == {key(FINANCE, SUBJECT_REF), key(AVIATION, REP_REF), key(RAIL, REP_REF)}
    assert {spec["subscriber"] for spec in want.values()} == {"finance", "aviation", "rail"}


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(DELISTED, id="delisted"),
        pytest.param(entry(version=2, event_type="EXPIRED"), id="expired"),
        pytest.param(entry(version=2, event_type="RETRACTED"), id="retracted"),
    ],
)
def test_ended_entries_want_nothing(event: ListEntryEvent) -> None:
    assert desired_directives("court", event, WORLD, NOW) == {}


def test_listing_whose_period_already_ended_wants_nothing() -> None:
    assert desired_directives("court", LISTED, WORLD, EFFECTIVE_UNTIL) == {}


# --------------------------------------------------------------------------- amendments


def test_amendment_changing_only_the_reason_emits_nothing() -> None:
    state, (first, second) = feed([LISTED, AMENDED_REASON])
    assert second.outcome is Outcome.APPLIED
    assert second.emitted == ()
    assert state.version == 2
    assert state.event.reason == AMENDED_REASON.reason
    # The directives held are still the ones the listing sent.
    assert {d.directive_id for d in state.directives.values()} == {d.directive_id for d in first.emitted}


def test_amendment_adding_a_legal_representative_applies_only_to_the_new_one() -> None:
    state, (_, t) = feed([LISTED, AMENDED_TWO_REPS])
    got = by_key(t.emitted)
    assert set(got) == {(AVIATION, REP2_REF), (RAIL, REP2_REF)}
    for d in got.values():
        assert d.action is Action.APPLY
        assert d.cause is Cause.AMENDED
        assert d.entry_version == 2
        assert d.target.identifiers == (Identifier(scheme="CN_RIC", value=REP2),)
    assert len(state.applied()) == 5


def test_amendment_removing_a_legal_representative_lifts_only_theirs() -> None:
    state, (_, _, t) = feed([LISTED, AMENDED_TWO_REPS, AMENDED_BACK_TO_ONE])
    got = by_key(t.emitted)
    assert set(got) == {(AVIATION, REP_REF), (RAIL, REP_REF)}
    for d in got.values():
        assert d.action is Action.LIFT
        assert d.cause is Cause.AMENDED
        assert d.entry_version == 3
    assert {(d.measure_id, d.subject_ref) for d in state.applied()} == {
        (FINANCE, SUBJECT_REF),
        (AVIATION, REP2_REF),
        (RAIL, REP2_REF),
    }


def test_amendment_changing_the_period_reapplies_with_the_new_window() -> None:
    later = datetime(2029, 1, 1, tzinfo=UTC)
    amended = entry(
        version=2, event_type="AMENDED", effective_until=later.isoformat(), publication_until=later.isoformat()
    )
    _, (_, t) = feed([LISTED, amended])
    got = by_key(t.emitted)
    assert set(got) == {(FINANCE, SUBJECT_REF), (AVIATION, REP_REF), (RAIL, REP_REF)}
    assert all(d.action is Action.APPLY and d.valid_until == later for d in got.values())


# --------------------------------------------------------------------------- lifts


@pytest.mark.parametrize(
    ("event", "cause"),
    [
        pytest.param(DELISTED, Cause.DELISTED, id="delisted"),
        pytest.param(entry(version=2, event_type="RETRACTED"), Cause.RETRACTED, id="retracted"),
        pytest.param(entry(version=2, event_type="EXPIRED"), Cause.EXPIRED, id="expired"),
    ],
)
def test_end_of_entry_lifts_every_apply_with_its_cause(event: ListEntryEvent, cause: Cause) -> None:
    state, (first, t) = feed([LISTED, event])
    assert t.outcome is Outcome.APPLIED
    assert {d.key for d in t.emitted} == {d.key for d in first.emitted}, "derived directives are lifted too"
    for d in t.emitted:
        assert d.action is Action.LIFT
        assert d.cause is cause
        assert d.entry_version == 2
        assert d.source is not None and d.source.offset == 1
    assert state.applied() == []
    assert state.next_deadline() is None


def test_delisting_after_an_amendment_lifts_every_key_ever_applied() -> None:
    delisted = entry(version=3, event_type="DELISTED", delisting=delisting())
    _, (_, _, t) = feed([LISTED, AMENDED_TWO_REPS, delisted])
    assert len(t.emitted) == 5
    assert {d.action for d in t.emitted} == {Action.LIFT}
    assert {d.cause for d in t.emitted} == {Cause.DELISTED}


def test_already_lifted_keys_are_not_lifted_again() -> None:
    delisted = entry(version=4, event_type="DELISTED", delisting=delisting())
    _, (_, _, _, t) = feed([LISTED, AMENDED_TWO_REPS, AMENDED_BACK_TO_ONE, delisted])
    assert set(by_key(t.emitted)) == {(FINANCE, SUBJECT_REF), (AVIATION, REP2_REF), (RAIL, REP2_REF)}


def test_relisting_after_delisting_applies_again_with_new_ids() -> None:
    relisted = entry(version=3, event_type="LISTED")
    _, (first, _, t) = feed([LISTED, DELISTED, relisted])
    assert {d.key for d in t.emitted} == {d.key for d in first.emitted}
    assert all(d.action is Action.APPLY for d in t.emitted)
    assert not {d.directive_id for d in t.emitted} & {d.directive_id for d in first.emitted}


# --------------------------------------------------------------------------- replays and order


def test_stale_version_changes_nothing() -> None:
    state, _ = feed([LISTED, AMENDED_TWO_REPS])
    t = on_record(state, accepted(LISTED, 2), WORLD, NOW)
    assert t.outcome is Outcome.STALE_VERSION
    assert t.emitted == ()
    assert t.state == state


@pytest.mark.parametrize("offset", [0, 1], ids=["older-offset", "same-offset"])
def test_redelivered_record_resends_the_latest_directive_of_every_key(offset: int) -> None:
    state, transitions = feed([LISTED, AMENDED_TWO_REPS])
    latest: dict[str, Directive] = {}
    for tr in transitions:
        latest.update({d.key: d for d in tr.emitted})
    again = [LISTED, AMENDED_TWO_REPS][offset]
    t = on_record(state, accepted(again, offset), WORLD, NOW)
    assert t.outcome is Outcome.RESYNC
    assert t.state == state
    assert {d.key: d.directive_id for d in t.emitted} == {k: d.directive_id for k, d in latest.items()}
    assert len(t.emitted) == 5


def test_redelivery_after_a_lift_resends_the_lift() -> None:
    state, (_, t_lift) = feed([LISTED, DELISTED])
    t = on_record(state, accepted(DELISTED, 1), WORLD, NOW)
    assert t.outcome is Outcome.RESYNC
    assert sorted(d.directive_id for d in t.emitted) == sorted(d.directive_id for d in t_lift.emitted)
    assert {d.action for d in t.emitted} == {Action.LIFT}


def test_same_version_with_other_content_is_replayed() -> None:
    state, _ = feed([LISTED])
    tampered = entry(reason="Something else entirely")
    t = on_record(state, accepted(tampered, 1), WORLD, NOW)
    assert t.outcome is Outcome.REPLAYED
    assert t.emitted == ()
    assert t.state == state


def test_same_version_written_twice_to_the_log_resyncs_without_new_ids() -> None:
    state, (first,) = feed([LISTED])
    t = on_record(state, accepted(LISTED, 7), WORLD, NOW)
    assert t.outcome is Outcome.RESYNC
    assert {d.directive_id for d in t.emitted} == {d.directive_id for d in first.emitted}


def test_offsets_are_tracked_per_partition() -> None:
    state, _ = feed([LISTED])
    t = on_record(state, accepted(AMENDED_TWO_REPS, 0, partition=1), WORLD, NOW)
    assert t.outcome is Outcome.APPLIED
    assert t.state is not None
    assert t.state.offsets == {"concord.lists.court:0": 0, "concord.lists.court:1": 0}


SEQUENCE = [
    LISTED,
    AMENDED_TWO_REPS,
    AMENDED_BACK_TO_ONE,
    entry(version=4, event_type="DELISTED", delisting=delisting()),
]


def _ids(transitions: Iterable[Transition]) -> list[str]:
    return [d.directive_id for t in transitions for d in t.emitted]


def test_directive_ids_are_deterministic() -> None:
    _, a = feed(SEQUENCE)
    _, b = feed(SEQUENCE)
    assert _ids(a) == _ids(b)
    assert [t.changed for t in a] == [t.changed for t in b]  # the sources differ only in their salts


def test_directive_ids_are_unique_across_a_history() -> None:
    _, transitions = feed(SEQUENCE)
    ids = _ids(transitions)
    assert len(ids) == len(set(ids)) == 3 + 2 + 2 + 3


def test_directive_ids_differ_between_entries() -> None:
    _, a = feed([LISTED])
    _, b = feed([entry(entry_id="court-2026-000124")])
    assert not set(_ids(a)) & set(_ids(b))


# --------------------------------------------------------------------------- time


def test_tick_after_effective_until_lifts_with_period_ended() -> None:
    state, (first,) = feed([LISTED])
    t = on_tick(state, WORLD, EFFECTIVE_UNTIL)
    assert t.outcome is Outcome.TICK
    assert {d.key for d in t.emitted} == {d.key for d in first.emitted}
    assert all(d.action is Action.LIFT and d.cause is Cause.PERIOD_ENDED for d in t.emitted)
    assert t.state is not None and t.state.applied() == []
    # Nothing is left to lift.
    again = on_tick(t.state, WORLD, EFFECTIVE_UNTIL + days(1))
    assert again.emitted == ()


@pytest.mark.parametrize("when", [NOW, NOW + days(300), EFFECTIVE_UNTIL - days(1)], ids=["now", "later", "day-before"])
def test_tick_before_effective_until_emits_nothing(when: datetime) -> None:
    state, _ = feed([LISTED])
    t = on_tick(state, WORLD, when)
    assert t.outcome is Outcome.TICK
    assert t.emitted == ()
    assert t.state == state


def test_tick_on_an_ended_entry_emits_nothing() -> None:
    state, _ = feed([LISTED, DELISTED])
    assert on_tick(state, WORLD, NOW + days(1)).emitted == ()


# --------------------------------------------------------------------------- MOU changes


def _drop_finance(version: dict[str, Any]) -> None:
    version["measures"] = [m for m in version["measures"] if m["measure_id"] != FINANCE]
    version["signatories"] = [s for s in version["signatories"] if s != "finance"]
    del version["visible_fields"]["finance"]


def _remove_finance(docs: dict[str, Any]) -> None:
    _drop_finance(_jd_v1(docs))


def _terminate(docs: dict[str, Any]) -> None:
    _jd_v1(docs)["terminated_on"] = "2026-03-11"


def _add_securities(docs: dict[str, Any]) -> None:
    v1 = _jd_v1(docs)
    v1["signatories"].append("securities")
    v1["measures"].append(
        {
            "measure_id": SECURITIES,
            "kind": "PUNISH",
            "text": "Restrict securities business licences.",
            "implementing_agency": "securities",
            "legal_basis": "Securities Law, Art. 12",
            "applies_to": ["ORGANIZATION", "RELATED:LEGAL_REPRESENTATIVE"],
        }
    )
    v1["visible_fields"]["securities"] = ["kind", "identifiers"]


def _new_mou(docs: dict[str, Any]) -> None:
    docs["mous/mou-customs-defaulters.yaml"] = {
        "mou_id": "mou-customs-defaulters",
        "versions": [
            {
                "version": 1,
                "title": "Customs measures against judgment defaulters",
                "document_no": "Test [2026] No. 1",
                "signatories": ["court", "customs"],
                "valid_from": "2026-03-01",
                "valid_until": None,
                "terminated_on": None,
                "trigger_programs": ["court.judgment-defaulters"],
                "measures": [
                    {
                        "measure_id": "customs.strict-inspection",
                        "kind": "PUNISH",
                        "text": "Stricter customs inspection.",
                        "implementing_agency": "customs",
                        "legal_basis": "Customs Law",
                        "applies_to": ["ORGANIZATION"],
                    }
                ],
                "visible_fields": {"customs": ["kind", "names", "identifiers"]},
            }
        ],
    }


def test_removed_measure_is_lifted_on_tick() -> None:
    state, _ = feed([LISTED])
    t = on_tick(state, world_with(_remove_finance), NOW + days(1))
    (d,) = t.emitted
    assert (d.action, d.cause, d.measure_id, d.subject_ref) == (Action.LIFT, Cause.MOU_CHANGED, FINANCE, SUBJECT_REF)
    # A LIFT carries the record it follows from too, so that the agency can check it against the MOUs.
    assert d.source is not None
    assert (d.source.record, d.source.signature) == (state.source.record, state.source.signature)
    assert set(d.source.disclosures) <= set(state.source.disclosures)
    assert t.state is not None
    assert {x.measure_id for x in t.state.applied()} == {AVIATION, RAIL}


def test_terminated_mou_lifts_everything_on_tick() -> None:
    state, (first,) = feed([LISTED])
    t = on_tick(state, world_with(_terminate), datetime(2026, 3, 11, tzinfo=UTC))
    assert {d.key for d in t.emitted} == {d.key for d in first.emitted}
    assert all(d.action is Action.LIFT and d.cause is Cause.MOU_CHANGED for d in t.emitted)


def test_terminated_mou_still_applies_the_day_before() -> None:
    state, _ = feed([LISTED])
    t = on_tick(state, world_with(_terminate), datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC))
    assert all(d.action is Action.APPLY for d in t.emitted)
    assert t.state is not None and len(t.state.applied()) == 3


def test_new_measure_is_backfilled_on_tick() -> None:
    state, _ = feed([LISTED])
    t = on_tick(state, world_with(_add_securities), NOW + days(1))
    got = by_key(t.emitted)
    assert set(got) == {(SECURITIES, SUBJECT_REF), (SECURITIES, REP_REF)}
    for d in got.values():
        assert d.action is Action.APPLY
        assert d.subscriber == "securities"
        assert d.cause is Cause.MOU_CHANGED
        assert d.valid_until == EFFECTIVE_UNTIL
        assert d.target.names == ()  # names are not among the fields securities may see
    assert t.state is not None and len(t.state.applied()) == 5


def test_new_mou_is_backfilled_on_tick() -> None:
    state, _ = feed([LISTED])
    t = on_tick(state, world_with(_new_mou), NOW + days(1))
    (d,) = t.emitted
    assert (d.action, d.subscriber, d.mou_id, d.subject_ref) == (
        Action.APPLY,
        "customs",
        "mou-customs-defaulters",
        SUBJECT_REF,
    )
    assert d.valid_until == EFFECTIVE_UNTIL


def test_backfill_is_not_repeated_on_the_next_tick() -> None:
    state, _ = feed([LISTED])
    world = world_with(_new_mou)
    t = on_tick(state, world, NOW + days(1))
    assert t.state is not None
    assert on_tick(t.state, world, NOW + days(2)).emitted == ()


def test_a_new_listing_under_a_changed_world_routes_by_it() -> None:
    t = on_record(None, accepted(LISTED, 0), world_with(_remove_finance), NOW)
    assert set(by_key(t.emitted)) == {(AVIATION, REP_REF), (RAIL, REP_REF)}


# --------------------------------------------------------------------------- MOU changes announced ahead

SWITCH = datetime(2026, 4, 1, tzinfo=UTC)


def _terminate_on_switch(docs: dict[str, Any]) -> None:
    _jd_v1(docs)["terminated_on"] = SWITCH.date().isoformat()


def _amend_on_switch_without_finance(docs: dict[str, Any]) -> None:
    # Version 1 ends at SWITCH; version 2 starts there and keeps every measure but finance's.
    v1 = _jd_v1(docs)
    v1["valid_until"] = SWITCH.date().isoformat()
    v2 = copy.deepcopy(v1)
    v2.update(version=2, valid_from=SWITCH.date().isoformat(), valid_until=None)
    _drop_finance(v2)
    docs[JD_MOU]["versions"].append(v2)


def test_directives_end_when_an_announced_termination_takes_effect() -> None:
    t = on_record(None, accepted(LISTED, 0), world_with(_terminate_on_switch), NOW)
    assert len(t.emitted) == 3
    assert all(d.valid_until == SWITCH for d in t.emitted)


def test_announced_mou_termination_is_lifted_as_an_mou_change() -> None:
    # Lifts are counted by cause: the entry's own period has not ended, the MOU has.
    world = world_with(_terminate_on_switch)
    state, _ = feed([LISTED], world=world)
    t = on_tick(state, world, SWITCH)
    assert len(t.emitted) == 3
    assert {(d.action, d.cause) for d in t.emitted} == {(Action.LIFT, Cause.MOU_CHANGED)}


def test_measure_kept_by_the_next_mou_version_does_not_lapse_at_the_switch() -> None:
    # Subscribers enforce valid_until on their own, also while the fan-out is down:
    # a measure that version 2 keeps must not run out when version 1 ends, or a
    # listed person could buy air tickets until the fan-out catches up.
    world = world_with(_amend_on_switch_without_finance)
    t = on_record(None, accepted(LISTED, 0), world, NOW)
    got = by_key(t.emitted)
    assert got[(FINANCE, SUBJECT_REF)].valid_until == SWITCH  # dropped by version 2: ends with version 1
    assert got[(AVIATION, REP_REF)].valid_until == EFFECTIVE_UNTIL
    assert got[(RAIL, REP_REF)].valid_until == EFFECTIVE_UNTIL


def test_measure_dropped_by_the_next_mou_version_is_lifted_as_an_mou_change() -> None:
    world = world_with(_amend_on_switch_without_finance)
    state, _ = feed([LISTED], world=world)
    t = on_tick(state, world, SWITCH)
    lifts = [d for d in t.emitted if d.action is Action.LIFT]
    assert [(d.measure_id, d.cause) for d in lifts] == [(FINANCE, Cause.MOU_CHANGED)]
    assert t.state is not None
    assert {(d.measure_id, d.mou_version) for d in t.state.applied()} == {(AVIATION, 2), (RAIL, 2)}
