"""Every metric a dashboard panel or an alert rule names is exported by the running system.

A whole exchange runs on the session broker (which carries the JMX exporter agent):
the fan-out, one subscriber per implementing agency, a drop-folder adapter for the
court and the ACL drift check, each registered as a Prometheus file_sd target the
way ``make run`` registers them.  The demo scenario's records and one row that
fails validation go through the adapter's inbox, and one unsigned record straight
to the court's list topic, so the series that only appear after an event exist.
Then every target is scraped once, as Prometheus would; and a real Prometheus
(``make observe``'s) is pointed at the same file_sd lists and must find every
target up.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from services.demo import delisting_record, fresh_subjects, listing_records
from services.localstack import LocalStack, free_port
from services.ops.observe import Prometheus
from tests.conftest import KafkaCluster
from tests.observability import SYNTHETIC, dashboard_queries, metric_names, promtool_check_expressions, rule_queries
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def scrape(address: str) -> dict[str, float]:
    """Sample name -> sum of its values, from one scrape of ``address``'s /metrics."""
    r = httpx.get(f"http://{address}/metrics", timeout=15)
    r.raise_for_status()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def drop(inbox: Path, name: str, lines: list[str]) -> dict[str, object]:
    part = inbox / f"{name}.part"
    part.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    part.rename(inbox / name)
    result = inbox / "done" / f"{name}.result.json"
    wait_for(f"the adapter to finish {name}", result.exists, timeout=60, every=0.5)
    return dict(json.loads(result.read_text()))


def publish_unsigned(stack: LocalStack) -> None:
    """A record without signature headers on the court's own topic: the fan-out must quarantine it."""
    topic = stack.world.topic_name("lists", "court", namespace=stack.namespace)

    async def go() -> None:
        producer = AIOKafkaProducer(**stack.access("court").aiokafka_kwargs(), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=b"unsigned-1", value=b"not a signed record")
        finally:
            await producer.stop()

    asyncio.run(go())


def test_every_metric_of_every_dashboard_and_alert_is_exported(
    exchange: LocalStack, kafka_cluster: KafkaCluster, tmp_path: Path
) -> None:
    broker = kafka_cluster.embedded
    if broker is None or broker.metrics_address is None:
        pytest.skip("needs the embedded broker with its JMX exporter (not an external cluster)")
    exchange.register_scrape_target("broker", broker.metrics_address)
    inbox = exchange.home / "inbox" / "court"
    exchange.start_adapter("court", inbox)
    exchange.start_drift(interval=5)

    subjects = fresh_subjects(random.Random())
    run = f"m{random.randrange(10**6):06d}"
    now = datetime.now(UTC)
    listings = listing_records(subjects, run, now, now + timedelta(seconds=2))
    bad = {**listings[0], "event_id": f"court:{run}-bad:1", "entry_id": f"{run}-bad", "program": "tax.unknown"}
    first = drop(inbox, "listings.jsonl", [json.dumps(r) for r in [*listings, bad]])
    assert (first["accepted"], first["rejected"]) == (2, 1)
    second = drop(inbox, "delisting.jsonl", [json.dumps(delisting_record(subjects, run, now, listings[0]))])
    assert second["accepted"] == 1
    publish_unsigned(exchange)

    targets = exchange.scrape_targets()
    assert {"fanout", "broker", "adapter-court", "drift"} <= set(targets)
    assert {f"subscriber-{a.agency_id}" for a in exchange.world.implementers()} <= set(targets)
    fanout, drift = targets["fanout"], targets["drift"]
    awaited: list[tuple[str, Callable[[], bool]]] = [
        ("the fan-out to admit 3 records", lambda: scrape(fanout).get("concord_fanout_events_total", 0) >= 3),
        ("the unsigned record in quarantine", lambda: scrape(fanout).get("concord_quarantine_total", 0) >= 1),
        ("the delisting and expiry lifts", lambda: scrape(fanout).get("concord_fanout_lifts_total", 0) >= 2),
        ("the receipt view", lambda: scrape(fanout).get("concord_fanout_receipts_caught_up") == 1),
        ("the first drift check", lambda: "concord_acl_drift_missing" in scrape(drift)),
    ]
    for what, reached in awaited:
        wait_for(what, reached, timeout=90, every=0.5)

    exported: dict[str, set[str]] = {}
    for name, address in targets.items():
        for sample in scrape(address):
            exported.setdefault(sample, set()).add(name)

    queries = [*dashboard_queries(), *rule_queries()]
    missing = sorted(
        {(n, where) for where, expr in queries for n in metric_names(expr) - SYNTHETIC if n not in exported}
    )
    assert missing == [], "named by a dashboard or rule but exported by no service: " + "\n".join(
        f"{n}  ({where})" for n, where in missing
    )
    promtool_check_expressions(queries, tmp_path)

    # Prometheus itself, configured as `make observe` configures it, finds every target up.
    prom = Prometheus(exchange.home, free_port(), scrape_interval="1s")
    prom.start()
    try:

        def all_up() -> bool:
            up = {r["metric"]["service"]: r["value"][1] for r in prom.query("up")}
            return set(up) == set(targets) and set(up.values()) == {"1"}

        wait_for("Prometheus to scrape every target", all_up, timeout=60, every=0.5)
        jobs = {r["metric"]["job"] for r in prom.query("up")}
        assert jobs == {"concord-fanout", "concord-subscriber", "concord-adapter", "concord-drift", "kafka-broker"}
        assert prom.query('concord_adapter_records_total{outcome="rejected"} == 1')
    finally:
        prom.stop()
