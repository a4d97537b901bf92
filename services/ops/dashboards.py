"""The Grafana dashboards, as code: ``make dashboards`` writes ``deploy/grafana/dashboards/*.json``.

Built with grafana-foundation-sdk, Grafana Labs' own SDK generated from Grafana's
dashboard schema: a panel or option this code sets exists in the schema of the
Grafana version the SDK is built for, and ``Dashboard.from_json`` reads the result
back into the same typed model (the tests do, and compare byte for byte with what
is committed).

Every query reads a metric one of Concord's services exports (a test scrapes the
running system and checks each name), through a ``datasource`` variable, so the
dashboards work with whatever the Prometheus data source is called.

    python -m services.ops.dashboards            # write the JSON files
    python -m services.ops.dashboards --check    # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import stat as gstat
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from services.core.reasons import SIGNATURE_REASONS
from services.settings import REPO_ROOT

DASHBOARDS_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["concord"]
SIGNATURES = "|".join(SIGNATURE_REASONS)  # a PromQL regex matching every signature reason
# The fan-out's source topics are <ns>.lists.<agency>: the agency is the last part of the name.


def query(expr: str, legend: str = "", *, instant: bool = False) -> gprom.Dataquery:
    q = gprom.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q.range()


@dataclass(frozen=True)
class Stat:
    """A stat panel of one instant query: green below ``red_from``, red from it (never red when None)."""

    title: str
    description: str
    expr: str
    red_from: float | None = 1.0
    unit: str = "short"


class Layout:
    """Gives panels stable ids (Grafana otherwise numbers them itself, differently each save)."""

    def __init__(self) -> None:
        self.next_id = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def series(
        self,
        title: str,
        description: str,
        queries: list[gprom.Dataquery],
        *,
        unit: str = "short",
        width: int = 12,
        height: int = 8,
        stack: bool = False,
    ) -> gts.Panel:
        p = (
            gts.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .span(width)
            .height(height)
            .fill_opacity(10 if not stack else 40)
            .line_width(1)
            .legend(
                gcommon.VizLegendOptions()
                .show_legend(True)
                .display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM)
                .calcs(["lastNotNull", "max"])
            )
        )
        if stack:
            p = p.stacking(gcommon.StackingConfig().mode(common.StackingMode.NORMAL))
        for i, q in enumerate(queries):
            p = p.with_target(q.ref_id(chr(ord("A") + i)))
        return p

    def stat(
        self,
        title: str,
        description: str,
        queries: list[gprom.Dataquery],
        *,
        unit: str = "short",
        width: int = 4,
        height: int = 4,
        red_from: float | None = 1.0,
    ) -> gstat.Panel:
        steps = [model.Threshold(value=None, color="green")]
        if red_from is not None:
            steps.append(model.Threshold(value=red_from, color="red"))
        p = (
            gstat.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .span(width)
            .height(height)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .reduce_options(gcommon.ReduceDataOptions().calcs(["lastNotNull"]))
            .thresholds(gdash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps))
        )
        for i, q in enumerate(queries):
            p = p.with_target(q.ref_id(chr(ord("A") + i)))
        return p

    def stats(self, d: gdash.Dashboard, stats: list[Stat]) -> gdash.Dashboard:
        """``d`` with one stat panel per entry of ``stats``, in order."""
        for st in stats:
            d = d.with_panel(
                self.stat(st.title, st.description, [query(st.expr, instant=True)], unit=st.unit, red_from=st.red_from)
            )
        return d

    def row(self, title: str) -> gdash.Row:
        return gdash.Row(title).id(self._id())


def _base(uid: str, title: str, description: str) -> gdash.Dashboard:
    return (
        gdash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(gdash.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .link(
            gdash.DashboardLink("Concord")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def exchange_overview() -> model.Dashboard:
    lay = Layout()
    d = _base(
        "concord-overview",
        "Concord — exchange overview",
        "Is every agency publishing, is every directive reaching its agency, what is stuck and why.",
    )
    d = d.with_row(lay.row("Health"))
    d = lay.stats(
        d,
        [
            Stat(
                "Services down",
                "Scrape targets of Concord and the broker that do not answer.",
                'count(up{job=~"concord-.*|kafka-broker"} == 0) or vector(0)',
            ),
            Stat(
                "Fan-out workers",
                "Fan-out processes answering on /metrics.",
                'sum(up{job="concord-fanout"}) or vector(0)',
                red_from=None,
            ),
            Stat(
                "Quarantined (1h)",
                "Records the fan-out refused in the last hour, all reasons.",
                "sum(increase(concord_quarantine_total[1h]))",
            ),
            Stat(
                "Receipts outstanding",
                "Latest directives no agency has acknowledged yet.",
                "sum(concord_fanout_receipts_outstanding)",
                red_from=None,
            ),
            Stat(
                "Expired, not lifted",
                "Measures whose period ended that an agency may still hold.",
                "sum(concord_fanout_expired_unlifted)",
            ),
            Stat(
                "ACL drift",
                "Bindings, topics and users missing or extra on the cluster.",
                "sum(concord_acl_drift_missing) + sum(concord_acl_drift_extra)",
            ),
        ],
    )
    d = d.with_row(lay.row("Flow"))
    d = d.with_panel(
        lay.series(
            "Publish rate per agency",
            "List records admitted by the fan-out, per publishing agency.",
            [query("sum by (agency) (rate(concord_fanout_events_total[$__rate_interval]))", "{{agency}}")],
            unit="reqps",
        )
    )
    d = d.with_panel(
        lay.series(
            "Directives per MOU and subscriber",
            "APPLY and LIFT directives sent, per implementing agency and MOU.",
            [
                query(
                    "sum by (subscriber, mou) (rate(concord_fanout_directives_total[$__rate_interval]))",
                    "{{subscriber}} · {{mou}}",
                )
            ],
            unit="reqps",
        )
    )
    d = d.with_panel(
        lay.series(
            "End-to-end latency (p99)",
            "Record on a list topic to its directives (fan-out), and directive to the agency's store (subscriber).",
            [
                query(
                    "histogram_quantile(0.99, sum by (le) (rate(concord_fanout_processing_seconds_bucket"
                    "[$__rate_interval])))",
                    "fan-out p99",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le, agency) (rate(concord_subscriber_end_to_end_seconds_bucket"
                    "[$__rate_interval])))",
                    "{{agency}} p99",
                ),
            ],
            unit="s",
        )
    )
    d = d.with_panel(
        lay.series(
            "Fan-out work",
            "The longest single round of work of each worker in the last minute (records, expiry, commit), and "
            "entries re-evaluated per second after a change of the MOUs.",
            [
                query("max(concord_fanout_longest_pause_seconds)", "longest pause (s)"),
                query("sum(rate(concord_fanout_reevaluated_total[$__rate_interval]))", "re-evaluated/s"),
                query(
                    'sum(rate(concord_fanout_transactions_total{result="aborted"}[$__rate_interval]))',
                    "aborted transactions/s",
                ),
            ],
        )
    )
    d = d.with_panel(
        lay.series(
            "Consumer lag per agency",
            "Directives an agency's subscriber has not read yet; list records of a publishing agency the fan-out "
            "has not committed yet.",
            [
                query("max by (agency) (concord_subscriber_lag_records)", "{{agency}} (directives)"),
                query("sum by (agency) (concord_fanout_lag_records)", "{{agency}} (list)"),
            ],
        )
    )
    d = d.with_row(lay.row("Enforcement"))
    d = d.with_panel(
        lay.series(
            "Quarantine by reason",
            "Records refused by the fan-out (per minute), by reason.",
            [query("sum by (reason) (rate(concord_quarantine_total[$__rate_interval])) * 60", "{{reason}}")],
            unit="short",
            stack=True,
        )
    )
    d = d.with_panel(
        lay.series(
            "Receipts outstanding",
            "Latest directives without a signed receipt, per implementing agency and MOU.",
            [query("sum by (subscriber, mou) (concord_fanout_receipts_outstanding)", "{{subscriber}} · {{mou}}")],
        )
    )
    d = d.with_panel(
        lay.series(
            "Oldest directive without receipt",
            "Seconds the oldest unacknowledged directive has waited.",
            [query("max by (subscriber) (concord_fanout_receipt_wait_seconds)", "{{subscriber}}")],
            unit="s",
        )
    )
    d = d.with_panel(
        lay.series(
            "Expiries due and not lifted",
            "Entries with a period that will end; measures whose period ended but are not lifted yet (fanout: no "
            "LIFT issued, receipt: LIFT not acknowledged).",
            [
                query("sum(concord_fanout_expiries_pending)", "periods that will end"),
                query("sum by (stage) (concord_fanout_expired_unlifted)", "expired, not lifted ({{stage}})"),
            ],
        )
    )
    d = d.with_panel(
        lay.series(
            "Signature and integrity failures",
            "Refusals for signature reasons, at the fan-out and at subscribers.",
            [
                query(
                    f'sum by (reason) (increase(concord_quarantine_total{{reason=~"{SIGNATURES}"}}[$__rate_interval]))',
                    "fan-out {{reason}}",
                ),
                query(
                    f'sum by (agency, reason) (increase(concord_subscriber_rejected_total{{reason=~"{SIGNATURES}"}}'
                    "[$__rate_interval]))",
                    "{{agency}} {{reason}}",
                ),
            ],
            stack=True,
        )
    )
    d = d.with_panel(
        lay.series(
            "ACL drift",
            "What `concord acl drift` finds: missing and extra are Concord's to fix, unmanaged is reported only.",
            [
                query("sum by (kind) (concord_acl_drift_missing)", "missing {{kind}}"),
                query("sum by (kind) (concord_acl_drift_extra)", "extra {{kind}}"),
                query("sum by (kind) (concord_acl_drift_unmanaged)", "unmanaged {{kind}}"),
            ],
        )
    )
    return d.build()


def agency_view() -> model.Dashboard:
    lay = Layout()
    a = 'agency="$agency"'
    s = 'subscriber="$agency"'
    d = _base(
        "concord-agency",
        "Concord — agency",
        "One agency: what it publishes (adapter, fan-out) and what it implements (directives, store, receipts).",
    )
    d = d.with_variable(
        gdash.QueryVariable("agency")
        .label("Agency")
        .datasource(DATASOURCE)
        .query(
            'label_values({__name__=~"concord_fanout_events_total|concord_subscriber_lag_records|'
            'concord_adapter_inbox_files"}, agency)'
        )
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    d = d.with_row(lay.row("Publishing"))
    d = d.with_panel(
        lay.series(
            "Records admitted by program",
            "The agency's list records the fan-out admitted, per program.",
            [query(f"sum by (program) (rate(concord_fanout_events_total{{{a}}}[$__rate_interval]))", "{{program}}")],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Adapter records by outcome",
            "Records of files finished by the drop-folder adapter (per minute).",
            [
                query(
                    f"sum by (outcome) (rate(concord_adapter_records_total{{{a}}}[$__rate_interval])) * 60",
                    "{{outcome}}",
                )
            ],
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Inbox",
            "Files waiting in the drop folder, and the age of the oldest.",
            [
                query(f"sum(concord_adapter_inbox_files{{{a}}})", "files waiting"),
                query(f"max(concord_adapter_inbox_oldest_seconds{{{a}}})", "oldest (s)"),
            ],
            width=8,
        )
    )
    d = d.with_row(lay.row("Implementing"))
    d = lay.stats(
        d,
        [
            Stat(
                "Store freshness",
                "Seconds since the store last confirmed it read its whole feed.",
                f"max(concord_subscriber_freshness_seconds{{{a}}})",
                unit="s",
                red_from=120,
            ),
            Stat("Lag", "Directives not yet read.", f"max(concord_subscriber_lag_records{{{a}}})", red_from=1000),
            Stat(
                "Active directives",
                "Directives in force in the store.",
                f"max(concord_subscriber_active_directives{{{a}}})",
                red_from=None,
            ),
            Stat(
                "Receipts in outbox",
                "Receipts stored but not sent yet.",
                f"max(concord_subscriber_receipts_outbox{{{a}}})",
                red_from=None,
            ),
            Stat(
                "Without receipt",
                "The agency's latest directives the fan-out has no receipt for.",
                f"sum(concord_fanout_receipts_outstanding{{{s}}})",
                red_from=None,
            ),
            Stat(
                "Expired, not lifted",
                "Measures whose period ended that the agency may still hold.",
                f"sum(concord_fanout_expired_unlifted{{{s}}})",
            ),
        ],
    )
    d = d.with_panel(
        lay.series(
            "Directives sent to the agency",
            "By MOU and action, as the fan-out sent them.",
            [
                query(
                    f"sum by (mou, action) (rate(concord_fanout_directives_total{{{s}}}[$__rate_interval]))",
                    "{{mou}} {{action}}",
                )
            ],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Directives applied and refused",
            "Applied by action, refused by reason, in the agency's store.",
            [
                query(
                    f"sum by (action) (rate(concord_subscriber_directives_total{{{a}}}[$__rate_interval]))",
                    "applied {{action}}",
                ),
                query(
                    f"sum by (reason) (rate(concord_subscriber_rejected_total{{{a}}}[$__rate_interval]))",
                    "refused {{reason}}",
                ),
            ],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Checks answered",
            "Questions the agency's systems asked, by answer.",
            [query(f"sum by (result) (rate(concord_subscriber_checks_total{{{a}}}[$__rate_interval]))", "{{result}}")],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Directive to store latency",
            "Broker timestamp of a directive to its application in the store.",
            [
                query(
                    "histogram_quantile(0.5, sum by (le) (rate(concord_subscriber_end_to_end_seconds_bucket"
                    f"{{{a}}}[$__rate_interval])))",
                    "p50",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le) (rate(concord_subscriber_end_to_end_seconds_bucket"
                    f"{{{a}}}[$__rate_interval])))",
                    "p99",
                ),
            ],
            unit="s",
        )
    )
    d = d.with_panel(
        lay.series(
            "Receipts outstanding by MOU",
            "Unacknowledged directives and the oldest wait, per MOU.",
            [
                query(f"sum by (mou) (concord_fanout_receipts_outstanding{{{s}}})", "{{mou}} count"),
                query(f"max by (mou) (concord_fanout_receipt_wait_seconds{{{s}}})", "{{mou}} oldest (s)"),
            ],
        )
    )
    return d.build()


def broker_view() -> model.Dashboard:
    lay = Layout()
    b = 'job="kafka-broker"'
    d = _base(
        "concord-broker",
        "Concord — Kafka broker",
        "The Kafka broker through the Prometheus JMX exporter (deploy/prometheus/kafka-jmx.yaml).",
    )
    d = d.with_row(lay.row("Partitions and controller"))
    d = lay.stats(
        d,
        [
            Stat("Broker up", "The JMX exporter answers.", f"sum(up{{{b}}}) or vector(0)", red_from=None),
            Stat(
                "Active controller",
                "Exactly one node must be the active controller.",
                "sum(kafka_controller_kafkacontroller_activecontrollercount)",
                red_from=2,
            ),
            Stat(
                "Offline partitions",
                "Partitions without a leader: nobody can read or write them.",
                "sum(kafka_controller_kafkacontroller_offlinepartitionscount)",
            ),
            Stat(
                "Under-replicated",
                "Partitions with fewer in-sync replicas than replicas.",
                "sum(kafka_server_replicamanager_underreplicatedpartitions)",
            ),
            Stat(
                "Under min ISR",
                "Partitions that refuse acks=all writes.",
                "sum(kafka_server_replicamanager_underminisrpartitioncount)",
            ),
            Stat(
                "Partitions",
                "Partitions in the cluster.",
                "sum(kafka_controller_kafkacontroller_globalpartitioncount)",
                red_from=None,
            ),
        ],
    )
    d = d.with_row(lay.row("Traffic"))
    d = d.with_panel(
        lay.series(
            "Bytes in and out",
            "All topics.",
            [
                query("sum(rate(kafka_server_brokertopicmetrics_bytesin_total[$__rate_interval]))", "in"),
                query("sum(rate(kafka_server_brokertopicmetrics_bytesout_total[$__rate_interval]))", "out"),
            ],
            unit="Bps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Messages in per topic",
            "The ten busiest topics.",
            [
                query(
                    "topk(10, sum by (topic) (rate(kafka_server_topic_messagesin_total[$__rate_interval])))",
                    "{{topic}}",
                )
            ],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Failed requests",
            "Produce and fetch requests the broker failed.",
            [
                query(
                    "sum(rate(kafka_server_brokertopicmetrics_failedproducerequests_total[$__rate_interval]))",
                    "produce",
                ),
                query(
                    "sum(rate(kafka_server_brokertopicmetrics_failedfetchrequests_total[$__rate_interval]))", "fetch"
                ),
            ],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_row(lay.row("Requests"))
    d = d.with_panel(
        lay.series(
            "Request rate by type",
            "Requests per second, by API.",
            [query("sum by (request) (rate(kafka_network_requests_total[$__rate_interval]))", "{{request}}")],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Request latency p99",
            "Total time of produce and fetch requests (broker's own percentile).",
            [
                query(
                    'max by (request) (kafka_network_request_total_time_ms{quantile="0.99",'
                    'request=~"Produce|FetchConsumer|Metadata|OffsetCommit"})',
                    "{{request}}",
                )
            ],
            unit="ms",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Request handler and network idle",
            "Below 30% the broker is saturated.",
            [
                query("avg(kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent)", "request handlers"),
                query("avg(kafka_network_socketserver_networkprocessoravgidlepercent)", "network processors"),
            ],
            unit="percentunit",
            width=8,
        )
    )
    d = d.with_row(lay.row("Replication, groups and JVM"))
    d = d.with_panel(
        lay.series(
            "ISR shrinks and expands",
            "Replicas leaving and rejoining the in-sync set.",
            [
                query("sum(rate(kafka_server_replicamanager_isrshrinks_total[$__rate_interval]))", "shrinks"),
                query("sum(rate(kafka_server_replicamanager_isrexpands_total[$__rate_interval]))", "expands"),
            ],
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "Consumer groups",
            "Groups known to the group coordinator, by protocol (the fan-out uses classic).",
            [
                query('sum by (protocol) (kafka_server_group_coordinator_groups{state="all"})', "{{protocol}}"),
                query("sum by (agency) (concord_fanout_lag_records)", "fan-out lag {{agency}}"),
            ],
            width=8,
        )
    )
    d = d.with_panel(
        lay.series(
            "JVM heap and GC",
            "Heap used by the broker, and the share of time in garbage collection.",
            [
                query(f'sum(jvm_memory_used_bytes{{area="heap",{b}}})', "heap used"),
                query(f"sum(rate(jvm_gc_collection_seconds_sum{{{b}}}[$__rate_interval]))", "GC (s/s)"),
            ],
            unit="bytes",
            width=8,
        )
    )
    return d.build()


DASHBOARDS: dict[str, Callable[[], model.Dashboard]] = {
    "concord-overview.json": exchange_overview,
    "concord-agency.json": agency_view,
    "concord-broker.json": broker_view,
}


def render(dashboard: model.Dashboard) -> str:
    """The file text: the SDK's JSON encoding, keys sorted, so regenerating gives the same bytes."""
    return json.dumps(dashboard, cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def round_trip(text: str) -> str:
    """Read a dashboard file into the SDK's model and render it again."""
    return render(model.Dashboard.from_json(json.loads(text)))


def expressions(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of a dashboard JSON document."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels") or [])

    for p in panels(doc.get("panels") or []):
        for t in p.get("targets") or []:
            if t.get("expr"):
                yield f"{doc['uid']}: {p.get('title')} [{t.get('refId')}]", t["expr"]
    for v in (doc.get("templating") or {}).get("list") or []:
        if v.get("type") == "query" and isinstance(v.get("query"), str):
            yield f"{doc['uid']}: variable {v['name']}", v["query"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.ops.dashboards", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DASHBOARDS_DIR)
    p.add_argument("--check", action="store_true", help="exit 1 if the files differ from what the code generates")
    args = p.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run `make dashboards`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
