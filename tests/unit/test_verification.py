"""A subscriber re-derives every directive from the publisher's record and the MOUs."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.intake import Refused, admit_directive
from services.core.models import Action, Cause, Directive, Identifier, ListEntryEvent, MeasureKind, SourceRecord
from services.core.reasons import Reason
from services.core.routing import Accepted, Transition, on_record, on_tick
from services.core.signing import Domain, Signer
from services.core.verification import verify_routing
from tests.unit.factories import (
    EFFECTIVE_UNTIL,
    KNOWN_RIC,
    NOW,
    delisting,
    encode,
    entry,
    keyring,
    make_ric,
    real_world,
)
from tests.unit.subscriber_factories import admit_signed

pytestmark = pytest.mark.unit

WORLD = real_world()
SCHEMAS = default_registry()
COURT = Signer.generate("court", "court-k1")
FANOUT = Signer.generate("concord-fanout", "fanout-k1")
RING = keyring(COURT, FANOUT)
AIR = "aviation.no-air-tickets"


def _route(event: ListEntryEvent, before: Transition | None = None, offset: int = 0) -> Transition:
    sealed = seal_record(event, SCHEMAS)
    seal = COURT.sign(Domain.LIST_RECORD, sealed.commitments).signature
    source = SourceRecord(
        topic="concord.lists.court",
        partition=0,
        offset=offset,
        agency="court",
        key_id="court-k1",
        signature=seal,
        record=sealed.commitments,
        disclosures=sealed.disclosures,
    )
    acc = Accepted(origin="court", event=event, source=source, digest=hashlib.sha256(encode(event)).digest())
    return on_record(before.state if before else None, acc, WORLD, NOW)


def _air(t: Transition) -> Directive:
    (d,) = [d for d in t.emitted if d.measure_id == AIR]
    return d


LISTED = _route(entry())
DELISTED = _route(entry(version=2, event_type="DELISTED", delisting=delisting()), LISTED, 1)


def test_what_routing_issued_verifies() -> None:
    for t in (LISTED, DELISTED):
        assert t.state is not None
        for d in t.emitted:
            assert verify_routing(d, t.state.event, WORLD) is None


def test_a_lift_when_the_period_ends_verifies() -> None:
    assert LISTED.state is not None
    ended = on_tick(LISTED.state, WORLD, EFFECTIVE_UNTIL)
    assert {d.cause for d in ended.emitted} == {Cause.PERIOD_ENDED}
    for d in ended.emitted:
        assert verify_routing(d, LISTED.state.event, WORLD) is None


def _refused(d: Directive, event: ListEntryEvent) -> Reason:
    refusal = verify_routing(d, event, WORLD)
    assert refusal is not None
    return refusal.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            {"identifiers": (Identifier(scheme="CN_RIC", value=make_ric(7)),)},
            Reason.TARGET_MISMATCH,
            id="another-person",
        ),
        pytest.param({"names": ()}, Reason.TARGET_MISMATCH, id="names-dropped"),
    ],
)
def test_a_directive_aimed_at_another_subject_is_refused(change: dict[str, object], reason: Reason) -> None:
    d = _air(LISTED)
    forged = d.model_copy(update={"target": d.target.model_copy(update=change)})
    assert _refused(forged, entry()) is reason


def test_a_longer_validity_than_record_and_mou_allow_is_refused() -> None:
    d = _air(LISTED)
    assert d.valid_until is not None
    assert (
        _refused(d.model_copy(update={"valid_until": d.valid_until + timedelta(days=365)}), entry())
        is Reason.WINDOW_MISMATCH
    )
    assert _refused(d.model_copy(update={"valid_until": None}), entry()) is Reason.WINDOW_MISMATCH


def test_another_mou_version_or_measure_kind_is_refused() -> None:
    d = _air(LISTED)
    assert _refused(d.model_copy(update={"mou_version": 2}), entry()) is Reason.MOU_MISMATCH
    assert _refused(d.model_copy(update={"measure_kind": MeasureKind.INCENT}), entry()) is Reason.MEASURE_MISMATCH


def test_a_lift_of_a_standing_listing_with_no_delisting_is_refused() -> None:
    d = _air(LISTED)
    lift = d.model_copy(update={"action": Action.LIFT, "cause": Cause.DELISTED})
    assert _refused(lift, entry()) is Reason.UNJUSTIFIED_LIFT


def test_an_apply_with_a_delisting_as_its_record_is_refused() -> None:
    assert DELISTED.state is not None
    d = _air(LISTED).model_copy(update={"entry_version": 2})
    assert _refused(d, DELISTED.state.event) is Reason.NOT_ROUTED


def test_an_apply_for_a_measure_no_mou_names_for_the_subject_is_refused() -> None:
    d = _air(LISTED)
    company = d.model_copy(update={"subject_ref": "SUBJECT"})  # aviation does not ban companies
    assert _refused(company, entry()) is Reason.NOT_ROUTED


def test_the_subscriber_refuses_a_forged_target_with_both_signatures_valid() -> None:
    d = _air(LISTED)
    forged = d.model_copy(
        update={
            "target": d.target.model_copy(update={"identifiers": (Identifier(scheme="CN_RIC", value=make_ric(9)),)})
        }
    )
    value = encode(forged)
    headers = FANOUT.sign(Domain.DIRECTIVE, value).as_kafka()
    at = int(NOW.timestamp() * 1000)
    genuine = encode(d)
    ok = admit_directive(
        agency="aviation",
        value=genuine,
        headers=FANOUT.sign(Domain.DIRECTIVE, genuine).as_kafka(),
        timestamp_ms=at,
        keyring=RING,
        schemas=SCHEMAS,
        world=WORLD,
    )
    assert ok.target.identifiers == (Identifier(scheme="CN_RIC", value=KNOWN_RIC),)
    with pytest.raises(Refused) as err:
        admit_directive(
            agency="aviation", value=value, headers=headers, timestamp_ms=at, keyring=RING, schemas=SCHEMAS, world=WORLD
        )
    assert err.value.reason == "TARGET_MISMATCH"
    assert make_ric(9) not in err.value.detail and KNOWN_RIC not in err.value.detail


def test_a_directive_without_its_record_is_refused() -> None:
    d = _air(DELISTED).model_copy(update={"source": None})
    value = encode(d)
    with pytest.raises(Refused) as err:
        admit_signed(value, fanout=FANOUT, keyring=RING, world=WORLD)
    assert err.value.reason == "SOURCE_MISMATCH"
