"""Dashboards, alert rules and the metrics they read, without a broker.

promtool (Debian's prometheus package, `make prometheus`) checks and unit-tests the
rules; the dashboards are regenerated and compared byte for byte with what is
committed, and read back through grafana-foundation-sdk's own dashboard model.
Which metrics the running system really exports is checked by
tests/integration/test_metrics_exported.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from services.core.reasons import RECORD_REASONS, SIGNATURE_REASONS
from services.embedded.broker import EmbeddedKafka
from services.embedded.libs import JMX_EXPORTER_JAR
from services.fanout.metrics import FanoutMetrics
from services.governance.drift import DriftMetrics
from services.localstack import LocalStack
from services.ops.adapter_metrics import inbox_registry
from services.ops.dashboards import DASHBOARDS, DASHBOARDS_DIR, rendered, round_trip
from services.ops.metrics import exposition
from services.ops.observe import prometheus_config
from services.subscriber.metrics import SubscriberMetrics
from tests.observability import (
    ALERT_TESTS,
    ALERTS,
    REPO_ROOT,
    alert_rules,
    dashboard_queries,
    metric_names,
    promtool,
    promtool_check_expressions,
    rule_queries,
)
from tests.unit.factories import NOW, real_world

pytestmark = pytest.mark.unit

WORLD = real_world()


def _promtool(*args: str) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


# --- alert rules -------------------------------------------------------------------


def test_promtool_checks_the_alert_rules() -> None:
    out = _promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", str(ALERT_TESTS))


def test_every_alert_is_shown_firing_and_quiet_by_its_unit_tests() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {str(r["alert"]) for r in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_the_local_scrape_config_is_valid_for_any_home(tmp_path: Path) -> None:
    _promtool("check", "config", str(REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"))
    conf = prometheus_config(tmp_path / "home", scrape_interval="2s")
    files = [f for job in conf["scrape_configs"] for sd in job["file_sd_configs"] for f in sd["files"]]
    assert all(f.startswith(str(tmp_path / "home" / "run" / "scrape") + "/") for f in files)
    assert {job["job_name"] for job in conf["scrape_configs"]} == {
        "concord-fanout",
        "concord-subscriber",
        "concord-adapter",
        "concord-drift",
        "kafka-broker",
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf))
    _promtool("check", "config", str(path))


# --- dashboards ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_dashboards_are_exactly_what_the_code_generates(name: str) -> None:
    committed = (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
    assert committed == rendered()[name], "run `make dashboards` and commit the result"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboards_round_trip_through_the_sdk_model(name: str) -> None:
    committed = (DASHBOARDS_DIR / name).read_text(encoding="utf-8")
    assert round_trip(committed) == committed
    doc = json.loads(committed)
    assert doc["uid"] and doc["title"] and doc["panels"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))


def test_the_agency_view_has_an_agency_variable_used_by_its_panels() -> None:
    doc = json.loads((DASHBOARDS_DIR / "concord-agency.json").read_text())
    assert [v["name"] for v in doc["templating"]["list"]] == ["datasource", "agency"]
    targets = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert targets and all("$agency" in e for e in targets)


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    queries = list(dashboard_queries())
    assert len(queries) > 40
    for where, expr in queries:
        assert metric_names(expr), f"{where}: names no metric: {expr}"
    promtool_check_expressions(queries, tmp_path)


def test_every_metric_a_dashboard_or_rule_names_is_defined_by_a_service() -> None:
    """Concord's own names, against fresh registries (the broker's are checked live)."""
    registries = [
        FanoutMetrics.create().registry,
        SubscriberMetrics.create("aviation").registry,
        DriftMetrics.create().registry,
        inbox_registry("court", REPO_ROOT / "no-such-inbox"),
    ]
    defined = set()
    for reg in registries:
        for fam in reg.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(fam.type, ("",))
            defined |= {fam.name + s for s in suffixes}
    used = {n for _, e in [*dashboard_queries(), *rule_queries()] for n in metric_names(e)}
    ours = {n for n in used if n.startswith("concord_")}
    assert ours - defined == set()  # the broker's are checked against the live system


# --- the metrics themselves ------------------------------------------------------------


def test_coverage_gauges_read_zero_for_every_route_in_force() -> None:
    m = FanoutMetrics.create()
    m.set_gauges(
        world=WORLD,
        entries=3,
        deadlines=1,
        outstanding={"rail\x00mou-judgment-defaulters\x00receipt": 2},
        oldest={"rail\x00mou-judgment-defaulters\x00receipt": 40.0},
        overdue={},
        lag={"court": 0},
        caught_up=True,
        sweeping=0,
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(exposition(m.registry).decode())
        for s in fam.samples
    }
    assert (
        samples[("concord_fanout_receipts_outstanding", (("mou", "mou-judgment-defaulters"), ("subscriber", "rail")))]
        == 2
    )
    assert (
        samples[("concord_fanout_receipt_wait_seconds", (("mou", "mou-judgment-defaulters"), ("subscriber", "rail")))]
        == 40
    )
    assert (
        samples[
            ("concord_fanout_receipts_outstanding", (("mou", "mou-judgment-defaulters"), ("subscriber", "aviation")))
        ]
        == 0
    )
    for stage in ("fanout", "receipt"):
        assert (
            samples[
                (
                    "concord_fanout_expired_unlifted",
                    (("mou", "mou-judgment-defaulters"), ("stage", stage), ("subscriber", "aviation")),
                )
            ]
            == 0
        )
    assert samples[("concord_fanout_receipts_caught_up", ())] == 1
    assert samples[("concord_quarantine_total", (("component", "fanout"), ("reason", "FORGED")))] == 0
    assert samples[("concord_quarantine_total", (("component", "fanout"), ("reason", "WRONG_PARTITION")))] == 0


def test_subscriber_metrics_exist_before_anything_happens() -> None:
    m = SubscriberMetrics.create("aviation", CollectorRegistry())
    text = exposition(m.registry).decode()
    assert 'concord_subscriber_rejected_total{agency="aviation",reason="TAMPERED"} 0.0' in text
    assert 'concord_subscriber_directives_total{action="LIFT",agency="aviation"} 0.0' in text


def test_every_refusal_reason_has_its_series_before_any_refusal() -> None:
    """An alert on a reason works before that reason first happens, for every code a record is refused for."""
    series = {
        (s.name, s.labels.get("reason"))
        for registry in (FanoutMetrics.create().registry, SubscriberMetrics.create("rail").registry)
        for fam in text_string_to_metric_families(exposition(registry).decode())
        for s in fam.samples
    }
    for reason in RECORD_REASONS:
        assert ("concord_quarantine_total", reason.value) in series, reason
        assert ("concord_subscriber_rejected_total", reason.value) in series, reason
    assert ("concord_subscriber_rejected_total", "UNKNOWN_TOPIC") in series


def test_the_signature_alerts_name_exactly_the_signature_reasons() -> None:
    """alerts.yml cannot import the codes: every reason regex naming a signature reason names them all."""
    sets = [
        set(m.split("|"))
        for _, expr in rule_queries()
        for m in re.findall(r'reason[=!]~"([^"]*)"', expr)
        if "UNSIGNED" in m
    ]
    assert sets
    for names in sets:
        assert names == {r.value for r in SIGNATURE_REASONS}


def test_inbox_metrics_sum_the_result_files(tmp_path: Path) -> None:
    (tmp_path / "done").mkdir()
    (tmp_path / "failed").mkdir()
    for i, (acc, rej, already) in enumerate([(3, 1, 0), (0, 0, 4)]):
        (tmp_path / "done" / f"f{i}.jsonl.result.json").write_text(
            json.dumps(
                {
                    "accepted": acc,
                    "rejected": rej,
                    "already_published": already,
                    "published_at": "2026-03-10T12:00:00+00:00",
                }
            )
        )
    (tmp_path / "failed" / "bad.csv.result.json").write_text(
        json.dumps({"accepted": 0, "rejected": 0, "already_published": 0, "error": "no mapping"})
    )
    (tmp_path / "waiting.jsonl").write_text("{}\n")
    (tmp_path / "half.jsonl.part").write_text("{")
    reg = inbox_registry("court", tmp_path)
    value = reg.get_sample_value
    assert value("concord_adapter_records_total", {"agency": "court", "outcome": "published"}) == 3
    assert value("concord_adapter_records_total", {"agency": "court", "outcome": "rejected"}) == 1
    assert value("concord_adapter_records_total", {"agency": "court", "outcome": "already_published"}) == 4
    assert value("concord_adapter_files_total", {"agency": "court", "status": "failed"}) == 1
    assert value("concord_adapter_inbox_files", {"agency": "court"}) == 1
    assert value("concord_adapter_last_file_timestamp_seconds", {"agency": "court"}) == NOW.timestamp()
    (tmp_path / "done" / "f0.jsonl.result.json").unlink()
    assert value("concord_adapter_records_total", {"agency": "court", "outcome": "published"}) == 0


def test_scrape_targets_are_file_sd_lists_named_for_their_job(tmp_path: Path) -> None:
    stack = LocalStack.at(tmp_path)
    path = stack.register_scrape_target("subscriber-rail", "127.0.0.1:8081")
    assert json.loads(path.read_text()) == [{"targets": ["127.0.0.1:8081"], "labels": {"service": "subscriber-rail"}}]
    assert stack.scrape_targets() == {"subscriber-rail": "127.0.0.1:8081"}
    stack.unregister_scrape_target("subscriber-rail")
    assert stack.scrape_targets() == {}


def test_the_broker_runs_the_jmx_exporter_on_a_port_kept_in_its_state(tmp_path: Path) -> None:
    libs = tmp_path / "kafka" / "libs"
    (tmp_path / "kafka" / "agent").mkdir(parents=True)
    (tmp_path / "kafka" / "agent" / JMX_EXPORTER_JAR).write_bytes(b"")
    work = tmp_path / "broker"
    work.mkdir()
    old = {"cluster_id": "c", "ports": {"client": 1, "broker": 2, "controller": 3}, "broker_password": "p", "users": {}}
    (work / "state.json").write_text(json.dumps(old))  # a work directory from before the agent
    broker = EmbeddedKafka(work, {"concord-admin": "pw"}, libs_dir=libs)
    jmx = broker.ports.jmx
    assert jmx is not None and jmx not in (1, 2, 3)
    assert json.loads((work / "state.json").read_text())["ports"]["jmx"] == jmx
    assert broker.metrics_url == f"http://127.0.0.1:{jmx}/metrics"
    (option,) = broker._agent_options()  # noqa: SLF001 - the JVM options the broker starts with
    assert option.startswith("-javaagent:") and option.endswith(f"=127.0.0.1:{jmx}:{broker.jmx_rules}")
    assert broker.jmx_rules == REPO_ROOT / "deploy" / "prometheus" / "kafka-jmx.yaml"
    off = EmbeddedKafka(work, {"concord-admin": "pw"}, libs_dir=libs, jmx_exporter=False)
    assert off.metrics_url is None and off._agent_options() == ()  # noqa: SLF001 - the JVM options the broker starts with
