"""The fan-out's metrics, on one explicit registry (:meth:`FanoutMetrics.create`).

Labels are bounded: agency, program, subscriber, MOU, action, cause, reason, stage,
status, result.  Counters with a ``reason`` are created for every known reason at
start (value 0), so ``rate()`` and ``increase()`` see the first quarantined record, not
only the second, and an alert on a reason exists before that reason ever happens.

The gauges are set from counts the state partitions keep as they change
(:class:`services.fanout.store.Counters`), never by walking the entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.core.models import Action, Cause, Directive, ReceiptStatus
from services.core.principals import FANOUT
from services.core.reasons import RECORD_REASONS
from services.core.routing import Outcome
from services.core.world import World
from services.fanout.store import STAGE_RECEIPT, STAGE_TIME_LIFT
from services.ops.metrics import PurgeMetrics, RegistryMetrics

# A LIFT for these causes ends a measure because its time ran out.
TIME_CAUSES = frozenset({Cause.PERIOD_ENDED, Cause.EXPIRED})
# The stages of concord_fanout_expired_unlifted: no LIFT issued yet, or issued and not acknowledged.
STAGES = ("fanout", "receipt")


def world_routes(world: World, at: datetime) -> set[tuple[str, str]]:
    """(subscriber, MOU) pairs in force: their coverage gauges read 0, not "no data", when all is well."""
    return {(agency, mou.mou_id) for mou in world.current_mous(at) for agency in mou.implementing_agencies()}


# Label children looked up once per (metrics object, labels): a lookup costs more than the increment.
_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


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
    receipts: Counter
    receipts_refused: Counter
    superseded: Counter
    receipts_caught_up: Gauge
    entries: Gauge
    expired_unlifted: Gauge
    expired_unlifted_age: Gauge
    lag: Gauge
    longest_pause: Gauge
    reevaluated: Counter
    reevaluating: Gauge
    transactions: Counter
    purge: PurgeMetrics
    registry_age: RegistryMetrics

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> FanoutMetrics:
        r = registry or CollectorRegistry()
        m = cls(
            registry=r,
            events_in=Counter(
                "concord_fanout_events_total",
                "List records admitted, by agency and program",
                ["agency", "program"],
                registry=r,
            ),
            directives_out=Counter(
                "concord_fanout_directives_total", "Directives sent", ["subscriber", "mou", "action"], registry=r
            ),
            lifts=Counter("concord_fanout_lifts_total", "LIFT directives sent, by cause", ["cause"], registry=r),
            quarantine=Counter(
                "concord_quarantine_total", "Records sent to quarantine, by reason", ["component", "reason"], registry=r
            ),
            processing_latency=Histogram(
                "concord_fanout_processing_seconds",
                "From the record's broker timestamp to the commit of its directives",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=r,
            ),
            due=Gauge("concord_fanout_expiries_pending", "Entries with a period that will end", registry=r),
            ignored=Counter(
                "concord_fanout_ignored_total",
                "Records not applied: older or repeated versions, redeliveries",
                ["reason"],
                registry=r,
            ),
            outstanding=Gauge(
                "concord_fanout_receipts_outstanding",
                "Latest directives with no receipt yet",
                ["subscriber", "mou"],
                registry=r,
            ),
            oldest_outstanding=Gauge(
                "concord_fanout_receipt_wait_seconds",
                "Age of the oldest directive still without a receipt",
                ["subscriber", "mou"],
                registry=r,
            ),
            receipts=Counter(
                "concord_fanout_receipts_total", "Signed receipts read, by status", ["status"], registry=r
            ),
            receipts_refused=Counter(
                "concord_fanout_receipts_refused_total",
                "Receipts ignored: bad signature, undecodable, or another agency's",
                registry=r,
            ),
            superseded=Counter(
                "concord_fanout_superseded_total",
                "Directives replaced by a newer one of their key before their receipt came",
                registry=r,
            ),
            receipts_caught_up=Gauge(
                "concord_fanout_receipts_caught_up",
                "1 once the receipt topics have been read to their end since start: "
                "until then outstanding counts are too high",
                registry=r,
            ),
            entries=Gauge("concord_fanout_entries", "List entries held by this worker", registry=r),
            expired_unlifted=Gauge(
                "concord_fanout_expired_unlifted",
                "Measures whose period ended that are not yet lifted: stage=fanout, no LIFT issued; "
                "stage=receipt, LIFT issued but not acknowledged",
                ["subscriber", "mou", "stage"],
                registry=r,
            ),
            expired_unlifted_age=Gauge(
                "concord_fanout_expired_unlifted_seconds",
                "How long the oldest expired-but-not-lifted measure has waited",
                ["subscriber", "mou", "stage"],
                registry=r,
            ),
            lag=Gauge(
                "concord_fanout_lag_records",
                "List records not yet routed, by publishing agency",
                ["agency"],
                registry=r,
            ),
            longest_pause=Gauge(
                "concord_fanout_longest_pause_seconds",
                "The longest single round of work in the last 60 s (records, expiry, commit)",
                registry=r,
            ),
            reevaluated=Counter(
                "concord_fanout_reevaluated_total",
                "Entries re-evaluated after a change of the world or of the MOUs in force",
                registry=r,
            ),
            reevaluating=Gauge(
                "concord_fanout_reevaluating_partitions",
                "State partitions whose entries are being re-evaluated",
                registry=r,
            ),
            transactions=Counter(
                "concord_fanout_transactions_total", "Kafka transactions, by result", ["result"], registry=r
            ),
            purge=PurgeMetrics.create(r, "fanout", ("ended_entries",)),
            registry_age=RegistryMetrics.create(r, "fanout", FANOUT),
        )
        for reason in RECORD_REASONS:
            m.quarantine.labels("fanout", reason.value)
        for outcome in Outcome:
            if outcome is not Outcome.APPLIED:
                m.ignored.labels(outcome.value)
        for cause in Cause:
            m.lifts.labels(cause.value)
        for status in ReceiptStatus:
            m.receipts.labels(status.value)
        for result in ("committed", "aborted"):
            m.transactions.labels(result)
        return m

    def event_in(self, agency: str, program: str) -> None:
        self.events_in.labels(agency, program).inc()

    def directive_out(self, d: Directive) -> None:
        key = (d.subscriber, d.mou_id, d.action.value)
        child = _CHILDREN.get((id(self), key))
        if child is None:
            child = _CHILDREN[(id(self), key)] = self.directives_out.labels(*key)
        child.inc()
        if d.action is Action.LIFT:
            self.lifts.labels(d.cause.value).inc()

    def quarantined(self, reason: str) -> None:
        self.quarantine.labels("fanout", reason).inc()

    def set_gauges(
        self,
        *,
        world: World,
        entries: int,
        deadlines: int,
        outstanding: dict[str, int],
        oldest: dict[str, float],
        overdue: dict[tuple[str, str], tuple[int, float]],
        lag: dict[str, int],
        caught_up: bool,
        sweeping: int,
    ) -> None:
        """Replace the gauges with the counts the state partitions keep.

        ``outstanding`` and ``oldest`` are keyed ``subscriber\\0mou\\0stage``; ``overdue`` counts, per
        (subscriber, MOU), APPLYs whose period ended and whose LIFT is not issued yet (the due part
        of the expiry index, read every tick: anything left there means the fan-out is behind).
        Every route in force reads 0 when nothing is outstanding; a route no longer in force with
        nothing outstanding disappears.
        """
        routes = world_routes(world, datetime.now(UTC))
        per_route: dict[tuple[str, str], tuple[int, float]] = {}
        unlifted: dict[tuple[str, str, str], tuple[int, float]] = {}
        for bucket, n in outstanding.items():
            subscriber, mou, stage = bucket.split("\x00")
            age = oldest.get(bucket, 0.0)
            count, older = per_route.get((subscriber, mou), (0, 0.0))
            per_route[(subscriber, mou)] = (count + n, max(older, age))
            if stage == STAGE_TIME_LIFT:
                unlifted[(subscriber, mou, "receipt")] = (n, age)
            elif stage != STAGE_RECEIPT:
                raise ValueError(f"unknown stage {stage!r}")
        for (subscriber, mou), figures in overdue.items():
            unlifted[(subscriber, mou, "fanout")] = figures
        self.outstanding.clear()
        self.oldest_outstanding.clear()
        for subscriber, mou in {*routes, *per_route}:
            count, age = per_route.get((subscriber, mou), (0, 0.0))
            self.outstanding.labels(subscriber, mou).set(count)
            self.oldest_outstanding.labels(subscriber, mou).set(age)
        self.expired_unlifted.clear()
        self.expired_unlifted_age.clear()
        for subscriber, mou in routes:
            for stage in STAGES:
                count, age = unlifted.get((subscriber, mou, stage), (0, 0.0))
                self.expired_unlifted.labels(subscriber, mou, stage).set(count)
                self.expired_unlifted_age.labels(subscriber, mou, stage).set(age)
        for (subscriber, mou, stage), (count, age) in unlifted.items():
            if (subscriber, mou) not in routes:
                self.expired_unlifted.labels(subscriber, mou, stage).set(count)
                self.expired_unlifted_age.labels(subscriber, mou, stage).set(age)
        self.due.set(deadlines)
        self.entries.set(entries)
        for agency, n in lag.items():
            self.lag.labels(agency).set(n)
        self.receipts_caught_up.set(1 if caught_up else 0)
        self.reevaluating.set(sweeping)
