"""Prometheus helpers shared by the services.

Every service builds its metrics on an explicit :class:`CollectorRegistry`, so tests
get a fresh one and two services in one process never collide.  Labels are bounded
sets (agency, program, MOU, measure, reason), never a subject's identifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from services.governance.registry import RegistryWatch

__all__ = ["CONTENT_TYPE_LATEST", "CollectorRegistry", "PurgeMetrics", "RegistryMetrics", "exposition"]


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


@dataclass(frozen=True)
class PurgeMetrics:
    """What each service's retention purge reports: counts (never identifiers) and when it last ran,
    which the ConcordPurgeNotRunning alert watches."""

    purged: Counter
    last_run: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, component: str, data_classes: tuple[str, ...]) -> PurgeMetrics:
        m = cls(
            purged=Counter(
                "concord_purged_total",
                "Records of ended listings purged by retention, by class",
                ["component", "data_class"],
                registry=registry,
            ),
            last_run=Gauge(
                "concord_purge_last_run_timestamp_seconds",
                "When the retention purge last ran",
                ["component"],
                registry=registry,
            ),
        )
        for data_class in data_classes:
            m.purged.labels(component, data_class)
        return m


@dataclass(frozen=True)
class RegistryMetrics:
    """How current the signed registry a service acts on is, read from its watch when scraped: the
    ConcordRegistryStale alert watches ``concord_registry_stale``."""

    stale: Gauge
    age: Gauge
    serial: Gauge
    component: str
    principal: str

    @classmethod
    def create(cls, registry: CollectorRegistry, component: str, principal: str) -> RegistryMetrics:
        labels = ["component", "principal"]
        return cls(
            stale=Gauge(
                "concord_registry_stale",
                "1 while the signed registry in hand is missing or older than its "
                "maximum age (the service fails closed), else 0",
                labels,
                registry=registry,
            ),
            age=Gauge(
                "concord_registry_age_seconds",
                "Age of the registry publication in hand (+Inf: none)",
                labels,
                registry=registry,
            ),
            serial=Gauge(
                "concord_registry_serial",
                "Serial of the registry publication in hand (0: none)",
                labels,
                registry=registry,
            ),
            component=component,
            principal=principal,
        )

    def bind(self, watch: RegistryWatch) -> None:
        def stale() -> float:
            return 0.0 if watch.status().fresh else 1.0

        def age() -> float:
            st = watch.status()
            return st.age if st.age is not None else float("inf")

        def serial() -> float:
            snapshot = watch.snapshot
            return float(snapshot.serial) if snapshot is not None else 0.0

        labels = (self.component, self.principal)
        self.stale.labels(*labels).set_function(stale)
        self.age.labels(*labels).set_function(age)
        self.serial.labels(*labels).set_function(serial)
