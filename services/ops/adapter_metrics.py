"""Metrics of a drop-folder adapter (``concord adapter run --metrics-port``), read from its inbox.

The adapter already writes a durable account of every file it finished:
``DIR/done/NAME.result.json`` and ``DIR/failed/NAME.result.json`` with
``accepted``, ``rejected`` and ``already_published`` (see
:mod:`services.adapter.inbox`).  The counters here are sums over those result
files, read when Prometheus scrapes, so they survive restarts of the adapter and
need no hook in the publishing path; each result file is parsed once and
remembered by name and modification time.  Files waiting in ``DIR`` are counted
with the inbox's own rule of which names are complete.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.adapter.inbox import Inbox
from services.governance.registry import RegistryWatch
from services.ops.metrics import RegistryMetrics

OUTCOMES = ("published", "rejected", "already_published")
_FIELDS = {"published": "accepted", "rejected": "rejected", "already_published": "already_published"}
RESULT_SUFFIX = ".result.json"


class InboxCollector(Collector):
    """Counters and gauges of one agency's inbox, computed at collection time."""

    def __init__(self, agency: str, root: Path) -> None:
        self.agency = agency
        self.inbox = Inbox(root)
        self._seen: dict[Path, tuple[float, dict[str, object]]] = {}
        self._listed: set[Path] = set()
        self._lock = threading.Lock()

    def _results(self, folder: Path) -> Iterator[dict[str, object]]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        listed = self._listed
        for e in entries:
            if not e.name.endswith(RESULT_SUFFIX) or e.name.startswith("."):
                continue
            path = Path(e.path)
            listed.add(path)
            try:
                mtime = e.stat().st_mtime
            except FileNotFoundError:
                continue
            known = self._seen.get(path)
            if known is None or known[0] != mtime:
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # being replaced, or not ours
                known = self._seen[path] = (mtime, data if isinstance(data, dict) else {})
            yield known[1]

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        with self._lock:
            records = dict.fromkeys(OUTCOMES, 0)
            files = {"done": 0, "failed": 0}
            last = 0.0
            present = set(self._seen)
            self._listed = set()
            for status, folder in (("done", self.inbox.done), ("failed", self.inbox.failed)):
                for res in self._results(folder):
                    files[status] += 1
                    for outcome, key in _FIELDS.items():
                        value = res.get(key)
                        records[outcome] += value if isinstance(value, int) else 0
                    last = max(last, _epoch(res.get("published_at")))
            for gone in present - self._listed:
                del self._seen[gone]
            waiting = self._waiting()
        now = time.time()
        c = CounterMetricFamily(
            "concord_adapter_records", "Records of finished inbox files, by outcome", labels=["agency", "outcome"]
        )
        for outcome, n in records.items():
            c.add_metric([self.agency, outcome], n)
        yield c
        c = CounterMetricFamily(
            "concord_adapter_files",
            "Inbox files finished: done (published) or failed (unreadable)",
            labels=["agency", "status"],
        )
        for status, n in files.items():
            c.add_metric([self.agency, status], n)
        yield c
        g = GaugeMetricFamily("concord_adapter_inbox_files", "Complete files waiting in the inbox", labels=["agency"])
        g.add_metric([self.agency], len(waiting))
        yield g
        g = GaugeMetricFamily(
            "concord_adapter_inbox_oldest_seconds",
            "Age of the oldest file waiting in the inbox (0 when empty)",
            labels=["agency"],
        )
        g.add_metric([self.agency], max(0.0, now - min(waiting)) if waiting else 0.0)
        yield g
        g = GaugeMetricFamily(
            "concord_adapter_last_file_timestamp_seconds",
            "When the adapter last finished a file (0: never)",
            labels=["agency"],
        )
        g.add_metric([self.agency], last)
        yield g

    def _waiting(self) -> list[float]:
        """Modification times of the complete files waiting."""
        out = []
        for path in self._ready():
            try:
                out.append(path.stat().st_mtime)
            except FileNotFoundError:
                continue
        return out

    def _ready(self) -> list[Path]:
        try:
            return self.inbox.ready()
        except FileNotFoundError:
            return []


def _epoch(value: object) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0


def inbox_registry(agency: str, inbox: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(InboxCollector(agency, inbox))
    return registry


def serve_inbox_metrics(
    agency: str, inbox: Path, port: int, host: str = "127.0.0.1", registry: RegistryWatch | None = None
) -> int:
    """Serve the inbox's metrics on ``/metrics`` and ``/healthz`` from a daemon thread; return the port bound.

    With the signed ``registry`` followed, its age is exported too, and ``/healthz`` answers 503
    ``degraded`` with the reason while it is stale (the adapter then publishes nothing)."""
    from services.fanout.web import serve

    metrics = inbox_registry(agency, inbox)
    if registry is not None:
        RegistryMetrics.create(metrics, "adapter", agency).bind(registry)

    def health() -> tuple[int, dict[str, object]]:
        doc: dict[str, object] = {"status": "ok", "agency": agency}
        if registry is not None:
            status = registry.status()
            doc["registry"] = status.to_json()
            if not status.fresh:
                doc.update(status="degraded", detail=f"not publishing: {status.reason}")
                return 503, doc
        return 200, doc

    server = serve(host, port, metrics, {"/healthz": health})
    return int(server.server_address[1])
