"""Prometheus helpers shared by the services.

Every service builds its metrics on an explicit :class:`CollectorRegistry`, so tests
get a fresh one and two services in one process never collide.  Labels are bounded
sets (agency, program, MOU, measure, reason), never a subject's identifier.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "CollectorRegistry", "exposition"]


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
