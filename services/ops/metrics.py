"""Prometheus helpers shared by the services.

Every service builds its metrics on an explicit :class:`CollectorRegistry`, so tests
get a fresh one and two services in one process never collide.  Labels are bounded
sets (agency, program, MOU, measure, reason), never a subject's identifier.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "CollectorRegistry", "PurgeMetrics", "exposition"]


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
            purged=Counter("concord_purged_total", "Records of ended listings purged by retention, by class",
                           ["component", "data_class"], registry=registry),
            last_run=Gauge("concord_purge_last_run_timestamp_seconds", "When the retention purge last ran",
                           ["component"], registry=registry),
        )
        for data_class in data_classes:
            m.purged.labels(component, data_class)
        return m
