"""The subscriber's directive store on a real SQLite file: what a check answers, that
validity windows are enforced when asked, that only newer directives count, that
receipts wait in the outbox and positions survive a restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

import pytest

from services.core.models import (
    Action,
    Cause,
    MeasureKind,
    ReceiptStatus,
)
from services.subscriber.store import DirectiveStore, Incoming, Passed, Rejected, punitive
from tests.unit.factories import (
    EFFECTIVE_FROM,
    EFFECTIVE_UNTIL,
    ENTRY_ID,
    KNOWN_RIC,
    KNOWN_RIC_X,
    KNOWN_USCC,
    NOW,
    days,
)
from tests.unit.subscriber_factories import AVIATION, RAIL, TOPIC, Feed, directive, topic_key

pytestmark = pytest.mark.unit

T_IN = NOW.timestamp()
T_FROM = EFFECTIVE_FROM.timestamp()
T_UNTIL = EFFECTIVE_UNTIL.timestamp()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "aviation.sqlite"


@pytest.fixture
def store(path: Path) -> Iterator[DirectiveStore]:
    s = DirectiveStore(path, "aviation")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def feed() -> Feed:
    return Feed()


class CheckFilter(TypedDict, total=False):
    scheme: str
    measure: str


def _measures(
    store: DirectiveStore, value: str, *, scheme: str | None = None, measure: str | None = None, at: float = T_IN
) -> list[str]:
    return sorted(r.measure_id for r in store.check(value, scheme=scheme, measure=measure, at=at))


# --------------------------------------------------------------------------- apply and check


def test_applied_directive_is_found(store: DirectiveStore, feed: Feed) -> None:
    d = directive()
    receipts = store.apply([feed(d)], NOW)
    (hit,) = store.check(KNOWN_RIC, at=T_IN)
    assert (hit.measure_id, hit.kind, hit.mou_id, hit.entry_id, hit.origin_agency) == (
        AVIATION,
        "PUNISH",
        "mou-judgment-defaulters",
        ENTRY_ID,
        "court",
    )
    assert (hit.valid_from, hit.valid_until) == (T_FROM, T_UNTIL)
    assert punitive([hit])
    assert store.active_count() == 1
    (rc,) = receipts
    # The receipt names the directive by its topic key: a pseudonym, never the subject's identifier.
    assert (rc.directive_id, rc.agency, rc.status, rc.directive_key, rc.seq) == (
        d.directive_id,
        "aviation",
        ReceiptStatus.APPLIED,
        topic_key(d),
        1,
    )


@pytest.mark.parametrize(
    ("query", "kw", "expected"),
    [
        pytest.param(KNOWN_RIC, {}, [AVIATION, RAIL], id="value-only"),
        pytest.param(KNOWN_RIC, {"scheme": "CN_RIC"}, [AVIATION, RAIL], id="with-scheme"),
        pytest.param(f"  {KNOWN_RIC} ", {"scheme": "CN_RIC"}, [AVIATION, RAIL], id="surrounding-space"),
        pytest.param(KNOWN_RIC, {"scheme": "CN_USCC"}, [], id="other-scheme"),
        pytest.param(KNOWN_RIC, {"measure": AVIATION}, [AVIATION], id="measure-filter"),
        pytest.param(KNOWN_RIC, {"scheme": "CN_RIC", "measure": RAIL}, [RAIL], id="scheme-and-measure"),
        pytest.param(KNOWN_RIC, {"measure": "finance.procurement-ban"}, [], id="other-measure"),
        pytest.param(KNOWN_RIC_X, {}, [], id="other-person"),
        pytest.param(KNOWN_RIC[:-1], {}, [], id="prefix-is-not-a-match"),
    ],
)
def test_check(store: DirectiveStore, feed: Feed, query: str, kw: CheckFilter, expected: list[str]) -> None:
    store.apply([feed(directive()), feed(directive(measure=RAIL))], NOW)
    assert _measures(store, query, **kw) == expected


@pytest.mark.parametrize("kw", [{}, {"scheme": "CN_RIC"}], ids=["value-only", "with-scheme"])
def test_lowercase_check_character_matches(store: DirectiveStore, feed: Feed, kw: CheckFilter) -> None:
    store.apply([feed(directive(ids=(("CN_RIC", KNOWN_RIC_X),)))], NOW)
    assert _measures(store, KNOWN_RIC_X.lower(), **kw) == [AVIATION]


def test_every_identifier_of_the_target_matches(store: DirectiveStore, feed: Feed) -> None:
    d = directive(ids=(("CN_USCC", KNOWN_USCC), ("DUNS", "15-048-3782")))
    store.apply([feed(d)], NOW)
    assert _measures(store, KNOWN_USCC) == [AVIATION]
    assert _measures(store, "15-048-3782", scheme="DUNS") == [AVIATION]
    assert _measures(store, "15-048-3782") == [AVIATION]


def test_incentives_are_listed_but_not_restrictive(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive(kind=MeasureKind.INCENT, measure="customs.green-channel"))], NOW)
    hits = store.check(KNOWN_RIC, at=T_IN)
    assert [h.kind for h in hits] == ["INCENT"]
    assert not punitive(hits)


# --------------------------------------------------------------------------- validity at query time


@pytest.mark.parametrize(
    ("at", "found"),
    [
        pytest.param(T_FROM - 1, False, id="before-valid_from"),
        pytest.param(T_FROM, True, id="at-valid_from"),
        pytest.param(T_IN, True, id="inside"),
        pytest.param(T_UNTIL - 0.001, True, id="just-before-valid_until"),
        pytest.param(T_UNTIL, False, id="at-valid_until"),
        pytest.param(T_UNTIL + 86400, False, id="after-valid_until"),
    ],
)
def test_validity_window_is_enforced_at_query_time(store: DirectiveStore, feed: Feed, at: float, found: bool) -> None:
    store.apply([feed(directive())], NOW)
    assert bool(store.check(KNOWN_RIC, at=at)) is found


def test_open_ended_directive_never_runs_out(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive(valid_until=None))], NOW)
    assert store.check(KNOWN_RIC, at=(EFFECTIVE_UNTIL + days(3650)).timestamp())
    assert store.check(KNOWN_RIC, at=T_IN)[0].as_json()["valid_until"] is None


def test_restriction_answers_in_the_check_api_shape(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive())], NOW)
    (hit,) = store.check(KNOWN_RIC, at=T_IN)
    assert hit.as_json() == {
        "measure_id": AVIATION,
        "kind": "PUNISH",
        "mou_id": "mou-judgment-defaulters",
        "entry_id": ENTRY_ID,
        "origin_agency": "court",
        "valid_from": "2026-03-10T00:00:00Z",
        "valid_until": "2028-03-10T00:00:00Z",
    }


# --------------------------------------------------------------------------- by sequence number


def test_lift_with_higher_seq_removes_the_restriction(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive(seq=1))], NOW)
    lift = directive(action=Action.LIFT, seq=2)
    (rc,) = store.apply([feed(lift)], NOW)
    assert (rc.status, rc.directive_id, rc.seq) == (ReceiptStatus.LIFTED, lift.directive_id, 2)
    assert store.check(KNOWN_RIC, at=T_IN) == []
    assert store.active_count() == 0


@pytest.mark.parametrize("old_seq", [1, 3], ids=["lower", "equal"])
def test_directive_not_newer_than_held_is_ignored(store: DirectiveStore, feed: Feed, old_seq: int) -> None:
    store.apply([feed(directive(seq=3))], NOW)
    late_lift = directive(action=Action.LIFT, seq=old_seq, cause=Cause.AMENDED)
    assert store.apply([feed(late_lift)], NOW) == []
    assert _measures(store, KNOWN_RIC) == [AVIATION]
    assert [p.receipt.seq for p in store.pending_receipts()] == [3]


def test_replayed_directive_is_ignored(store: DirectiveStore, feed: Feed) -> None:
    d = directive()
    store.apply([feed(d)], NOW)
    assert store.apply([feed(d)], NOW) == []
    assert len(store.pending_receipts()) == 1
    assert len(store.history(ENTRY_ID)) == 1


def test_lift_arriving_before_its_apply_wins(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive(action=Action.LIFT, seq=2))], NOW)
    assert store.apply([feed(directive(seq=1))], NOW) == []
    assert store.check(KNOWN_RIC, at=T_IN) == []


def test_reapply_after_lift(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive(seq=1)), feed(directive(action=Action.LIFT, seq=2))], NOW)
    store.apply([feed(directive(seq=3, ids=(("CN_RIC", KNOWN_RIC_X),)))], NOW)
    assert store.check(KNOWN_RIC, at=T_IN) == []
    assert _measures(store, KNOWN_RIC_X) == [AVIATION]


def test_newer_apply_replaces_the_identifiers_it_matches(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive(seq=1))], NOW)
    store.apply([feed(directive(seq=2, ids=(("CN_RIC", KNOWN_RIC_X),)))], NOW)
    assert store.check(KNOWN_RIC, at=T_IN) == []
    assert _measures(store, KNOWN_RIC_X) == [AVIATION]
    assert store.active_count() == 1


# --------------------------------------------------------------------------- outbox and positions


def test_receipts_wait_in_the_outbox_until_sent(store: DirectiveStore, feed: Feed) -> None:
    a, b = directive(), directive(measure=RAIL)
    store.apply([feed(a), feed(b)], NOW)
    pending = store.pending_receipts()
    assert [p.receipt.directive_id for p in pending] == [a.directive_id, b.directive_id]
    assert [p.entry_id for p in pending] == [a.entry_id, b.entry_id]  # chooses the receipts partition
    assert [p.n for p in store.pending_receipts(limit=1)] == [pending[0].n]
    store.mark_sent([pending[0].n])
    assert [p.receipt.directive_id for p in store.pending_receipts()] == [b.directive_id]
    store.mark_sent([p.n for p in store.pending_receipts()])
    assert store.pending_receipts() == []
    store.mark_sent([])


def test_positions_record_the_highest_offset_per_partition(store: DirectiveStore) -> None:
    p0, p2 = Feed(0), Feed(2)
    store.apply([p0(directive()), p0(directive(measure=RAIL)), p2(directive(entry_id="court-2026-9"))], NOW)
    assert store.positions() == {(TOPIC, 0): 1, (TOPIC, 2): 0}
    # A batch re-read from an earlier position never moves the position back.
    store.apply([Incoming(directive(), TOPIC, 0, 0)], NOW)
    assert store.positions()[(TOPIC, 0)] == 1


def test_a_heartbeat_only_moves_the_position(store: DirectiveStore, feed: Feed) -> None:
    store.apply([feed(directive()), Passed(TOPIC, 0, 7)], NOW)
    assert store.positions() == {(TOPIC, 0): 7}
    assert [p.receipt.directive_id for p in store.pending_receipts()] == [directive().directive_id]
    assert store.active_count() == 1


def test_ignored_directives_still_advance_the_position(store: DirectiveStore, feed: Feed) -> None:
    d = directive()
    store.apply([feed(d)], NOW)
    store.apply([feed(d)], NOW)
    assert store.positions() == {(TOPIC, 0): 1}


def test_reopening_restores_index_positions_and_outbox(path: Path) -> None:
    first = DirectiveStore(path, "aviation")
    feed = Feed()
    try:
        first.apply(
            [
                feed(directive()),
                feed(directive(measure=RAIL)),
                feed(directive(action=Action.LIFT, seq=2, measure=RAIL)),
                feed(directive(entry_id="court-2026-9", ids=(("CN_RIC", KNOWN_RIC_X),), valid_until=None)),
            ],
            NOW,
        )
        before = (first.positions(), first.pending_receipts(), first.last_applied_at())
    finally:
        first.close()
    again = DirectiveStore(path, "aviation")
    try:
        assert _measures(again, KNOWN_RIC) == [AVIATION]
        assert _measures(again, KNOWN_RIC_X) == [AVIATION]
        assert again.active_count() == 2
        assert (again.positions(), again.pending_receipts(), again.last_applied_at()) == before
        assert again.positions() == {(TOPIC, 0): 3}
        # Still applies by seq after the restart.
        assert again.apply([feed(directive(action=Action.LIFT, seq=1))], NOW) == []
    finally:
        again.close()


# --------------------------------------------------------------------------- rejected and history


def test_rejected_directive_gets_a_rejected_receipt_and_stores_nothing(store: DirectiveStore, feed: Feed) -> None:
    (rc,) = store.apply([feed.rejected("d" * 32)], NOW)
    assert (rc.directive_id, rc.agency, rc.status) == ("d" * 32, "aviation", ReceiptStatus.REJECTED)
    assert "FORGED" in (rc.reason or "")
    assert store.active_count() == 0
    assert store.check(KNOWN_RIC, at=T_IN) == []
    assert [p.receipt.status for p in store.pending_receipts()] == [ReceiptStatus.REJECTED]
    assert store.positions() == {(TOPIC, 0): 0}


def test_rejected_item_in_a_batch_does_not_block_the_others(store: DirectiveStore, feed: Feed) -> None:
    receipts = store.apply([feed.rejected("unreadable:x:0:0"), feed(directive())], NOW)
    assert [r.status for r in receipts] == [ReceiptStatus.REJECTED, ReceiptStatus.APPLIED]
    assert _measures(store, KNOWN_RIC) == [AVIATION]


def test_history_lists_applied_directives(store: DirectiveStore, feed: Feed) -> None:
    apply_ = directive(seq=1)
    lift = directive(action=Action.LIFT, seq=2)
    other = directive(entry_id="court-2026-9")
    store.apply([feed(apply_), feed(other)], NOW)
    store.apply([feed(lift)], datetime(2026, 6, 1, tzinfo=UTC))
    rows = store.history(ENTRY_ID)
    assert [(r["directive_id"], r["action"], r["status"], r["seq"]) for r in rows] == [
        (apply_.directive_id, "APPLY", "APPLIED", 1),
        (lift.directive_id, "LIFT", "LIFTED", 2),
    ]
    assert rows[0]["cause"] == "LISTED" and rows[1]["cause"] == "DELISTED"
    assert rows[0]["applied_at"] == "2026-03-10T12:00:00Z"
    assert rows[1]["applied_at"] == "2026-06-01T00:00:00Z"
    assert (rows[0]["topic"], rows[0]["partition"], rows[0]["offset"]) == (TOPIC, 0, 0)
    assert store.history(f"court/{ENTRY_ID}") == rows
    assert store.history(f"market/{ENTRY_ID}") == []
    assert store.history("court-2099-000001") == []


def test_a_redelivered_refused_directive_is_refused_once(tmp_path: Path) -> None:
    store = DirectiveStore(tmp_path / "s.sqlite", "aviation")
    item = Rejected("d-forged", "FORGED: signature was not made by key k", "t.directives.aviation", 0, 7)
    first = store.apply([item], datetime.now(UTC))
    again = store.apply([item], datetime.now(UTC))
    assert [r.status.value for r in first] == ["REJECTED"]
    assert again == []
    assert store.active_count() == 0


def test_one_batch_holding_several_versions_of_a_key_applies_them_in_order(store: DirectiveStore, feed: Feed) -> None:
    first, lift, again = directive(seq=1), directive(seq=2, action=Action.LIFT), directive(seq=3)
    receipts = store.apply([feed(first), feed(lift), feed(first), feed(again)], NOW)
    assert [(r.seq, r.status) for r in receipts] == [
        (1, ReceiptStatus.APPLIED),
        (2, ReceiptStatus.LIFTED),
        (3, ReceiptStatus.APPLIED),
    ]
    assert _measures(store, KNOWN_RIC) == [AVIATION] and store.active_count() == 1
    assert [h["seq"] for h in store.history(first.entry_id)] == [1, 2, 3]
    store.apply([feed(directive(seq=4, action=Action.LIFT))], NOW)
    assert _measures(store, KNOWN_RIC) == [] and store.active_count() == 0


def test_an_older_entry_version_with_a_higher_sequence_is_refused_and_changes_nothing(
    store: DirectiveStore, feed: Feed
) -> None:
    newer = directive().model_copy(update={"entry_version": 3, "seq": 3})
    store.apply([feed(newer)], NOW)
    older = directive().model_copy(update={"entry_version": 2, "seq": 9, "directive_id": "older-version-later-seq"})
    (rc,) = store.apply([feed(older)], NOW)
    assert rc.status is ReceiptStatus.REJECTED
    assert rc.reason is not None and rc.reason.startswith("VERSION_REGRESSION")
    assert [h["entry_version"] for h in store.history(ENTRY_ID)] == [3]
    assert store.regressions == 1


def test_a_lifted_directive_leaves_after_its_retention_or_at_the_fan_outs_tombstone(
    store: DirectiveStore, feed: Feed
) -> None:
    applied = directive()
    lifted = directive(action=Action.LIFT, seq=2)
    store.apply([feed(applied), feed(lifted)], NOW)
    assert store.purge(NOW + timedelta(days=29), lifted_days=30) == 0
    assert store.history(ENTRY_ID)
    assert store.purge(NOW + timedelta(days=31), lifted_days=30) == 1
    assert store.history(ENTRY_ID) == []
    # A tombstone drops a lifted key at once, and never an APPLY held under its key.
    store.apply([feed(applied.model_copy(update={"seq": 3, "directive_id": "again"}))], NOW)
    store.apply([feed.tombstone(applied)], NOW)
    assert store.check(KNOWN_RIC, at=T_IN)
    store.apply([feed(directive(action=Action.LIFT, seq=4)), feed.tombstone(applied)], NOW)
    assert store.history(ENTRY_ID) == [] and not store.check(KNOWN_RIC, at=T_IN)
