"""The planner, pure: desired vs live vs ledger, with reasons, scope, caps, fingerprints, draining."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from services.core.access import AclRule, compile_acls, feed_rules, ledger_topic, scram_users
from services.core.acl_ledger import Ledger
from services.core.acl_scope import Scope
from services.core.cluster_state import LiveState, TopicState
from services.core.draining import DrainStatus, FeedRecord, drain_candidates, drain_status
from services.core.errors import WorldInvalid
from services.core.governance_plan import (
    Plan,
    PlanStale,
    TooManyDeletions,
    check_deletions,
    check_fresh,
    desired_topics,
    live_fingerprint,
    make_plan,
)
from services.core.world import World, iter_problems, parse_world
from tests.unit.factories import declared_quotas, real_world

pytestmark = pytest.mark.unit

NS = "t1"
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)
STRANGER_READ = AclRule("User:stranger", "TOPIC", "LITERAL", f"{NS}.lists.court", "READ")
HAND_ADDED = AclRule("User:court", "TOPIC", "LITERAL", f"{NS}.directives.rail", "READ")


def _world_with(edit: Any) -> World:
    docs = copy.deepcopy(real_world().to_documents())
    edit(docs)
    return parse_world(docs)


def _terminated_food_safety() -> World:
    def edit(docs: dict[str, Any]) -> None:
        docs["mous/mou-food-safety.yaml"]["versions"][0]["terminated_on"] = "2026-03-01"

    return _world_with(edit)


def _topics(world: World) -> dict[str, TopicState]:
    return {
        s.name: TopicState(s.name, s.partitions, s.replication, s.kafka_config()) for s in desired_topics(world, NS)
    }


def _in_sync(
    world: World | None = None, *extra: AclRule, ledger: Ledger | None = None, revision: str | None = None
) -> LiveState:
    world = world or real_world()
    return LiveState(
        acls=(*compile_acls(world, NS, AT), *extra),
        topics=_topics(world),
        users=frozenset(scram_users(world)),
        ledger=ledger,
        ledger_revision=revision,
        quotas=declared_quotas(world),
    )


def _ledger_of(plan: Plan) -> Ledger:
    return plan.ledger(AT)


# --------------------------------------------------------------------------- diff and reasons


def test_a_cluster_in_sync_needs_nothing() -> None:
    plan = make_plan(real_world(), NS, AT, _in_sync())
    assert not plan.has_changes()
    assert plan.unchanged == len(compile_acls(real_world(), NS, AT))
    assert "Nothing to change" in plan.render()


def test_an_empty_cluster_gets_everything_grouped_by_agency_and_mou() -> None:
    plan = make_plan(real_world(), NS, AT, LiveState(acls=(), topics={}, users=frozenset()))
    groups = plan.groups()
    assert set(groups["aviation"]) == {"Concord rules", "mou-judgment-defaulters v1"}
    assert set(groups["finance"]) == {"Concord rules", "mou-food-safety v1 + mou-judgment-defaulters v1"}
    assert set(groups["court"]) == {"Concord rules"}
    assert len(plan.additions) == len(compile_acls(real_world(), NS, AT))
    assert {t.name for t in plan.topics_to_create} == {s.name for s in desired_topics(real_world(), NS)}
    assert [u.user for u in plan.users_to_create] == list(scram_users(real_world()))


def test_each_line_says_why() -> None:
    plan = make_plan(real_world(), NS, AT, LiveState(acls=(), topics={}, users=frozenset()))
    read = next(
        c
        for c in plan.additions
        if c.rule.principal == "User:aviation"
        and c.rule.operation == "READ"
        and c.rule.resource_type == "TOPIC"
        and "directives" in c.rule.resource_name
    )
    assert read.reason == "grant: mou-judgment-defaulters v1 aviation.no-air-tickets"
    text = plan.render()
    assert re.search(
        r"\+ ALLOW READ TOPIC t1\.directives\.aviation +grant: mou-judgment-defaulters v1 "
        r"aviation\.no-air-tickets",
        text,
    )
    lines = text.splitlines()
    aviation = lines.index("aviation")
    assert lines[aviation + 1].strip() in ("[Concord rules]", "[mou-judgment-defaulters v1]")


def test_a_binding_added_by_hand_on_a_managed_principal_is_removed_with_a_reason() -> None:
    plan = make_plan(real_world(), NS, AT, _in_sync(None, HAND_ADDED))
    (removal,) = plan.removals
    assert removal.rule == HAND_ADDED and removal.owner == "court" and removal.group == "not declared"
    assert removal.reason.startswith("revoke: not declared")


def test_a_binding_concord_granted_and_the_world_withdrew_names_its_old_grant() -> None:
    world = _terminated_food_safety()
    before = make_plan(real_world(), NS, AT, _in_sync())
    live = _in_sync(real_world(), ledger=_ledger_of(before), revision="offset:0")
    plan = make_plan(world, NS, AT, live, {"securities": DrainStatus("securities", True, "drained: test")})
    removed = {c.rule: c for c in plan.removals}
    read = AclRule("User:securities", "TOPIC", "LITERAL", f"{NS}.directives.securities", "READ")
    assert removed[read].reason.startswith(
        "withdraw: no longer granted (was: mou-food-safety v1 securities.license-restriction)"
    )
    assert removed[read].reason.endswith("drained: test")
    assert removed[read].group == "mou-food-safety v1"
    finance = AclRule("User:finance", "TOPIC", "LITERAL", f"{NS}.directives.finance", "READ")
    assert finance not in removed  # still granted by the other MOU


def test_a_binding_removed_by_hand_since_the_last_apply_is_restored() -> None:
    before = make_plan(real_world(), NS, AT, _in_sync())
    full = _in_sync(ledger=_ledger_of(before))
    gone = next(
        r for r in full.acls if r.principal == "User:rail" and r.operation == "READ" and r.resource_type == "TOPIC"
    )
    live = LiveState(tuple(r for r in full.acls if r != gone), full.topics, full.users, full.ledger, quotas=full.quotas)
    (add,) = make_plan(real_world(), NS, AT, live).additions
    assert add.rule == gone
    assert add.reason.startswith("restore (removed outside Concord since the last apply): mou-judgment-defaulters")


def test_an_agency_dropped_from_the_world_stays_managed_through_the_ledger() -> None:
    def drop_customs(docs: dict[str, Any]) -> None:
        docs["agencies.yaml"]["agencies"] = [
            a for a in docs["agencies.yaml"]["agencies"] if a["agency_id"] != "customs"
        ]
        del docs["mous/mou-a-grade-taxpayers.yaml"]
        docs["programs.yaml"]["programs"] = [
            p for p in docs["programs.yaml"]["programs"] if p["program_id"] != "tax.a-grade-taxpayers"
        ]

    world = _world_with(drop_customs)
    before = make_plan(real_world(), NS, AT, _in_sync())
    live = _in_sync(ledger=_ledger_of(before))
    plan = make_plan(world, NS, AT, live, {"customs": DrainStatus("customs", True, "drained")})
    assert {c.owner for c in plan.removals} == {"customs"}
    assert "customs" in plan.managed_agencies
    (report,) = [u for u in plan.users if u.action == "report"]
    assert report.user == "customs" and "kept" in report.reason
    without_ledger = make_plan(world, NS, AT, _in_sync(real_world()))
    assert not without_ledger.removals  # unknown to the world and the ledger: not Concord's
    assert {c.rule.principal for c in without_ledger.unmanaged} == {"User:customs"}


# --------------------------------------------------------------------------- scope


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (STRANGER_READ, "unmanaged"),
        (HAND_ADDED, "managed"),
        (AclRule("User:court", "TOPIC", "LITERAL", "other.lists.court", "READ"), "foreign"),
        (AclRule("User:stranger", "TOPIC", "LITERAL", "other.topic", "READ"), "foreign"),
        (AclRule("User:court", "TOPIC", "LITERAL", "*", "READ"), "unmanaged"),
        (AclRule("User:court", "TOPIC", "PREFIXED", "t", "READ"), "unmanaged"),
        (AclRule("User:court", "TOPIC", "PREFIXED", "", "READ"), "unmanaged"),
        (AclRule("User:court", "TOPIC", "PREFIXED", "t1x", "READ"), "foreign"),
        (AclRule("User:court", "TOPIC", "LITERAL", "t1x.lists.court", "READ"), "foreign"),
        (AclRule("User:court", "TOPIC", "PREFIXED", "t1", "READ"), "managed"),
        (AclRule("User:court", "GROUP", "PREFIXED", "t1-court.", "READ"), "managed"),
        (AclRule("User:court", "CLUSTER", "LITERAL", "kafka-cluster", "ALTER"), "managed"),
        (AclRule("User:stranger", "CLUSTER", "LITERAL", "kafka-cluster", "ALTER"), "unmanaged"),
        (AclRule("User:*", "TOPIC", "LITERAL", "t1.lists.court", "READ"), "unmanaged"),
        (AclRule("User:concord-admin", "TOPIC", "LITERAL", "t1.lists.court", "READ"), "unmanaged"),
    ],
)
def test_scope(rule: AclRule, expected: str) -> None:
    assert Scope.of(NS, real_world().agencies).classify(rule) == expected


def test_unmanaged_bindings_are_reported_and_never_planned_away() -> None:
    wildcard = AclRule("User:court", "TOPIC", "LITERAL", "*", "READ")
    foreign = AclRule("User:stranger", "TOPIC", "LITERAL", "other.topic", "READ")
    plan = make_plan(real_world(), NS, AT, _in_sync(None, STRANGER_READ, wildcard, foreign))
    assert not plan.has_changes()
    reported = {c.rule: c for c in plan.unmanaged}
    assert set(reported) == {STRANGER_READ, wildcard}
    assert "not managed by Concord; reported, never touched" in reported[STRANGER_READ].reason
    assert "reaches into t1" in reported[wildcard].reason
    assert STRANGER_READ in plan.target or STRANGER_READ not in {c.rule for c in plan.removals}
    assert "! User:stranger ALLOW READ TOPIC t1.lists.court" in plan.render()


# --------------------------------------------------------------------------- caps and fingerprints


def test_deletions_are_capped() -> None:
    extra = [
        AclRule("User:court", "TOPIC", "LITERAL", f"{NS}.directives.rail", op) for op in ("READ", "DESCRIBE", "ALTER")
    ]
    plan = make_plan(real_world(), NS, AT, _in_sync(None, *extra))
    check_deletions(plan, 3)
    with pytest.raises(TooManyDeletions, match="removes 3 bindings, more than the cap of 2"):
        check_deletions(plan, 2)
    assert "Apply will refuse: 3 removals exceed the cap of 2" in plan.render(max_deletions=2)


def test_the_fingerprint_follows_the_live_state_in_scope_only() -> None:
    scope = Scope.of(NS, real_world().agencies)
    base = live_fingerprint(_in_sync(), scope, {})
    foreign = AclRule("User:stranger", "TOPIC", "LITERAL", "other.topic", "READ")
    assert live_fingerprint(_in_sync(None, foreign), scope, {}) == base
    assert live_fingerprint(_in_sync(None, HAND_ADDED), scope, {}) != base
    assert live_fingerprint(_in_sync(None, STRANGER_READ), scope, {}) != base
    assert live_fingerprint(_in_sync(revision="offset:3"), scope, {}) != base
    drained = {"securities": DrainStatus("securities", True, "x", ends=((0, 4),))}
    assert live_fingerprint(_in_sync(), scope, drained) != base


def test_a_stale_plan_is_refused() -> None:
    plan = make_plan(real_world(), NS, AT, _in_sync())
    check_fresh(plan, plan.fingerprint)
    now = live_fingerprint(_in_sync(None, HAND_ADDED), plan.scope, {})
    with pytest.raises(PlanStale, match="the cluster changed since this plan was made"):
        check_fresh(plan, now)


def test_a_plan_survives_its_json() -> None:
    plan = make_plan(_terminated_food_safety(), NS, AT, _in_sync(None, STRANGER_READ, HAND_ADDED))
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.target == plan.target
    assert [r.grants for r in again.target] == [r.grants for r in plan.target]


# --------------------------------------------------------------------------- draining


def test_withdrawn_feed_is_kept_while_the_agency_drains() -> None:
    world = _terminated_food_safety()
    live = _in_sync(real_world())
    assert drain_candidates(world, NS, AT, live) == ("securities",)
    status = DrainStatus("securities", False, "2 directive(s) still APPLY")
    plan = make_plan(world, NS, AT, live, {"securities": status})
    kept = {c.rule for c in plan.draining}
    assert kept == set(feed_rules(world, NS, "securities"))
    assert not plan.removals
    assert all(c.reason == "kept until securities has drained its directives" for c in plan.draining)
    assert "securities: kept (draining since" in plan.render() and "2 directive(s) still APPLY" in plan.render()
    assert kept <= set(plan.target)
    (report,) = plan.drains
    assert not report.withdrawn and report.since is not None
    assert plan.ledger(AT).draining == {"securities": report.since}


def test_unmeasured_drain_counts_as_not_drained() -> None:
    plan = make_plan(_terminated_food_safety(), NS, AT, _in_sync(real_world()))
    assert len(plan.draining) == 4 and not plan.removals


def test_once_drained_the_feed_is_withdrawn() -> None:
    world = _terminated_food_safety()
    plan = make_plan(
        world,
        NS,
        AT,
        _in_sync(real_world()),
        {"securities": DrainStatus("securities", True, "drained: receipts cover it")},
    )
    assert {c.rule for c in plan.removals} == set(feed_rules(world, NS, "securities"))
    assert not plan.draining
    assert plan.drains[0].withdrawn


def test_an_operator_may_withdraw_before_draining() -> None:
    world = _terminated_food_safety()
    plan = make_plan(
        world,
        NS,
        AT,
        _in_sync(real_world()),
        {"securities": DrainStatus("securities", False, "1 directive(s) still APPLY")},
        force_withdraw={"securities"},
    )
    assert len(plan.removals) == 4
    assert plan.drains[0].detail.startswith("withdrawn by operator before draining")


def test_draining_since_survives_across_plans() -> None:
    world = _terminated_food_safety()
    status = {"securities": DrainStatus("securities", False, "waiting")}
    first = make_plan(world, NS, AT, _in_sync(real_world()), status, now=AT)
    ledger = first.ledger(AT)
    later = make_plan(world, NS, AT, _in_sync(real_world(), ledger=ledger), status, now=AT + timedelta(hours=2))
    assert later.drains[0].since == AT
    assert later.ledger(AT).content() == ledger.content()


def _rec(p: int, off: int, key: str, action: str, until: datetime | None = None) -> FeedRecord:
    return FeedRecord(p, off, f"d-{p}-{off}", key, action, until)


def test_drain_status_waits_for_lifts_then_for_receipts() -> None:
    topic = f"{NS}.directives.securities"
    applied = [_rec(0, 0, "k1", "APPLY"), _rec(1, 0, "k2", "APPLY")]
    status = drain_status("securities", topic, applied, {"d-0-0", "d-1-0"}, AT)
    assert not status.drained and status.outstanding == 2 and "waiting for the fan-out's LIFTs" in status.detail

    lifted = [*applied, _rec(0, 1, "k1", "LIFT"), _rec(1, 1, "k2", "LIFT")]
    status = drain_status("securities", topic, lifted, {"d-0-0", "d-1-0", "d-0-1"}, AT)
    assert not status.drained and status.unreceipted == (1,)
    assert "last directive of partition(s) 1" in status.detail

    status = drain_status("securities", topic, lifted, {"d-0-1", "d-1-1"}, AT)
    assert status.drained and status.ends == ((0, 2), (1, 2))
    assert status.detail == f"drained: securities's receipts cover {topic} to its end (p0@2, p1@2)"


def test_an_apply_past_its_validity_is_not_outstanding() -> None:
    recs = [_rec(0, 0, "k1", "APPLY", AT - timedelta(days=1))]
    assert drain_status("securities", "t", recs, {"d-0-0"}, AT).drained
    recs = [_rec(0, 0, "k1", "APPLY", AT + timedelta(days=1))]
    assert not drain_status("securities", "t", recs, {"d-0-0"}, AT).drained


def test_an_empty_directive_topic_is_drained() -> None:
    status = drain_status("securities", "t", [], set(), AT)
    assert status.drained and status.detail == "t holds no directives"


# --------------------------------------------------------------------------- topics, users, ledger


def test_topic_differences_are_created_reconfigured_or_reported() -> None:
    world = real_world()
    topics = _topics(world)
    court = f"{NS}.lists.court"
    rail = f"{NS}.directives.rail"
    topics[court] = TopicState(court, 6, 3, topics[court].config)
    topics[rail] = TopicState(rail, 3, 3, {**topics[rail].config, "cleanup.policy": "delete"})
    del topics[f"{NS}.quarantine"]
    topics[f"{NS}.leftover"] = TopicState(f"{NS}.leftover", 1, 1, {})
    topics[ledger_topic(NS)] = TopicState(ledger_topic(NS), 1, 1, {})
    live = LiveState(tuple(compile_acls(world, NS, AT)), topics, frozenset(scram_users(world)))
    plan = make_plan(world, NS, AT, live)
    by = {(t.action, t.name): t for t in plan.topics}
    assert set(by) == {("report", court), ("alter", rail), ("create", f"{NS}.quarantine"), ("report", f"{NS}.leftover")}
    assert "has 6 partition(s), declared 3: not changed" in by[("report", court)].reason
    assert by[("alter", rail)].config == {"cleanup.policy": "compact"}
    assert "never deleted" in by[("report", f"{NS}.leftover")].reason
    assert [t.name for t in plan.topics if t.undeclared] == [f"{NS}.leftover"]


def test_the_fanout_state_changelog_is_declared_compacted_and_partitioned_like_the_lists() -> None:
    world = real_world()
    (state,) = [s for s in desired_topics(world, NS) if s.kind == "fanout_state"]
    lists = [s for s in world.topic_specs(NS) if s.kind == "lists"]
    assert state.name == f"{NS}.fanout.state"
    assert state.cleanup_policy == "compact"
    assert {s.partitions for s in lists} == {state.partitions}


def test_replication_and_min_insync_replicas_are_checked_against_the_cluster() -> None:
    world = real_world()
    topics = _topics(world)
    court = f"{NS}.lists.court"
    topics[court] = TopicState(court, 3, 2, {**topics[court].config, "min.insync.replicas": "1"})
    live = LiveState(tuple(compile_acls(world, NS, AT)), topics, frozenset(scram_users(world)))
    plan = make_plan(world, NS, AT, live)
    by = {(t.action, t.name): t for t in plan.topics}
    assert set(by) == {("report", court), ("alter", court)}
    assert "replication 2, declared 3: not changed" in by[("report", court)].reason
    assert by[("alter", court)].config == {"min.insync.replicas": "2"}
    assert plan.fitting is None


def test_a_cluster_smaller_than_the_declaration_is_planned_as_it_can_hold_and_says_so() -> None:
    world = real_world()
    declared = {s.name: s for s in world.topic_specs(NS)}
    assert {(s.replication, s.min_insync_replicas) for s in declared.values()} == {(3, 2)}
    one = {
        n: TopicState(n, s.partitions, 1, {**s.kafka_config(), "min.insync.replicas": "1"}) for n, s in declared.items()
    }
    live = LiveState(tuple(compile_acls(world, NS, AT)), one, frozenset(scram_users(world)))
    plan = make_plan(world, NS, AT, live, brokers=1)
    assert plan.topics == ()
    assert plan.fitting is not None and "1 broker(s)" in plan.fitting
    assert "declared replication 3, min.insync.replicas 2: held as 1 and 1" in plan.render()
    # the same cluster judged as a production one: every topic is under-replicated
    strict = make_plan(world, NS, AT, live)
    assert {t.action for t in strict.topics} == {"report", "alter"}
    assert len([t for t in strict.topics if t.action == "report"]) == len(one)


def test_the_ledger_round_trips_and_compares_by_content() -> None:
    plan = make_plan(real_world(), NS, AT, _in_sync())
    ledger = plan.ledger(AT, ["ports"])
    again = Ledger.from_bytes(ledger.to_bytes())
    assert again == ledger
    assert again.binding(next(iter(ledger.bindings))) is not None
    later = plan.ledger(AT + timedelta(days=1), previous=ledger)
    assert later.content() == ledger.content() and later.users_created == ("ports",)


# --------------------------------------------------------------------------- quotas


def _quota_world(principals: str) -> World:
    docs = real_world().to_documents()
    topics = dict(docs["topics.yaml"])
    topics["quotas"] = {
        "defaults": {"producer_byte_rate": 1_048_576, "request_percentage": 50},
        "principals": yaml.safe_load(principals),
    }
    return parse_world({**docs, "topics.yaml": topics})


def test_quotas_are_planned_with_their_reasons_and_apply_only_to_managed_principals() -> None:
    world = _quota_world("{court: {producer_byte_rate: 4194304}, concord-ops: {request_percentage: 25}}")
    live = _in_sync(world)
    live = LiveState(
        live.acls,
        live.topics,
        live.users,
        quotas={
            "court": {"producer_byte_rate": 1_048_576.0, "request_percentage": 50.0, "consumer_byte_rate": 2048.0},
            "concord-fanout": {"request_percentage": 10.0},
            "stranger": {"producer_byte_rate": 1024.0},
        },
    )
    plan = make_plan(world, NS, AT, live)
    by = {(q.user, q.key): q for q in plan.quotas}
    court = by[("court", "producer_byte_rate")]
    assert (court.action, court.value, court.was) == ("set", 4_194_304, 1_048_576)
    assert court.reason == "declared in topics.yaml quotas.principals.court"
    assert by[("court", "consumer_byte_rate")].action == "remove"
    assert by[("concord-fanout", "request_percentage")].action == "remove"  # never throttled
    assert by[("concord-ops", "request_percentage")].value == 25
    rail = by[("rail", "producer_byte_rate")]
    assert (rail.action, rail.value, rail.reason) == ("set", 1_048_576, "declared in topics.yaml quotas.defaults")
    assert not any(q.user == "stranger" for q in plan.quotas)  # not Concord's to touch
    assert plan.has_changes()
    text = plan.render()
    assert "+ User:court producer_byte_rate = 4,194,304 (was 1,048,576)" in text
    assert "- User:court consumer_byte_rate (was 2,048)" in text


def test_declared_quotas_once_applied_plan_nothing() -> None:
    plan = make_plan(real_world(), NS, AT, _in_sync())
    assert plan.quotas == () and not plan.has_changes()


@pytest.mark.parametrize(
    ("principals", "problem"),
    [
        (
            "{concord-fanout: {request_percentage: 10}}",
            "quotas.principals.concord-fanout: concord-fanout is never throttled",
        ),
        ("{nobody: {request_percentage: 10}}", "quotas.principals.nobody: unknown principal 'nobody'"),
        (
            "{court: {producer_byte_rate: 10}}",
            "quotas.principals.court.producer_byte_rate: Input should be greater than or equal to 1024",
        ),
        ("{court: {producer_rate: 2048}}", "quotas.principals.court.producer_rate: unknown key"),
    ],
)
def test_quota_declarations_are_checked(principals: str, problem: str) -> None:
    with pytest.raises(WorldInvalid) as err:
        _quota_world(principals)
    path, _, reason = problem.partition(": ")
    assert any(p.path == path and reason in p.reason for p in iter_problems(err.value)), list(iter_problems(err.value))
