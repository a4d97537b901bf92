"""Planning the cluster's access from the declared world: pure, no Kafka.

The governance tool compares three states and explains every difference:

* **desired** — :func:`~services.core.access.compile_acls` for the MOUs in force,
  the declared topics and one SCRAM user per principal;
* **live** — what the cluster holds (:class:`LiveState`, read by the I/O shell in
  :mod:`services.governance`);
* **ledger** — what Concord itself applied last (:class:`Ledger`), so that a plan
  can tell a binding it granted and must now withdraw (and why it had been granted)
  from one somebody added by hand.

Only *managed* bindings are ever added or removed: the principal is one Concord
manages (an agency of the world or of the ledger, the fan-out, ops) **and** the
resource lies in the namespace (``<ns>``, ``<ns>.*``, ``<ns>-*``) or is the cluster.
A binding of any other principal on the namespace's resources, or a broader pattern
that reaches into them (``*``, a prefix of ``<ns>.``), is *unmanaged*: reported,
never touched. Everything else on a shared cluster is *foreign* and ignored.

Withdrawal waits for draining: when an agency loses the READ on its directive topic
(its last MOU ended), the LIFTs the fan-out emits for what it still applies must reach
it first. The plan keeps the agency's feed bindings as *draining* until
:func:`drain_status` says the topic is drained: no directive key still ends in an
APPLY in force (the fan-out has lifted everything) and the agency's receipts name the
last directive of every partition (a subscriber reads each partition in order, so a
receipt for the last record proves it read everything before it).

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from services.core.access import (
    AclRule,
    compile_acls,
    feed_rules,
    feed_topics,
    ledger_topic,
    principal,
    scram_users,
)
from services.core.errors import ConcordError
from services.core.principals import ADMIN, SERVICE_PRINCIPALS
from services.core.quotas import QuotaChange, plan_quotas
from services.core.world import TopicSpec, World

PLAN_FORMAT: Final = "concord.acl-plan/v1"
LEDGER_FORMAT: Final = "concord.acl-ledger/v1"
DEFAULT_MAX_DELETIONS = 20

Scoped = Literal["managed", "unmanaged", "foreign"]
AclAction = Literal["add", "remove", "drain", "unmanaged"]

_RULES = TypeAdapter(tuple[AclRule, ...])


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


# --------------------------------------------------------------------------- states


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster has it: partitions, replication, effective configs."""

    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


class Ledger(BaseModel):
    """What Concord applied last in one namespace."""

    model_config = ConfigDict(frozen=True)

    format: Literal["concord.acl-ledger/v1"] = LEDGER_FORMAT
    namespace: str
    applied_at: datetime
    plan_fingerprint: str
    world_digest: str
    agencies: tuple[str, ...]
    bindings: tuple[AclRule, ...]
    draining: dict[str, datetime] = {}
    users_created: tuple[str, ...] = ()

    def content(self) -> dict[str, Any]:
        """What the ledger says, without when and by which plan: equal content, no new record."""
        doc = self.model_dump(mode="json", exclude={"applied_at", "plan_fingerprint"})
        doc["bindings"] = sorted(json.dumps(b, sort_keys=True) for b in doc["bindings"])
        return doc

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ledger:
        return cls.model_validate_json(raw)

    def binding(self, rule: AclRule) -> AclRule | None:
        """The ledger's copy of ``rule`` (it carries the grants it was applied for)."""
        return _index(self.bindings).get(rule)


def _index(rules: Iterable[AclRule]) -> dict[AclRule, AclRule]:
    return {r: r for r in rules}


@dataclass(frozen=True)
class LiveState:
    """The cluster as read by the shell; ``topics`` are the namespace's topics only."""

    acls: tuple[AclRule, ...]
    topics: Mapping[str, TopicState]
    users: frozenset[str]
    ledger: Ledger | None = None
    ledger_revision: str | None = None
    quotas: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # user -> quota key -> value


@dataclass(frozen=True)
class FeedRecord:
    """One record of an agency's directive topic, as much as draining needs of it."""

    partition: int
    offset: int
    directive_id: str
    key: str | None = None
    action: str | None = None  # APPLY | LIFT; None when the record is unreadable
    valid_until: datetime | None = None


@dataclass(frozen=True)
class DrainStatus:
    agency: str
    drained: bool
    detail: str
    outstanding: int = 0
    unreceipted: tuple[int, ...] = ()
    ends: tuple[tuple[int, int], ...] = ()

    def fingerprint_part(self) -> list[Any]:
        return [self.drained, self.outstanding, list(self.unreceipted), [list(e) for e in self.ends]]


def unreadable_id(topic: str, partition: int, offset: int) -> str:
    """The id a subscriber's REJECTED receipt names for a record it could not decode."""
    return f"unreadable:{topic}:{partition}:{offset}"


def drain_status(
    agency: str, topic: str, records: Iterable[FeedRecord], receipted: Collection[str], now: datetime
) -> DrainStatus:
    """Whether ``agency`` has received everything its directive topic still holds for it.

    Drained when no key's latest directive is an APPLY still in force (an APPLY past its
    ``valid_until`` counts as ended: the subscriber never enforces it) and the last
    record of every partition has a receipt (receipts are keyed by directive id).
    """
    latest: dict[str, FeedRecord] = {}
    last: dict[int, FeedRecord] = {}
    for rec in records:
        if rec.key is not None:
            held = latest.get(rec.key)
            if held is None or rec.offset > held.offset:
                latest[rec.key] = rec
        held = last.get(rec.partition)
        if held is None or rec.offset > held.offset:
            last[rec.partition] = rec
    outstanding = sum(
        1 for r in latest.values() if r.action == "APPLY" and (r.valid_until is None or r.valid_until > now)
    )
    unreceipted = tuple(sorted(p for p, r in last.items() if r.directive_id not in receipted))
    ends = tuple(sorted((p, r.offset + 1) for p, r in last.items()))
    problems = []
    if outstanding:
        problems.append(f"{outstanding} directive(s) of {topic} still APPLY; waiting for the fan-out's LIFTs")
    if unreceipted:
        parts = ", ".join(str(p) for p in unreceipted)
        problems.append(f"no receipt from {agency} for the last directive of partition(s) {parts}")
    if problems:
        detail = "; ".join(problems)
    elif not last:
        detail = f"{topic} holds no directives"
    else:
        where = ", ".join(f"p{p}@{end}" for p, end in ends)
        detail = f"drained: {agency}'s receipts cover {topic} to its end ({where})"
    return DrainStatus(agency, not problems, detail, outstanding, unreceipted, ends)


# --------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """Which bindings Concord may touch in one namespace."""

    namespace: str
    principals: frozenset[str]

    @classmethod
    def of(cls, namespace: str, agencies: Iterable[str]) -> Scope:
        names = {*SERVICE_PRINCIPALS, *agencies}
        return cls(namespace, frozenset(principal(n) for n in names))

    @property
    def agencies(self) -> tuple[str, ...]:
        services = {principal(s) for s in SERVICE_PRINCIPALS}
        return tuple(sorted(p.removeprefix("User:") for p in self.principals - services))

    def in_namespace(self, name: str) -> bool:
        ns = self.namespace
        return name == ns or name.startswith((f"{ns}.", f"{ns}-"))

    def reaches_in(self, rule: AclRule) -> bool:
        """A pattern wider than the namespace that still matches its resources."""
        if rule.pattern_type == "LITERAL":
            return rule.resource_name == "*"
        if rule.pattern_type == "PREFIXED":
            return any(p.startswith(rule.resource_name) for p in (f"{self.namespace}.", f"{self.namespace}-"))
        return False

    def classify(self, rule: AclRule) -> Scoped:
        managed = rule.principal in self.principals
        if rule.resource_type == "CLUSTER" or self.in_namespace(rule.resource_name):
            return "managed" if managed else "unmanaged"
        if self.reaches_in(rule):
            return "unmanaged"
        return "foreign"

    def unmanaged_reason(self, rule: AclRule) -> str:
        if rule.principal == principal(ADMIN):
            return "the admin is a super user and needs no bindings; reported, never touched"
        if rule.resource_type == "CLUSTER":
            return f"cluster-wide binding of unmanaged principal {rule.principal}; reported, never touched"
        if self.reaches_in(rule) and not self.in_namespace(rule.resource_name):
            return (
                f"pattern '{rule.resource_name}' ({rule.pattern_type.lower()}) reaches into "
                f"{self.namespace}; reported, never touched"
            )
        return f"principal {rule.principal} is not managed by Concord; reported, never touched"


def _relevant_users(scope: Scope) -> set[str]:
    return {p.removeprefix("User:") for p in scope.principals}


def live_fingerprint(live: LiveState, scope: Scope, drains: Mapping[str, DrainStatus]) -> str:
    """What a plan was computed against: in-scope bindings, topics, users, ledger, drains."""
    users = _relevant_users(scope)
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


_SYMBOL = {"add": "+", "remove": "-", "drain": "~", "unmanaged": "!"}
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
        parts = [f"{len(self.additions)} to add", f"{len(self.removals)} to remove"]
        if self.draining:
            parts.append(f"{len(self.draining)} kept while draining")
        if self.unmanaged:
            parts.append(f"{len(self.unmanaged)} unmanaged (never touched)")
        if self.topics_to_create or self.topics_to_alter:
            parts.append(f"{len(self.topics_to_create)} topic(s) to create, {len(self.topics_to_alter)} to reconfigure")
        if self.users_to_create:
            parts.append(f"{len(self.users_to_create)} SCRAM user(s) to create")
        if self.quotas:
            removed = sum(1 for q in self.quotas if q.action == "remove")
            parts.append(f"{len(self.quotas) - removed} quota value(s) to set, {removed} to remove")
        return f"Plan: {', '.join(parts)}; {self.unchanged} binding(s) unchanged."

    def render(self, *, max_deletions: int | None = None) -> str:
        """The readable diff: by agency, then MOU, one line per binding with its reason."""
        lines = [
            (
                f"Concord access plan for namespace {self.namespace!r} "
                f"(live state {self.fingerprint[:16]}, world {self.world_digest[:12]})"
            )
        ]
        if self.ledger_applied_at is not None:
            lines.append(f"Last applied by Concord: {self.ledger_applied_at.isoformat(timespec='seconds')}")
        else:
            lines.append("Last applied by Concord: never (no ledger in this namespace)")
        if self.fitting:
            lines.append(self.fitting)
        for owner, groups in self.groups().items():
            lines.append("")
            lines.append(owner)
            for group, changes in groups.items():
                lines.append(f"  [{group}]")
                width = max(len(c.rule.short()) for c in changes)
                for c in changes:
                    who = "" if c.action != "unmanaged" else f"{c.rule.principal} "
                    lines.append(f"    {_SYMBOL[c.action]} {who}{c.rule.short():<{width}}  {c.reason}")
        if self.topics:
            lines += ["", "topics"]
            sym = {"create": "+", "alter": "~", "report": "!"}
            width = max(len(t.name) for t in self.topics)
            lines += [f"    {sym[t.action]} {t.name:<{width}}  {t.reason}" for t in self.topics]
        if self.users:
            lines += ["", "SCRAM users"]
            width = max(len(u.user) for u in self.users)
            lines += [f"    {'+' if u.action == 'create' else '!'} {u.user:<{width}}  {u.reason}" for u in self.users]
        if self.quotas:
            lines += ["", "quotas"]
            width = max(len(q.short()) for q in self.quotas)
            lines += [f"    {'+' if q.action == 'set' else '-'} {q.short():<{width}}  {q.reason}" for q in self.quotas]
        if self.drains:
            lines += ["", "draining"]
            for d in self.drains:
                state = "withdrawn now" if d.withdrawn else "kept"
                since = f" (draining since {d.since.isoformat(timespec='seconds')})" if d.since else ""
                lines.append(f"    {d.agency}: {state}{since}: {d.detail}")
        lines += ["", self.summary()]
        if not self.has_changes() and self.draining:
            lines.append(
                "Nothing to change now: the cluster matches the declared world, except for bindings "
                "kept until their agencies have drained."
            )
        elif not self.has_changes():
            lines.append("Nothing to change: the cluster matches the declared world.")
        if max_deletions is not None and len(self.removals) > max_deletions:
            lines.append(
                f"Apply will refuse: {len(self.removals)} removals exceed the cap of {max_deletions} "
                "(--max-deletions N to allow more)."
            )
        return "\n".join(lines)

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


def managed_scope(world: World, namespace: str, ledger: Ledger | None) -> Scope:
    """Agencies of the world, plus those the ledger remembers (so their bindings get withdrawn)."""
    return Scope.of(namespace, {*world.agencies, *(ledger.agencies if ledger else ())})


def drain_candidates(world: World, namespace: str, at: datetime, live: LiveState) -> tuple[str, ...]:
    """Agencies that hold READ on their directive topic although no MOU grants it any more."""
    scope = managed_scope(world, namespace, live.ledger)
    desired = set(compile_acls(world, namespace, at))
    out = []
    for agency in scope.agencies:
        directives, _ = feed_topics(world, namespace, agency)
        read = AclRule(principal(agency), "TOPIC", "LITERAL", directives, "READ")
        if read in live.acls and read not in desired:
            out.append(agency)
    return tuple(out)


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

    ``drains`` holds the :func:`drain_status` of every :func:`drain_candidates` agency; an
    agency missing from it counts as not drained. ``force_withdraw`` names agencies whose
    access is withdrawn without waiting (an operator's explicit decision). ``brokers`` is
    the size the cluster is set up with when it is smaller than topics/ declares for
    (the local one-broker setup): topics are then planned as :meth:`TopicSpec.fitted`.
    """
    drains = dict(drains or {})
    now = now or datetime.now(UTC)
    ledger = live.ledger
    scope = managed_scope(world, namespace, ledger)
    desired = _index(compile_acls(world, namespace, at))
    applied = _index(ledger.bindings if ledger else ())
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
        quotas=tuple(plan_quotas(world.quotas, set(world.agencies), _relevant_users(scope), live.quotas)),
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


def rules_from_json(raw: Any) -> tuple[AclRule, ...]:
    return _RULES.validate_python(raw)
