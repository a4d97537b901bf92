"""The subscriber's Prometheus metrics, on an explicit registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.models import Action
from services.core.reasons import RECORD_REASONS
from services.ops.metrics import PurgeMetrics, RegistryMetrics
from services.subscriber.types import CHECK_RESULTS

if TYPE_CHECKING:
    from services.subscriber.service import SubscriberService


@dataclass(frozen=True)
class SubscriberMetrics:
    """The subscriber's metrics on an explicit registry; every series carries the agency.

    Counters are created for every known action, result and refusal reason at start,
    so a first refusal shows in ``rate()`` and alerts can name reasons that have not
    happened yet.  Freshness, the receipts outbox and the connection are read when
    scraped (:meth:`bind`), so they are never stale themselves.
    """

    registry: CollectorRegistry
    applied: Counter
    rejected: Counter
    checks: Counter
    lag: Gauge
    active: Gauge
    apply_latency: Histogram
    freshness: Gauge
    outbox: Gauge
    connected: Gauge
    current: Gauge
    heartbeat_age: Gauge
    clock_offset: Gauge
    purge: PurgeMetrics
    registry_age: RegistryMetrics

    @classmethod
    def create(cls, agency: str, registry: CollectorRegistry | None = None) -> SubscriberMetrics:
        r = registry or CollectorRegistry()
        lbl = {"agency": agency}
        m = cls(
            registry=r,
            applied=Counter(
                "concord_subscriber_directives_total", "Directives applied, by action", ["agency", "action"], registry=r
            ),
            rejected=Counter(
                "concord_subscriber_rejected_total", "Directives refused, by reason", ["agency", "reason"], registry=r
            ),
            checks=Counter(
                "concord_subscriber_checks_total", "Check questions answered", ["agency", "result"], registry=r
            ),
            lag=Gauge("concord_subscriber_lag_records", "Directives not yet read", list(lbl), registry=r),
            active=Gauge(
                "concord_subscriber_active_directives", "Directives in force in the store", list(lbl), registry=r
            ),
            apply_latency=Histogram(
                "concord_subscriber_end_to_end_seconds",
                "From the directive's broker timestamp to its application",
                ["agency"],
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=r,
            ),
            freshness=Gauge(
                "concord_subscriber_freshness_seconds",
                "Seconds since the store last confirmed it had read its whole directive feed "
                "(since start, while it never has)",
                list(lbl),
                registry=r,
            ),
            outbox=Gauge(
                "concord_subscriber_receipts_outbox", "Receipts stored but not yet sent", list(lbl), registry=r
            ),
            connected=Gauge(
                "concord_subscriber_connected",
                "1 while the directive feed is connected to Kafka",
                list(lbl),
                registry=r,
            ),
            current=Gauge(
                "concord_subscriber_current",
                "1 while checks answer restricted or clear; 0 while they "
                "answer unknown (bootstrapping, feed not confirmed, fan-out heartbeat missing, registry stale)",
                list(lbl),
                registry=r,
            ),
            heartbeat_age=Gauge(
                "concord_subscriber_heartbeat_age_seconds",
                "Age, by the broker's stamp, of the oldest latest fan-out heartbeat over the "
                "directive partitions (+Inf while a partition has none)",
                list(lbl),
                registry=r,
            ),
            clock_offset=Gauge(
                "concord_subscriber_clock_offset_seconds",
                "This host's clock minus the broker's, estimated from heartbeats stamped with "
                "LogAppendTime (NaN until measured)",
                list(lbl),
                registry=r,
            ),
            purge=PurgeMetrics.create(r, "subscriber", ("lifted_directives",)),
            registry_age=RegistryMetrics.create(r, "subscriber", agency),
        )
        for action in Action:
            m.applied.labels(agency, action.value)
        for reason in RECORD_REASONS:
            m.rejected.labels(agency, reason.value)
        for result in CHECK_RESULTS:
            m.checks.labels(agency, result)
        m.lag.labels(agency)
        m.active.labels(agency)
        m.apply_latency.labels(agency)
        return m

    def bind(self, svc: SubscriberService) -> None:
        """Read freshness, outbox and connection from ``svc`` whenever the registry is collected."""
        started = svc.clock()

        def freshness() -> float:
            confirmed_at = svc.confirmed_at
            since = confirmed_at if confirmed_at is not None else started
            return max(0.0, svc.clock() - since)

        def heartbeat_age() -> float:
            beats = list(svc.last_heartbeats().values())
            if not beats or None in beats:
                return float("inf")
            return max(0.0, svc.clock() - min(b for b in beats if b is not None))

        self.freshness.labels(svc.agency).set_function(freshness)
        self.outbox.labels(svc.agency).set_function(lambda: float(svc.store.pending_count()))
        self.connected.labels(svc.agency).set_function(lambda: 1.0 if svc.connected else 0.0)
        self.current.labels(svc.agency).set_function(lambda: 1.0 if svc.current(svc.clock()) else 0.0)
        self.heartbeat_age.labels(svc.agency).set_function(heartbeat_age)
        self.clock_offset.labels(svc.agency).set_function(svc.clock_offset)
