"""The audit's comparison of what the lists require now with what is held."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from services.core.audit import Held, audit, latest_events, required
from services.core.models import ListEntryEvent
from services.core.routing import desired_directives
from tests.unit.factories import KNOWN_RIC, NOW, delisting, entry, make_ric, person, real_world

pytestmark = pytest.mark.unit

WORLD = real_world()


def _held(spec: Mapping[str, object]) -> Held:
    """What a store holding exactly ``spec`` (one required directive) reports."""
    version, until = spec["mou_version"], spec["valid_until"]
    assert isinstance(version, int) and (until is None or isinstance(until, datetime))
    return Held("APPLY", str(spec["subscriber"]), str(spec["mou_id"]), version, until)


def _held_for(events: list[tuple[str, ListEntryEvent]], now: datetime = NOW) -> dict[str, Held]:
    return {k: _held(v) for k, v in required(latest_events(events), WORLD, now).items()}


def test_latest_version_wins_whatever_the_order() -> None:
    v1, v2 = entry(), entry(version=2, event_type="DELISTED", delisting=delisting())
    assert latest_events([("court", v2), ("court", v1)])[("court", v1.entry_id)].version == 2


def test_a_store_holding_exactly_what_is_required_is_clean() -> None:
    events = [("court", entry())]
    assert audit(events, _held_for(events), WORLD, NOW) == []


def test_a_listing_that_never_arrived_is_missing() -> None:
    events = [("court", entry())]
    held = _held_for(events)
    lost = next(k for k in held if "aviation" in k)
    del held[lost]
    findings = audit(events, held, WORLD, NOW)
    assert [(f.kind, f.key, f.subscriber) for f in findings] == [("MISSING", lost, "aviation")]


def test_a_delisting_that_never_arrived_leaves_an_unlifted_measure() -> None:
    listed = [("court", entry())]
    held = _held_for(listed)
    delisted = listed + [("court", entry(version=2, event_type="DELISTED", delisting=delisting()))]
    findings = audit(delisted, held, WORLD, NOW)
    assert {f.kind for f in findings} == {"UNLIFTED"}
    assert len(findings) == len(held)


def test_an_apply_past_its_window_is_reported_as_expired_not_unlifted() -> None:
    until = NOW + timedelta(days=1)
    events = [("court", entry(subject=person(), effective_until=until.isoformat()))]
    held = _held_for(events)
    later = until + timedelta(seconds=1)
    assert {f.kind for f in audit(events, held, WORLD, later)} == {"EXPIRED_APPLY"}


def test_another_validity_window_is_different() -> None:
    events = [("court", entry())]
    held = {
        k: Held(h.action, h.subscriber, h.mou_id, h.mou_version, datetime(2030, 1, 1, tzinfo=UTC))
        for k, h in _held_for(events).items()
    }
    assert {f.kind for f in audit(events, held, WORLD, NOW)} == {"DIFFERENT"}


def test_the_audit_of_one_subscriber_ignores_the_others() -> None:
    events = [("court", entry())]
    findings = audit(events, {}, WORLD, NOW, subscriber="finance")
    assert {f.subscriber for f in findings} == {"finance"}
    assert [f.kind for f in findings] == ["MISSING"]


def test_a_target_or_start_other_than_required_is_a_difference() -> None:
    from services.core.audit import Held, compare, masked
    from services.core.models import Identifier

    ev = entry()
    required_now = desired_directives("court", ev, WORLD, NOW)
    key, spec = next((k, s) for k, s in required_now.items() if "LEGAL_REPRESENTATIVE" in k)
    good = Held(
        "APPLY",
        str(spec["subscriber"]),
        str(spec["mou_id"]),
        int(spec["mou_version"]),
        spec["valid_until"],
        spec["valid_from"],
        spec["target"],
    )
    assert compare({key: spec}, {key: good}, NOW) == []
    assert good.target is not None
    other = good.target.model_copy(update={"identifiers": (Identifier(scheme="CN_RIC", value=make_ric(5)),)})
    (f,) = compare({key: spec}, {key: Held(**{**good.__dict__, "target": other})}, NOW)
    assert (f.kind, f.detail) == ("DIFFERENT", "held for another target (identifiers differ)")
    assert KNOWN_RIC not in str(f) and masked(key).endswith(":CN_RIC:*")
    later = spec["valid_from"] + timedelta(days=1)
    (f,) = compare({key: spec}, {key: Held(**{**good.__dict__, "valid_from": later})}, NOW)
    assert f.kind == "DIFFERENT" and "required from" in f.detail
