"""The fan-out's own metrics (faust's internals are exported by its own sensor)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.models import Action, Directive


@dataclass(frozen=True)
class FanoutMetrics:
    registry: CollectorRegistry
    events_in: Counter
    directives_out: Counter
    lifts: Counter
    quarantine: Counter
    processing_latency: Histogram
    due: Gauge
    ignored: Counter
    outstanding: Gauge
    oldest_outstanding: Gauge
    receipts: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> FanoutMetrics:
        r = registry or CollectorRegistry()
        return cls(
            registry=r,
            events_in=Counter("concord_fanout_events_total", "List records admitted, by agency and program",
                              ["agency", "program"], registry=r),
            directives_out=Counter("concord_fanout_directives_total", "Directives sent",
                                   ["subscriber", "mou", "action"], registry=r),
            lifts=Counter("concord_fanout_lifts_total", "LIFT directives sent, by cause", ["cause"], registry=r),
            quarantine=Counter("concord_quarantine_total", "Records sent to quarantine, by reason",
                               ["component", "reason"], registry=r),
            processing_latency=Histogram(
                "concord_fanout_processing_seconds", "From the record's broker timestamp to its directives",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r),
            due=Gauge("concord_fanout_expiries_pending", "Entries with a period that will end", registry=r),
            ignored=Counter("concord_fanout_ignored_total",
                            "Records not applied: older or repeated versions, redeliveries", ["reason"], registry=r),
            outstanding=Gauge("concord_fanout_receipts_outstanding", "Latest directives with no receipt yet",
                              ["subscriber", "mou"], registry=r),
            oldest_outstanding=Gauge("concord_fanout_receipt_wait_seconds",
                                     "Age of the oldest directive still without a receipt", ["subscriber", "mou"],
                                     registry=r),
            receipts=Gauge("concord_fanout_receipts", "Latest directives answered, by receipt status",
                           ["status"], registry=r),
        )

    def event_in(self, agency: str, program: str) -> None:
        self.events_in.labels(agency, program).inc()

    def directive_out(self, d: Directive) -> None:
        self.directives_out.labels(d.subscriber, d.mou_id, d.action.value).inc()
        if d.action is Action.LIFT:
            self.lifts.labels(d.cause.value).inc()

    def quarantined(self, reason: str) -> None:
        self.quarantine.labels("fanout", reason).inc()

    def latency(self, broker_ts: float, now: datetime) -> None:
        self.processing_latency.observe(max(0.0, now.timestamp() - broker_ts))

    def expiries_due(self, n: int) -> None:
        self.due.set(n)
