"""Planning the cluster's access from the declared world: pure, no Kafka.

The governance tool compares three states and explains every difference:

* **desired** — :func:`~services.core.access.compile_acls` for the MOUs in force,
  the declared topics and one SCRAM user per principal;
* **live** — what the cluster holds (:class:`~services.core.cluster_state.LiveState`,
  read by the I/O shell in :mod:`services.governance`);
* **ledger** — what Concord itself applied last (:class:`~services.core.acl_ledger.Ledger`).

Only bindings in Concord's scope (:mod:`services.core.acl_scope`) are ever added or
removed; an agency's feed is withdrawn only once it has drained (:mod:`services.core.draining`).
A plan reads as text through :mod:`services.core.plan_text`.

A :class:`Plan` carries the fingerprint of the live state it was computed from; apply
recomputes it and refuses a plan whose cluster has changed since (:class:`PlanStale`).

Errors::

    ConcordError
    └── PlanRefused            apply will not run this plan
        ├── PlanStale              the live state changed since the plan was made
        └── TooManyDeletions       more removals than the deletion cap allows
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from services.core import plan_text
from services.core.access import (
    AclRule,
    compile_acls,
    feed_rules,
    ledger_topic,
    scram_users,
)
from services.core.acl_ledger import Ledger, by_rule
from services.core.acl_scope import Scope, managed_scope, relevant_users
from services.core.cluster_state import LiveState
from services.core.draining import DrainStatus, drain_candidates
from services.core.errors import ConcordError
from services.core.quotas import QuotaChange, plan_quotas
from services.core.world import TopicSpec, World

PLAN_FORMAT: Final = "concord.acl-plan/v1"
DEFAULT_MAX_DELETIONS = 20

AclAction = Literal["add", "remove", "drain", "unmanaged"]


class PlanRefused(ConcordError):
    pass


class PlanStale(PlanRefused):
    pass


class TooManyDeletions(PlanRefused):
    pass


def _digest(doc: Any) -> str:
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(raw).hexdigest()


def world_digest(world: World) -> str:
    """A content digest of the declared world, recorded with every plan and ledger."""
    return _digest(world.to_documents())


def desired_topics(world: World, namespace: str, brokers: int | None = None) -> tuple[TopicSpec, ...]:
    """Every topic the world needs, as a cluster of ``brokers`` holds them (``None``: as declared)."""
    return tuple(s.fitted(brokers) for s in world.topic_specs(namespace))


def fitting_note(world: World, namespace: str, brokers: int | None) -> str | None:
    """What a cluster smaller than the declared replication changes, in one sentence; None if nothing."""
    declared = world.topic_specs(namespace)
    fitted = [(d, d.fitted(brokers)) for d in declared]
    changed = [
        (d, f) for d, f in fitted if (d.replication, d.min_insync_replicas) != (f.replication, f.min_insync_replicas)
    ]
    if not changed:
        return None
    shapes = sorted({(d.replication, d.min_insync_replicas, f.replication, f.min_insync_replicas) for d, f in changed})
    held = "; ".join(f"declared replication {a}, min.insync.replicas {b}: held as {c} and {e}" for a, b, c, e in shapes)
    return (
        f"This cluster is set up with {brokers} broker(s), fewer than topics/ declares for "
        f"{len(changed)} topic(s) ({held}). A production cluster gets the declaration."
    )


def live_fingerprint(live: LiveState, scope: Scope, drains: Mapping[str, DrainStatus]) -> str:
    """What a plan was computed against: in-scope bindings, topics, users, ledger, drains."""
    users = relevant_users(scope)
    doc = {
        "namespace": scope.namespace,
        "acls": sorted(json.dumps(_rule_key(r)) for r in live.acls if scope.classify(r) != "foreign"),
        "topics": {n: [t.partitions, t.replication, sorted(t.config.items())] for n, t in live.topics.items()},
        "users": sorted(u for u in live.users if u in users),
        "ledger": live.ledger_revision,
        "drains": {a: d.fingerprint_part() for a, d in sorted(drains.items())},
        "quotas": {u: sorted(q.items()) for u, q in sorted(live.quotas.items()) if u in users},
    }
    return _digest(doc)


def _rule_key(r: AclRule) -> list[str]:
    return [r.principal, r.resource_type, r.pattern_type, r.resource_name, r.operation, r.permission, r.host]


# --------------------------------------------------------------------------- plan


class AclChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: AclAction
    rule: AclRule
    owner: str
    group: str
    reason: str


class TopicChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: Literal["create", "alter", "report"]
    name: str
    reason: str
    spec: TopicSpec | None = None
    config: dict[str, str] = {}
    undeclared: bool = False  # a topic in the namespace that topics/ does not declare


class UserChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    action: Literal["create", "report"]
    user: str
    reason: str


class DrainReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    agency: str
    drained: bool
    withdrawn: bool
    detail: str
    since: datetime | None = None


_ORDER = {"add": 0, "remove": 1, "drain": 2, "unmanaged": 3}


class Plan(BaseModel):
    """A reviewed set of changes, valid only against the live state it was computed from."""

    model_config = ConfigDict(frozen=True)

    format: Literal["concord.acl-plan/v1"] = PLAN_FORMAT
    namespace: str
    created_at: datetime
    fingerprint: str
    world_digest: str
    managed_agencies: tuple[str, ...]
    acls: tuple[AclChange, ...]
    topics: tuple[TopicChange, ...] = ()
    users: tuple[UserChange, ...] = ()
    quotas: tuple[QuotaChange, ...] = ()
    drains: tuple[DrainReport, ...] = ()
    target: tuple[AclRule, ...] = ()
    unchanged: int = 0
    ledger_applied_at: datetime | None = None
    brokers: int | None = None  # the cluster size topics were fitted to (None: as declared)
    fitting: str | None = None  # what that fitting changed, for the reader

    # -- views ------------------------------------------------------------------

    def _acl(self, action: AclAction) -> list[AclChange]:
        return [c for c in self.acls if c.action == action]

    @property
    def additions(self) -> list[AclChange]:
        return self._acl("add")

    @property
    def removals(self) -> list[AclChange]:
        return self._acl("remove")

    @property
    def draining(self) -> list[AclChange]:
        return self._acl("drain")

    @property
    def unmanaged(self) -> list[AclChange]:
        return self._acl("unmanaged")

    @property
    def topics_to_create(self) -> list[TopicChange]:
        return [t for t in self.topics if t.action == "create"]

    @property
    def topics_to_alter(self) -> list[TopicChange]:
        return [t for t in self.topics if t.action == "alter"]

    @property
    def users_to_create(self) -> list[UserChange]:
        return [u for u in self.users if u.action == "create"]

    @property
    def scope(self) -> Scope:
        return Scope.of(self.namespace, self.managed_agencies)

    def has_changes(self) -> bool:
        """Whether applying would change the cluster (reports alone change nothing)."""
        return bool(
            self.additions
            or self.removals
            or self.topics_to_create
            or self.topics_to_alter
            or self.users_to_create
            or self.quotas
        )

    def groups(self) -> dict[str, dict[str, list[AclChange]]]:
        """ACL changes by owner (agency or principal), then by MOU / rule group."""
        out: dict[str, dict[str, list[AclChange]]] = {}
        ordered = sorted(self.acls, key=lambda c: (c.action == "unmanaged", c.owner, c.group, _ORDER[c.action], c.rule))
        for c in ordered:
            out.setdefault(c.owner, {}).setdefault(c.group, []).append(c)
        return out

    def summary(self) -> str:
        return plan_text.summary(self)

    def render(self, *, max_deletions: int | None = None) -> str:
        """The readable diff: by agency, then MOU, one line per binding with its reason."""
        return plan_text.render(self, max_deletions=max_deletions)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.model_validate_json(text)

    def ledger(self, applied_at: datetime, users_created: Iterable[str] = (), previous: Ledger | None = None) -> Ledger:
        """The ledger recording this plan as applied."""
        created = sorted({*(previous.users_created if previous else ()), *users_created})
        return Ledger(
            namespace=self.namespace,
            applied_at=applied_at,
            plan_fingerprint=self.fingerprint,
            world_digest=self.world_digest,
            agencies=self.managed_agencies,
            bindings=tuple(sorted(self.target)),
            draining={d.agency: d.since or applied_at for d in self.drains if not d.withdrawn},
            users_created=tuple(created),
        )


def check_fresh(plan: Plan, fingerprint: str) -> None:
    """Refuse a plan whose live state has changed since it was computed."""
    if plan.fingerprint != fingerprint:
        raise PlanStale(
            "the cluster changed since this plan was made (live state "
            f"{fingerprint[:16]}, plan made against {plan.fingerprint[:16]}): "
            "run `concord acl plan` again and review it",
            namespace=plan.namespace,
        )


def check_deletions(plan: Plan, max_deletions: int) -> None:
    n = len(plan.removals)
    if n > max_deletions:
        raise TooManyDeletions(
            f"the plan removes {n} bindings, more than the cap of {max_deletions}; "
            "review it and pass --max-deletions to allow more",
            namespace=plan.namespace,
        )


def make_plan(
    world: World,
    namespace: str,
    at: datetime,
    live: LiveState,
    drains: Mapping[str, DrainStatus] | None = None,
    *,
    force_withdraw: Collection[str] = (),
    now: datetime | None = None,
    brokers: int | None = None,
) -> Plan:
    """Everything that differs between the world at ``at`` and the live cluster, with reasons.

    ``drains`` holds the :func:`~services.core.draining.drain_status` of every :func:`drain_candidates` agency; an
    agency missing from it counts as not drained. ``force_withdraw`` names agencies whose
    access is withdrawn without waiting (an operator's explicit decision). ``brokers`` is
    the size the cluster is set up with when it is smaller than topics/ declares for
    (the local one-broker setup): topics are then planned as :meth:`TopicSpec.fitted`.
    """
    drains = dict(drains or {})
    now = now or datetime.now(UTC)
    ledger = live.ledger
    scope = managed_scope(world, namespace, ledger)
    desired = by_rule(compile_acls(world, namespace, at))
    applied = by_rule(ledger.bindings if ledger else ())
    live_managed = {r for r in live.acls if scope.classify(r) == "managed"}
    extra = live_managed - desired.keys()

    changes: list[AclChange] = []
    drain_reports: list[DrainReport] = []
    draining: set[AclRule] = set()
    for agency in drain_candidates(world, namespace, at, live):
        status = drains.get(agency) or DrainStatus(agency, False, "drain state not measured")
        forced = agency in force_withdraw
        keep = not status.drained and not forced
        feed = set(feed_rules(world, namespace, agency)) & extra
        since = ledger.draining.get(agency) if ledger else None
        detail = status.detail
        if forced and not status.drained:
            detail = f"withdrawn by operator before draining ({status.detail})"
        drain_reports.append(
            DrainReport(
                agency=agency,
                drained=status.drained,
                withdrawn=not keep,
                detail=detail,
                since=since or (now if keep else None),
            )
        )
        if keep:
            draining |= feed

    for rule in sorted(desired.keys() - live_managed):
        want = desired[rule]
        if rule in applied:
            reason = f"restore (removed outside Concord since the last apply): {want.provenance}"
        else:
            reason = f"grant: {want.provenance}"
        changes.append(AclChange(action="add", rule=want, owner=want.agency, group=want.group_label, reason=reason))
    reports = {d.agency: d for d in drain_reports}
    for rule in sorted(extra):
        was = applied.get(rule)
        label = was.group_label if was is not None and was.grants else "not declared"
        if rule in draining:
            was_why = f" (was: {was.provenance})" if was is not None and was.provenance else ""
            changes.append(
                AclChange(
                    action="drain",
                    rule=was or rule,
                    owner=rule.agency,
                    group=f"draining: {label}",
                    reason=f"kept until {rule.agency} has drained its directives{was_why}",
                )
            )
            continue
        if was is not None:
            why = f"withdraw: no longer granted (was: {was.provenance or 'applied by Concord'})"
            report = reports.get(rule.agency)
            if report is not None and rule in set(feed_rules(world, namespace, rule.agency)):
                why += f"; {report.detail}"
        else:
            why = "revoke: not declared in topics/ and never applied by Concord (added by hand?)"
        changes.append(AclChange(action="remove", rule=was or rule, owner=rule.agency, group=label, reason=why))
    changes.extend(
        AclChange(
            action="unmanaged",
            rule=rule,
            owner=rule.principal,
            group="unmanaged",
            reason=scope.unmanaged_reason(rule),
        )
        for rule in sorted(r for r in live.acls if scope.classify(r) == "unmanaged")
    )

    target = tuple(sorted([*desired.values(), *(applied.get(r) or r for r in draining)]))
    return Plan(
        namespace=namespace,
        created_at=now,
        fingerprint=live_fingerprint(live, scope, drains),
        world_digest=world_digest(world),
        managed_agencies=scope.agencies,
        acls=tuple(changes),
        topics=tuple(_topic_changes(world, namespace, live, brokers)),
        users=tuple(_user_changes(world, scope, live)),
        quotas=tuple(plan_quotas(world.quotas, set(world.agencies), relevant_users(scope), live.quotas)),
        drains=tuple(drain_reports),
        target=target,
        unchanged=len(live_managed & desired.keys()),
        ledger_applied_at=ledger.applied_at if ledger else None,
        brokers=brokers,
        fitting=fitting_note(world, namespace, brokers),
    )


def _topic_changes(world: World, namespace: str, live: LiveState, brokers: int | None) -> list[TopicChange]:
    out: list[TopicChange] = []
    declared = desired_topics(world, namespace, brokers)
    for spec in declared:
        held = live.topics.get(spec.name)
        what = f"{spec.kind} of {spec.agency}" if spec.agency else spec.kind
        if held is None:
            out.append(
                TopicChange(
                    action="create",
                    name=spec.name,
                    spec=spec,
                    reason=f"declared ({what}): {spec.partitions} partition(s), "
                    f"replication {spec.replication}, min.insync.replicas "
                    f"{spec.min_insync_replicas}, {spec.cleanup_policy}, "
                    f"retention.ms {spec.retention_ms}",
                )
            )
            continue
        if held.partitions != spec.partitions:
            out.append(
                TopicChange(
                    action="report",
                    name=spec.name,
                    reason=f"has {held.partitions} partition(s), declared {spec.partitions}: "
                    "not changed (repartitioning moves keys between partitions)",
                )
            )
        if held.replication != spec.replication:
            out.append(
                TopicChange(
                    action="report",
                    name=spec.name,
                    reason=f"replication {held.replication}, declared {spec.replication}: "
                    "not changed by Concord (a partition reassignment)",
                )
            )
        wrong = {k: v for k, v in spec.kafka_config().items() if held.config.get(k) != v}
        if wrong:
            was = ", ".join(f"{k} {held.config.get(k)!s} -> {v}" for k, v in sorted(wrong.items()))
            out.append(
                TopicChange(
                    action="alter",
                    name=spec.name,
                    spec=spec,
                    config=wrong,
                    reason=f"config differs from the declaration: {was}",
                )
            )
    names = {s.name for s in declared} | {ledger_topic(namespace)}
    out.extend(
        TopicChange(
            action="report",
            name=name,
            undeclared=True,
            reason="not declared: never deleted by Concord (it holds data)",
        )
        for name in sorted(set(live.topics) - names)
        if name.startswith(f"{namespace}.")
    )
    return out


def _user_changes(world: World, scope: Scope, live: LiveState) -> list[UserChange]:
    out: list[UserChange] = []
    for user in scram_users(world):
        if user not in live.users:
            who = "agency" if user in world.agencies else "Concord service"
            out.append(
                UserChange(
                    action="create",
                    user=user,
                    reason=f"{who} without a SCRAM user: SCRAM-SHA-512, generated password "
                    "saved to <home>/credentials/<principal>.json",
                )
            )
    out.extend(
        UserChange(
            action="report",
            user=agency,
            reason="agency no longer declared: its bindings are withdrawn, its SCRAM user "
            "is kept (Concord never deletes users)",
        )
        for agency in scope.agencies
        if agency not in world.agencies
    )
    return out
