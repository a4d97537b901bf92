"""Which bindings Concord may touch in one namespace.

Only *managed* bindings are ever added or removed: the principal is one Concord
manages (an agency of the world or of the ledger, the fan-out, ops) **and** the
resource lies in the namespace (``<ns>``, ``<ns>.*``, ``<ns>-*``) or is the cluster.
A binding of any other principal on the namespace's resources, or a broader pattern
that reaches into them (``*``, a prefix of ``<ns>.``), is *unmanaged*: reported,
never touched. Everything else on a shared cluster is *foreign* and ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from services.core.access import AclRule, principal
from services.core.acl_ledger import Ledger
from services.core.principals import ADMIN, SERVICE_PRINCIPALS
from services.core.world import World

Scoped = Literal["managed", "unmanaged", "foreign"]


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


def relevant_users(scope: Scope) -> set[str]:
    """The SCRAM users of the principals in ``scope``."""
    return {p.removeprefix("User:") for p in scope.principals}


def managed_scope(world: World, namespace: str, ledger: Ledger | None) -> Scope:
    """Agencies of the world, plus those the ledger remembers (so their bindings get withdrawn)."""
    return Scope.of(namespace, {*world.agencies, *(ledger.agencies if ledger else ())})
