"""Every routing rule of the fan-out, one test each, through real topics and a real worker."""

from __future__ import annotations

import json
import shutil
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.core.models import Directive
from services.localstack import LocalStack
from tests.integration.support import (
    add_securities_mou,
    directives,
    for_entry,
    publish,
    quarantined,
    summary,
    terminate_judgment_defaulters,
)
from tests.support import wait_for
from tests.unit.factories import (
    KNOWN_RIC,
    KNOWN_RIC_X,
    KNOWN_USCC,
    delisting,
    entry_dict,
    incentive_dict,
    legal_rep,
    make_ric,
    organization,
    person,
)

pytestmark = pytest.mark.integration

REPO_TOPICS = Path(__file__).resolve().parents[2] / "topics"
REP = f"LEGAL_REPRESENTATIVE:CN_RIC:{KNOWN_RIC}"
COMPANY_APPLIES = {
    ("APPLY", "finance", "finance.procurement-ban", "SUBJECT"),
    ("APPLY", "aviation", "aviation.no-air-tickets", REP),
    ("APPLY", "rail", "rail.no-high-speed-rail", REP),
}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _wait_entry(stack: LocalStack, entry_id: str, n: int, what: str) -> list[Directive]:
    return wait_for(what, lambda: for_entry(directives(stack), entry_id), until=lambda ds: len(ds) >= n, timeout=45)


def test_listed_organization_applies_by_kind_and_to_its_legal_representative(fanout_only: LocalStack) -> None:
    publish(fanout_only, "court", [entry_dict(entry_id="org-1")])
    got = _wait_entry(fanout_only, "org-1", 3, "three APPLYs")
    assert summary(got) == COMPANY_APPLIES  # and nothing for aviation or rail on the company itself
    rep = next(d for d in got if d.subscriber == "aviation")
    assert rep.target.role == "LEGAL_REPRESENTATIVE"
    assert [i.value for i in rep.target.identifiers] == [KNOWN_RIC]
    assert rep.source is not None and rep.source.agency == "court"  # the court's signed record travels along
    assert rep.valid_until == datetime(2028, 3, 10, tzinfo=UTC)


def test_listed_person_applies_air_and_rail_bans(fanout_only: LocalStack) -> None:
    publish(fanout_only, "court", [entry_dict(entry_id="person-1", subject=person())])
    got = _wait_entry(fanout_only, "person-1", 2, "two APPLYs")
    assert summary(got) == {
        ("APPLY", "aviation", "aviation.no-air-tickets", "SUBJECT"),
        ("APPLY", "rail", "rail.no-high-speed-rail", "SUBJECT"),
    }
    assert {d.target.identifiers[0].value for d in got} == {KNOWN_RIC_X}


def test_incentive_listing_reaches_customs_as_an_incentive(fanout_only: LocalStack) -> None:
    publish(fanout_only, "tax", [incentive_dict(entry_id="tax-1")])
    got = _wait_entry(fanout_only, "tax-1", 1, "the green channel")
    assert summary(got) == {("APPLY", "customs", "customs.green-channel", "SUBJECT")}
    assert got[0].measure_kind.value == "INCENT"


def test_amended_emits_only_the_difference(fanout_only: LocalStack) -> None:
    second = make_ric(7)
    publish(
        fanout_only,
        "court",
        [
            entry_dict(entry_id="amend-1"),
            entry_dict(
                entry_id="amend-1",
                version=2,
                event_type="AMENDED",
                subject=organization(reps=[legal_rep(), legal_rep(second, "Zhang Example")]),
            ),
            entry_dict(
                entry_id="amend-1",
                version=3,
                event_type="AMENDED",
                reason="Reason reworded",
                subject=organization(reps=[legal_rep(), legal_rep(second, "Zhang Example")]),
            ),
            entry_dict(entry_id="amend-1", version=4, event_type="AMENDED", subject=organization(reps=[legal_rep()])),
        ],
    )
    got = _wait_entry(fanout_only, "amend-1", 7, "APPLYs for v1, v2 and LIFTs for v4")
    by_version = {v: summary(d for d in got if d.entry_version == v) for v in (1, 2, 3, 4)}
    new_rep = f"LEGAL_REPRESENTATIVE:CN_RIC:{second}"
    assert by_version[1] == COMPANY_APPLIES
    assert by_version[2] == {
        ("APPLY", "aviation", "aviation.no-air-tickets", new_rep),
        ("APPLY", "rail", "rail.no-high-speed-rail", new_rep),
    }
    assert by_version[3] == set()  # only the reason changed: nothing to tell anyone
    assert by_version[4] == {
        ("LIFT", "aviation", "aviation.no-air-tickets", new_rep),
        ("LIFT", "rail", "rail.no-high-speed-rail", new_rep),
    }
    assert {d.cause.value for d in got if d.entry_version == 4} == {"AMENDED"}


def test_delisting_lifts_everything_the_entry_caused(fanout_only: LocalStack) -> None:
    publish(
        fanout_only,
        "court",
        [
            entry_dict(entry_id="del-1"),
            entry_dict(entry_id="del-1", version=2, event_type="DELISTED", delisting=delisting()),
        ],
    )
    got = _wait_entry(fanout_only, "del-1", 6, "three APPLYs and three LIFTs")
    lifts = [d for d in got if d.action.value == "LIFT"]
    assert {(d.subscriber, d.subject_ref) for d in lifts} == {
        ("finance", "SUBJECT"),
        ("aviation", REP),
        ("rail", REP),
    }  # derived directives included
    assert {d.cause.value for d in lifts} == {"DELISTED"}
    assert all(d.source is not None and d.source.offset > 0 for d in lifts)  # the delisting record itself


@pytest.mark.parametrize("event_type", ["EXPIRED", "RETRACTED"])
def test_expiry_and_retraction_by_the_publisher_lift_with_their_cause(fanout_only: LocalStack, event_type: str) -> None:
    publish(
        fanout_only,
        "court",
        [
            entry_dict(entry_id="end-1", subject=person()),
            entry_dict(entry_id="end-1", version=2, event_type=event_type, subject=person()),
        ],
    )
    got = _wait_entry(fanout_only, "end-1", 4, "two APPLYs and two LIFTs")
    assert {d.cause.value for d in got if d.action.value == "LIFT"} == {event_type}


def test_effective_until_passing_lifts_within_seconds(fanout_only: LocalStack) -> None:
    until = datetime.now(UTC) + timedelta(seconds=4)
    publish(
        fanout_only,
        "court",
        [entry_dict(entry_id="timer-1", subject=person(), effective_until=_iso(until), publication_until=None)],
    )
    got = _wait_entry(fanout_only, "timer-1", 4, "the timer's LIFTs")
    lifts = [d for d in got if d.action.value == "LIFT"]
    assert {d.cause.value for d in lifts} == {"PERIOD_ENDED"}
    assert {d.subscriber for d in lifts} == {"aviation", "rail"}
    assert all(until <= d.issued_at for d in lifts)  # never early


def test_older_and_repeated_versions_are_ignored_counted_and_quarantined(fanout_only: LocalStack) -> None:
    publish(
        fanout_only,
        "court",
        [
            entry_dict(entry_id="ver-1", subject=person()),
            entry_dict(entry_id="ver-1", version=2, event_type="AMENDED", subject=person(), reason="Second"),
        ],
    )
    _wait_entry(fanout_only, "ver-1", 2, "the listing")
    publish(
        fanout_only,
        "court",
        [
            entry_dict(entry_id="ver-1", subject=person()),  # version 1 again, after version 2
            entry_dict(entry_id="ver-1", version=2, event_type="AMENDED", subject=person(), reason="Changed!"),
        ],
    )
    q = wait_for("two quarantined records", lambda: quarantined(fanout_only), until=lambda qs: len(qs) >= 2, timeout=45)
    assert sorted(r.reason for r in q) == ["REPLAYED", "STALE_VERSION"]
    assert len(for_entry(directives(fanout_only), "ver-1")) == 2  # nothing was re-applied or lifted
    fanout = next(s for s in fanout_only.services if s.name == "fanout")
    metrics = urllib.request.urlopen(f"{fanout.url}/metrics", timeout=5).read().decode()  # noqa: S310 - loopback
    assert 'concord_fanout_ignored_total{reason="STALE_VERSION"} 1.0' in metrics
    assert 'concord_fanout_ignored_total{reason="REPLAYED"} 1.0' in metrics


def _changed_world(tmp: Path) -> Path:
    """topics/ with the judgment-defaulters MOU terminated today and a new MOU for securities."""
    world = tmp / "topics-changed"
    shutil.copytree(REPO_TOPICS, world)
    terminate_judgment_defaulters(world / "mous")
    add_securities_mou(world / "mous")
    return world


def test_mou_termination_lifts_and_a_new_mou_backfills_active_entries(fanout_only: LocalStack, tmp_path: Path) -> None:
    publish(fanout_only, "court", [entry_dict(entry_id="mou-1", subject=organization(KNOWN_USCC))])
    _wait_entry(fanout_only, "mou-1", 3, "the listing under the original MOU")
    fanout_only.stop("fanout")
    fanout_only.use_world(_changed_world(tmp_path))
    fanout_only.start_fanout()
    fanout_only.wait_healthy(timeout=120)
    got = _wait_entry(fanout_only, "mou-1", 6, "LIFTs for the terminated MOU and the backfilled APPLY")
    after = [d for d in got if d.seq > 1]
    assert summary(after) == {
        ("LIFT", "finance", "finance.procurement-ban", "SUBJECT"),
        ("LIFT", "aviation", "aviation.no-air-tickets", REP),
        ("LIFT", "rail", "rail.no-high-speed-rail", REP),
        ("APPLY", "securities", "securities.no-board-seats", REP),
    }
    assert {d.cause.value for d in after} == {"MOU_CHANGED"}
    health = json.loads(
        urllib.request.urlopen(  # noqa: S310 - loopback
            f"{next(s for s in fanout_only.services if s.name == 'fanout').url}/healthz", timeout=5
        ).read()
    )
    assert health["status"] == "ok"
