"""``concord acl drift``: how far the live cluster is from the declared world.

A drift report is a plan looked at from the other side: what is *missing* (bindings,
topics, topic configs, SCRAM users, client quota values the world calls for), what is
*extra* (managed bindings the world no longer grants, draining ones excepted, and
quota values it does not declare on managed principals) and what is *unmanaged*
(bindings of principals Concord does not manage that reach into the namespace, and
undeclared topics). Missing or extra fails the check; unmanaged is reported and
exported but is not Concord's to fix.

The gauges live on an explicit registry (:meth:`DriftMetrics.create`), so a test or a
long-running ``drift --metrics-port`` owns its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from services.core.governance_plan import Plan


@dataclass(frozen=True)
class DriftReport:
    namespace: str
    missing: dict[str, list[str]]
    extra: dict[str, list[str]]
    unmanaged: dict[str, list[str]]
    draining: list[str]

    @classmethod
    def of(cls, plan: Plan) -> DriftReport:
        def line(rule_owner: str, text: str, reason: str) -> str:
            return f"{rule_owner} {text}  ({reason})"

        return cls(
            namespace=plan.namespace,
            missing={
                "acl": [line(c.rule.principal, c.rule.short(), c.reason) for c in plan.additions],
                "topic": [f"{t.name}  ({t.reason})" for t in plan.topics_to_create],
                "topic_config": [f"{t.name}  ({t.reason})" for t in plan.topics_to_alter],
                "user": [f"{u.user}  ({u.reason})" for u in plan.users_to_create],
                "quota": [f"{q.short()}  ({q.reason})" for q in plan.quotas if q.action == "set"],
            },
            extra={
                "acl": [line(c.rule.principal, c.rule.short(), c.reason) for c in plan.removals],
                "quota": [f"{q.short()}  ({q.reason})" for q in plan.quotas if q.action == "remove"],
            },
            unmanaged={
                "acl": [line(c.rule.principal, c.rule.short(), c.reason) for c in plan.unmanaged],
                "topic": [f"{t.name}  ({t.reason})" for t in plan.topics if t.undeclared],
            },
            draining=[line(c.rule.principal, c.rule.short(), c.reason) for c in plan.draining],
        )

    def count(self, which: dict[str, list[str]]) -> int:
        return sum(len(v) for v in which.values())

    @property
    def in_sync(self) -> bool:
        return not self.count(self.missing) and not self.count(self.extra)

    def render(self) -> str:
        lines = [
            (
                f"Drift in namespace {self.namespace!r}: {self.count(self.missing)} missing, "
                f"{self.count(self.extra)} extra, {self.count(self.unmanaged)} unmanaged, "
                f"{len(self.draining)} draining"
            )
        ]
        for title, groups in (("missing", self.missing), ("extra", self.extra), ("unmanaged", self.unmanaged)):
            for kind, items in groups.items():
                lines += [f"  {title} {kind}: {item}" for item in items]
        lines += [f"  draining acl: {item}" for item in self.draining]
        lines.append("In sync." if self.in_sync else "Out of sync: `concord acl plan` shows how apply would fix it.")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "in_sync": self.in_sync,
            "counts": {
                "missing": self.count(self.missing),
                "extra": self.count(self.extra),
                "unmanaged": self.count(self.unmanaged),
                "draining": len(self.draining),
            },
            "missing": self.missing,
            "extra": self.extra,
            "unmanaged": self.unmanaged,
            "draining": self.draining,
        }


@dataclass(frozen=True)
class DriftMetrics:
    registry: CollectorRegistry
    missing: Gauge
    extra: Gauge
    unmanaged: Gauge
    draining: Gauge
    checked: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> DriftMetrics:
        r = registry or CollectorRegistry()
        labels = ["namespace", "kind"]
        return cls(
            registry=r,
            missing=Gauge(
                "concord_acl_drift_missing",
                "Bindings, topics, configs and users the world calls for that the cluster lacks",
                labels,
                registry=r,
            ),
            extra=Gauge("concord_acl_drift_extra", "Managed bindings the world no longer grants", labels, registry=r),
            unmanaged=Gauge(
                "concord_acl_drift_unmanaged",
                "Bindings of unmanaged principals reaching into the namespace, and undeclared topics",
                labels,
                registry=r,
            ),
            draining=Gauge(
                "concord_acl_drift_draining",
                "Bindings kept until an agency has drained its directives",
                ["namespace"],
                registry=r,
            ),
            checked=Gauge(
                "concord_acl_drift_last_check_timestamp_seconds",
                "When drift was last measured",
                ["namespace"],
                registry=r,
            ),
        )

    def observe(self, report: DriftReport, at: float) -> None:
        ns = report.namespace
        for gauge, groups in (
            (self.missing, report.missing),
            (self.extra, report.extra),
            (self.unmanaged, report.unmanaged),
        ):
            for kind, items in groups.items():
                gauge.labels(ns, kind).set(len(items))
        self.draining.labels(ns).set(len(report.draining))
        self.checked.labels(ns).set(at)

    def write_textfile(self, path: Path) -> None:
        """For node_exporter's textfile collector (written atomically by prometheus_client)."""
        write_to_textfile(str(path), self.registry)
