"""From the declared world to the ACL bindings the broker enforces.

Least privilege, each binding with the reason it exists (its grants):

* a publishing agency writes only its own list topic;
* an implementing agency reads only its own directive topic — and only while an
  MOU in force names it as implementing a measure — writes only its own receipts,
  and uses only consumer groups under its own prefix ``<ns>-<agency>.``;
* only the fan-out writes directives, and it holds exactly the operations it uses (no ALL,
  no delete): READ on list and receipts topics, WRITE on directives, notices and quarantine,
  READ and WRITE on its state changelog, READ and DESCRIBE on its consumer group, WRITE and
  DESCRIBE on its transactional ids;
* the audit (``concord-audit``) reads lists, directives, receipts, quarantine and the
  registry; the drift check (``concord-drift``) describes the cluster and reads the
  governance ledger;
* operators describe, nothing more.

Prefixes always end in a separator (``<ns>.``, ``<ns>-``): a bare ``<ns>`` prefix
would also cover a neighbouring namespace such as ``<ns>2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.core.principals import AUDIT, DRIFT, FANOUT, OPS, SERVICE_PRINCIPALS
from services.core.world import World

#: The group label of bindings that come from Concord's own rules, not from an MOU.
CONCORD_RULES = "Concord rules"

USER = "User:"


@dataclass(frozen=True, order=True)
class Grant:
    """One reason a binding exists: a measure of an MOU version, or a Concord rule."""

    clause: str
    mou_id: str | None = None
    mou_version: int | None = None

    @property
    def label(self) -> str:
        """The heading a plan groups this grant under."""
        return f"{self.mou_id} v{self.mou_version}" if self.mou_id else CONCORD_RULES

    def __str__(self) -> str:
        return f"{self.label} {self.clause}" if self.mou_id else self.clause


@dataclass(frozen=True, order=True)
class AclRule:
    principal: str
    resource_type: str  # TOPIC | GROUP | CLUSTER | TRANSACTIONAL_ID
    pattern_type: str  # LITERAL | PREFIXED
    resource_name: str
    operation: str  # READ | WRITE | DESCRIBE | CREATE | ALL ...
    permission: str = "ALLOW"
    host: str = "*"
    provenance: str = field(default="", compare=False)
    grants: tuple[Grant, ...] = field(default=(), compare=False)

    @property
    def agency(self) -> str:
        """The principal's name without ``User:`` (an agency id or a Concord principal)."""
        return self.principal.removeprefix(USER)

    @property
    def group_label(self) -> str:
        """The MOU versions behind this binding (``mou-a v1 + mou-b v2``), or Concord's rules."""
        mous = sorted({g.label for g in self.grants if g.mou_id})
        return " + ".join(mous) if mous else CONCORD_RULES

    def short(self) -> str:
        """The binding without its principal: ``ALLOW READ TOPIC concord.directives.rail``."""
        pat = "*" if self.pattern_type == "PREFIXED" else ""
        host = "" if self.host == "*" else f" from {self.host}"
        return f"{self.permission} {self.operation} {self.resource_type} {self.resource_name}{pat}{host}"

    def describe(self) -> str:
        why = f"  ({self.provenance})" if self.provenance else ""
        return f"{self.principal} {self.short()}{why}"

    def with_grants(self, grants: tuple[Grant, ...]) -> AclRule:
        return AclRule(
            self.principal,
            self.resource_type,
            self.pattern_type,
            self.resource_name,
            self.operation,
            self.permission,
            self.host,
            provenance="; ".join(str(g) for g in grants),
            grants=grants,
        )


def principal(name: str) -> str:
    return f"{USER}{name}"


def _rules(who: str, rtype: str, ptype: str, name: str, ops: tuple[str, ...], *grants: Grant) -> list[AclRule]:
    why = "; ".join(str(g) for g in grants)
    return [AclRule(principal(who), rtype, ptype, name, op, provenance=why, grants=tuple(grants)) for op in ops]


def _rule(text: str) -> Grant:
    return Grant(clause=text)


def feed_topics(world: World, namespace: str, agency: str) -> tuple[str, str]:
    """The directive and receipts topic names of ``agency``, even if it no longer implements."""
    return (
        world.topic_templates["directives"].render(namespace, agency).name,
        world.topic_templates["receipts"].render(namespace, agency).name,
    )


def feed_rules(world: World, namespace: str, agency: str, *grants: Grant) -> list[AclRule]:
    """What an implementing agency needs to receive directives and send receipts back.

    These are the bindings an MOU grants, and the ones kept while an agency whose
    last MOU ended is still draining its directive topic.
    """
    directives, receipts = feed_topics(world, namespace, agency)
    return _rules(agency, "TOPIC", "LITERAL", directives, ("READ", "DESCRIBE"), *grants) + _rules(
        agency, "TOPIC", "LITERAL", receipts, ("WRITE", "DESCRIBE"), *grants
    )


def compile_acls(world: World, namespace: str, at: datetime) -> list[AclRule]:
    """Every binding the world calls for at ``at``, sorted, each with its grants."""
    rules: list[AclRule] = []
    registry = world.topic_name("registry", namespace=namespace)
    for agency in world.publishers():
        a = agency.agency_id
        rules += _rules(
            a,
            "TOPIC",
            "LITERAL",
            world.topic_name("lists", a, namespace=namespace),
            ("WRITE", "DESCRIBE"),
            _rule(f"publisher {a} writes its own list topic"),
        )
        rules += _rules(
            a,
            "TOPIC",
            "LITERAL",
            world.topic_name("notices", a, namespace=namespace),
            ("READ", "DESCRIBE"),
            _rule(f"publisher {a} reads what was done about its listings"),
        )
    implementing: dict[str, list[Grant]] = {}
    for mou in world.current_mous(at):
        for m in mou.measures:
            implementing.setdefault(m.implementing_agency, []).append(
                Grant(clause=m.measure_id, mou_id=mou.mou_id, mou_version=mou.version)
            )
    for agency in world.agencies.values():
        a = agency.agency_id
        rules += _rules(a, "TOPIC", "LITERAL", registry, ("READ", "DESCRIBE"), _rule(f"{a} reads the signed registry"))
        rules += _rules(
            a,
            "GROUP",
            "PREFIXED",
            f"{namespace}-{a}.",
            ("READ", "DESCRIBE"),
            _rule(f"{a} uses its own consumer groups"),
        )
        grants = implementing.get(a)
        if grants and agency.implements:
            rules += feed_rules(world, namespace, a, *sorted(set(grants)))
    routes = "the fan-out routes every list by the MOUs"
    fanout: list[tuple[str, str, str, tuple[str, ...], str]] = [
        ("TOPIC", "PREFIXED", f"{namespace}.lists.", ("READ", "DESCRIBE"), routes),
        ("TOPIC", "PREFIXED", f"{namespace}.directives.", ("WRITE", "DESCRIBE"), routes),
        (
            "TOPIC",
            "PREFIXED",
            f"{namespace}.notices.",
            ("WRITE", "DESCRIBE"),
            "the fan-out tells each listing agency what was done about its listings",
        ),
        ("TOPIC", "PREFIXED", f"{namespace}.receipts.", ("READ", "DESCRIBE"), "the fan-out aggregates receipts"),
        (
            "TOPIC",
            "LITERAL",
            world.topic_name("quarantine", namespace=namespace),
            ("WRITE", "DESCRIBE"),
            "the fan-out quarantines what it refuses",
        ),
        ("TOPIC", "LITERAL", registry, ("READ", "DESCRIBE"), "the fan-out reads the signed registry"),
        (
            "TOPIC",
            "LITERAL",
            world.topic_name("fanout_state", namespace=namespace),
            ("READ", "WRITE", "DESCRIBE"),
            "the fan-out keeps its state in its changelog",
        ),
        (
            "GROUP",
            "LITERAL",
            f"{namespace}-fanout",
            ("READ", "DESCRIBE"),
            "the fan-out's consumer group: joins it, commits offsets in its transactions",
        ),
        (
            "TRANSACTIONAL_ID",
            "PREFIXED",
            f"{namespace}-fanout-",
            ("WRITE", "DESCRIBE"),
            "the fan-out commits its directives, state and offsets in Kafka transactions",
        ),
    ]
    for rtype, ptype, name, ops, reason in fanout:
        rules += _rules(FANOUT, rtype, ptype, name, ops, _rule(reason))
    rules += _audit_rules(world, namespace, registry)
    rules += _drift_rules(namespace)
    why = _rule("operators describe, nothing more")
    for prefix in (f"{namespace}.", f"{namespace}-"):
        rules += _rules(OPS, "TOPIC", "PREFIXED", prefix, ("DESCRIBE", "DESCRIBE_CONFIGS"), why)
    rules += _rules(OPS, "GROUP", "PREFIXED", f"{namespace}-", ("DESCRIBE",), why)
    rules += _rules(OPS, "CLUSTER", "LITERAL", "kafka-cluster", ("DESCRIBE",), why)
    return merge_rules(rules)


def _audit_rules(world: World, namespace: str, registry: str) -> list[AclRule]:
    """``concord audit`` reads the evidence, and writes nothing."""
    rules: list[AclRule] = []
    for kind in ("lists", "directives", "receipts"):
        rules += _rules(
            AUDIT,
            "TOPIC",
            "PREFIXED",
            f"{namespace}.{kind}.",
            ("READ", "DESCRIBE"),
            _rule(f"the audit reads every {kind} topic"),
        )
    rules += _rules(
        AUDIT,
        "TOPIC",
        "LITERAL",
        world.topic_name("quarantine", namespace=namespace),
        ("READ", "DESCRIBE"),
        _rule("the audit counts what was quarantined"),
    )
    rules += _rules(
        AUDIT, "TOPIC", "LITERAL", registry, ("READ", "DESCRIBE"), _rule("the audit verifies with the signed registry")
    )
    return rules


def ledger_topic(namespace: str) -> str:
    """The compacted topic holding what Concord applied last in ``namespace``."""
    return f"{namespace}.governance-ledger"


def _drift_rules(namespace: str) -> list[AclRule]:
    """``concord acl drift`` compares the cluster with the world: it describes, and reads the ledger."""
    why = _rule("the drift check describes topics, their configs, ACLs, SCRAM users and quotas")
    rules: list[AclRule] = []
    for prefix in (f"{namespace}.", f"{namespace}-"):
        rules += _rules(DRIFT, "TOPIC", "PREFIXED", prefix, ("DESCRIBE", "DESCRIBE_CONFIGS"), why)
    rules += _rules(DRIFT, "CLUSTER", "LITERAL", "kafka-cluster", ("DESCRIBE", "DESCRIBE_CONFIGS"), why)
    rules += _rules(
        DRIFT,
        "TOPIC",
        "LITERAL",
        ledger_topic(namespace),
        ("READ",),
        _rule("the drift check reads what Concord applied last"),
    )
    return rules


def merge_rules(rules: list[AclRule]) -> list[AclRule]:
    """One rule per binding, sorted, carrying the union of the grants of its duplicates."""
    grants: dict[AclRule, set[Grant]] = {}
    for rule in rules:
        grants.setdefault(rule, set()).update(rule.grants)
    return sorted(rule.with_grants(tuple(sorted(g))) for rule, g in grants.items())


def scram_users(world: World) -> tuple[str, ...]:
    """The SCRAM users the world needs: Concord's services and one per agency."""
    return (*SERVICE_PRINCIPALS, *sorted(world.agencies))
