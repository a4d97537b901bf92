"""The fan-out's own metrics (faust's internals are exported by its own sensor).

Everything is built on one explicit registry (:meth:`FanoutMetrics.create`), the
one faust's Prometheus sensor also uses, so ``/metrics`` on the web port shows both.
Labels are bounded: agency, program, subscriber, MOU, action, cause, reason, stage.

Counters with a ``reason`` are created for every known reason at start (value 0),
so ``rate()`` and ``increase()`` see the first quarantined record, not only the
second, and an alert on a reason exists before that reason ever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.intake import REASONS
from services.core.models import Action, Cause, Directive, ReceiptStatus
from services.core.routing import EntryState, Outcome
from services.core.world import World
from services.fanout.coverage import Coverage, Outstanding

# A LIFT for these causes ends a measure because its time ran out.
TIME_CAUSES = frozenset({Cause.PERIOD_ENDED, Cause.EXPIRED})
STAGES = ("fanout", "receipt")


def unlifted_expiries(states: Iterable[EntryState], answered: Callable[[str], bool],
                      now: datetime) -> dict[tuple[str, str, str], Outstanding]:
    """Measures whose period has ended but that an agency may still hold, by (subscriber, MOU, stage).

    ``stage="fanout"``: the latest directive of a key is still an APPLY whose
    ``valid_until`` has passed — the expiry timer has not issued its LIFT (age:
    since the end of the period).  ``stage="receipt"``: the LIFT for a time-caused
    end was issued but the agency has not signed a receipt for it (age: since the
    LIFT was issued).  Subscribers answer "clear" after ``valid_until`` on their
    own, so this is the audit's EXPIRED_APPLY seen live: the store still holds an
    APPLY that should be gone.
    """
    out: dict[tuple[str, str, str], Outstanding] = {}
    for state in states:
        for d in state.directives.values():
            if d.action is Action.APPLY and d.valid_until is not None and d.valid_until <= now:
                stage, since = "fanout", d.valid_until
            elif d.action is Action.LIFT and d.cause in TIME_CAUSES and not answered(d.directive_id):
                stage, since = "receipt", d.issued_at
            else:
                continue
            o = out.setdefault((d.subscriber, d.mou_id, stage), Outstanding())
            o.count += 1
            o.oldest_seconds = max(o.oldest_seconds, (now - since).total_seconds())
    return out


def world_routes(world: World, now: datetime) -> set[tuple[str, str]]:
    """(subscriber, MOU) pairs in force: their coverage gauges read 0, not "no data", when all is well."""
    return {(agency, mou.mou_id) for mou in world.current_mous(now) for agency in mou.implementing_agencies()}


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
    receipts_caught_up: Gauge
    entries: Gauge
    expired_unlifted: Gauge
    expired_unlifted_age: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> FanoutMetrics:
        r = registry or CollectorRegistry()
        m = cls(
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
            receipts_caught_up=Gauge("concord_fanout_receipts_caught_up",
                                     "1 once the receipt topics have been read to their end since start: "
                                     "until then outstanding counts are too high", registry=r),
            entries=Gauge("concord_fanout_entries", "List entries held by this worker", registry=r),
            expired_unlifted=Gauge(
                "concord_fanout_expired_unlifted",
                "Measures whose period ended that are not yet lifted: stage=fanout, no LIFT issued; "
                "stage=receipt, LIFT issued but not acknowledged", ["subscriber", "mou", "stage"], registry=r),
            expired_unlifted_age=Gauge(
                "concord_fanout_expired_unlifted_seconds",
                "How long the oldest expired-but-not-lifted measure has waited", ["subscriber", "mou", "stage"],
                registry=r),
        )
        for reason in (*REASONS, Outcome.STALE_VERSION.value, Outcome.REPLAYED.value):
            m.quarantine.labels("fanout", reason)
        for outcome in Outcome:
            if outcome is not Outcome.APPLIED:
                m.ignored.labels(outcome.value)
        m.ignored.labels("GAP_FILLED")
        for cause in Cause:
            m.lifts.labels(cause.value)
        return m

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

    def coverage(self, cov: Coverage, unlifted: dict[tuple[str, str, str], Outstanding], *, caught_up: bool,
                 entries: int, routes: Iterable[tuple[str, str]] = ()) -> None:
        """Replace the coverage gauges with one computation's results.

        Every route in force reads 0 when nothing is outstanding; a route that is no
        longer in force and has nothing outstanding disappears.
        """
        zero = Outstanding()
        self.outstanding.clear()
        self.oldest_outstanding.clear()
        for subscriber, mou in {*routes, *cov.outstanding}:
            o = cov.outstanding.get((subscriber, mou), zero)
            self.outstanding.labels(subscriber, mou).set(o.count)
            self.oldest_outstanding.labels(subscriber, mou).set(o.oldest_seconds)
        for status in ReceiptStatus:
            self.receipts.labels(status.value).set(cov.by_status.get(status.value, 0))
        self.expired_unlifted.clear()
        self.expired_unlifted_age.clear()
        keys = {*unlifted, *((s, m, stage) for s, m in routes for stage in STAGES)}
        for subscriber, mou, stage in keys:
            o = unlifted.get((subscriber, mou, stage), zero)
            self.expired_unlifted.labels(subscriber, mou, stage).set(o.count)
            self.expired_unlifted_age.labels(subscriber, mou, stage).set(o.oldest_seconds)
        self.receipts_caught_up.set(1 if caught_up else 0)
        self.entries.set(entries)
