"""Drift reports and their gauges, from a plan (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.core.access import AclRule, compile_acls, scram_users
from services.core.cluster_state import LiveState, TopicState
from services.core.governance_plan import desired_topics, make_plan
from services.governance.drift import DriftMetrics, DriftReport
from tests.unit.factories import declared_quotas, real_world

pytestmark = pytest.mark.unit

NS = "t1"
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _live(*extra: AclRule, drop: int = 0) -> LiveState:
    world = real_world()
    acls = compile_acls(world, NS, AT)
    topics = {
        s.name: TopicState(s.name, s.partitions, s.replication, s.kafka_config()) for s in desired_topics(world, NS)
    }
    return LiveState((*acls[drop:], *extra), topics, frozenset(scram_users(world)), quotas=declared_quotas(world))


def test_in_sync_reports_zero_everywhere() -> None:
    report = DriftReport.of(make_plan(real_world(), NS, AT, _live()))
    assert report.in_sync and report.render().endswith("In sync.")
    metrics = DriftMetrics.create(CollectorRegistry())
    metrics.observe(report, 1234.0)
    assert metrics.registry.get_sample_value("concord_acl_drift_missing", {"namespace": NS, "kind": "acl"}) == 0
    assert (
        metrics.registry.get_sample_value("concord_acl_drift_last_check_timestamp_seconds", {"namespace": NS}) == 1234.0
    )


def test_missing_extra_and_unmanaged_are_counted_apart(tmp_path: Path) -> None:
    hand = AclRule("User:court", "TOPIC", "LITERAL", f"{NS}.directives.rail", "READ")
    stranger = AclRule("User:stranger", "TOPIC", "LITERAL", f"{NS}.registry", "READ")
    report = DriftReport.of(make_plan(real_world(), NS, AT, _live(hand, stranger, drop=2)))
    assert not report.in_sync
    assert (len(report.missing["acl"]), len(report.extra["acl"]), len(report.unmanaged["acl"])) == (2, 1, 1)
    assert report.to_json()["counts"] == {"missing": 2, "extra": 1, "unmanaged": 1, "draining": 0}
    metrics = DriftMetrics.create()
    metrics.observe(report, 0.0)
    path = tmp_path / "drift.prom"
    metrics.write_textfile(path)
    text = path.read_text()
    assert f'concord_acl_drift_missing{{kind="acl",namespace="{NS}"}} 2.0' in text
    assert f'concord_acl_drift_extra{{kind="acl",namespace="{NS}"}} 1.0' in text
    assert f'concord_acl_drift_unmanaged{{kind="acl",namespace="{NS}"}} 1.0' in text


def test_unmanaged_alone_is_not_drift() -> None:
    stranger = AclRule("User:stranger", "TOPIC", "LITERAL", f"{NS}.registry", "READ")
    report = DriftReport.of(make_plan(real_world(), NS, AT, _live(stranger)))
    assert report.in_sync and report.count(report.unmanaged) == 1
