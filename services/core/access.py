"""From the declared world to the ACL bindings the broker enforces.

Least privilege, each binding with the reason it exists (its provenance):

* a publishing agency writes only its own list topic;
* an implementing agency reads only its own directive topic — and only while an
  MOU in force names it as implementing a measure — writes only its own receipts,
  and uses only consumer groups under its own prefix;
* only the fan-out reads list topics and writes directives;
* operators describe, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.core.world import World

FANOUT = "concord-fanout"
OPS = "concord-ops"
ADMIN = "concord-admin"


@dataclass(frozen=True, order=True)
class AclRule:
    principal: str
    resource_type: str  # TOPIC | GROUP | CLUSTER
    pattern_type: str  # LITERAL | PREFIXED
    resource_name: str
    operation: str  # READ | WRITE | DESCRIBE | CREATE | ALL ...
    permission: str = "ALLOW"
    host: str = "*"
    provenance: str = field(default="", compare=False)

    def describe(self) -> str:
        pat = "*" if self.pattern_type == "PREFIXED" else ""
        return (f"{self.permission} {self.principal} {self.operation} {self.resource_type} "
                f"{self.resource_name}{pat}  ({self.provenance})")


def _rules(principal: str, rtype: str, ptype: str, name: str, ops: tuple[str, ...], why: str) -> list[AclRule]:
    return [AclRule(f"User:{principal}", rtype, ptype, name, op, provenance=why) for op in ops]


def compile_acls(world: World, namespace: str, at: datetime) -> list[AclRule]:
    rules: list[AclRule] = []
    registry = world.topic_name("registry", namespace=namespace)
    for agency in world.publishers():
        a = agency.agency_id
        rules += _rules(a, "TOPIC", "LITERAL", world.topic_name("lists", a, namespace=namespace),
                        ("WRITE", "DESCRIBE"), f"publisher {a}: its own list topic")
    implementing: dict[str, list[str]] = {}
    for mou in world.current_mous(at):
        for m in mou.measures:
            implementing.setdefault(m.implementing_agency, []).append(f"{mou.mou_id} v{mou.version} {m.measure_id}")
    for agency in world.agencies.values():
        a = agency.agency_id
        rules += _rules(a, "TOPIC", "LITERAL", registry, ("READ", "DESCRIBE"), f"{a}: the signed registry")
        rules += _rules(a, "GROUP", "PREFIXED", f"{namespace}-{a}.", ("READ", "DESCRIBE"),
                        f"{a}: its own consumer groups")
        why = implementing.get(a)
        if why:
            reason = "; ".join(sorted(why))
            rules += _rules(a, "TOPIC", "LITERAL", world.topic_name("directives", a, namespace=namespace),
                            ("READ", "DESCRIBE"), reason)
            rules += _rules(a, "TOPIC", "LITERAL", world.topic_name("receipts", a, namespace=namespace),
                            ("WRITE", "DESCRIBE"), reason)
    why = "fan-out: routes every list by the MOUs"
    rules += _rules(FANOUT, "TOPIC", "PREFIXED", f"{namespace}.lists.", ("READ", "DESCRIBE"), why)
    rules += _rules(FANOUT, "TOPIC", "PREFIXED", f"{namespace}.directives.", ("WRITE", "DESCRIBE"), why)
    rules += _rules(FANOUT, "TOPIC", "PREFIXED", f"{namespace}.receipts.", ("READ", "DESCRIBE"), why)
    rules += _rules(FANOUT, "TOPIC", "LITERAL", world.topic_name("quarantine", namespace=namespace),
                    ("WRITE", "DESCRIBE"), "fan-out: quarantines what it refuses")
    rules += _rules(FANOUT, "TOPIC", "LITERAL", registry, ("READ", "DESCRIBE"), "fan-out: the signed registry")
    rules += _rules(FANOUT, "TOPIC", "PREFIXED", f"{namespace}-fanout-", ("ALL",),
                    "fan-out: its own state changelogs and ticks")
    rules += _rules(FANOUT, "GROUP", "PREFIXED", f"{namespace}-fanout", ("ALL",), "fan-out: its consumer group")
    why = "operators: describe only"
    rules += _rules(OPS, "TOPIC", "PREFIXED", namespace, ("DESCRIBE", "DESCRIBE_CONFIGS"), why)
    rules += _rules(OPS, "GROUP", "PREFIXED", namespace, ("DESCRIBE",), why)
    rules += _rules(OPS, "CLUSTER", "LITERAL", "kafka-cluster", ("DESCRIBE",), why)
    return sorted(set(rules))
