"""Every alert opens its own runbook page, at an absolute URL built from one base.

The base is the docs site's address (``site_url`` of mkdocs.yml); ``make alerts`` writes the
URLs into the rules and their promtool tests, and ``concord deploy render kubernetes
--runbook-base`` into a deployment's copy. Pure: no broker.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from services.core.errors import ConfigError
from services.core.world import load_world
from services.deploy.kubernetes import DeployOptions, render
from services.deploy.render import read_sources
from services.docsite.hooks import runbook_mismatch
from services.ops.alerts import (
    ALERT_TESTS,
    ALERTS,
    Alert,
    alerts,
    check_base,
    docs_base,
    promtool_tests_with_runbooks,
    runbook_url,
    with_runbooks,
)
from services.settings import REPO_ROOT

pytestmark = pytest.mark.unit

RUNBOOK_DIR = REPO_ROOT / "docs" / "runbooks"
RULES = alerts(ALERTS.read_text())


def _pages() -> set[str]:
    return {p.stem for p in RUNBOOK_DIR.glob("*.md")} - {"index"}


def test_every_alert_has_a_runbook_page_and_every_page_an_alert() -> None:
    assert {a.slug for a in RULES} == _pages()
    assert runbook_mismatch(RULES, _pages()) == ([], [])


def test_each_runbook_page_is_titled_by_its_alert() -> None:
    for alert in RULES:
        first = (RUNBOOK_DIR / f"{alert.slug}.md").read_text().splitlines()[0]
        assert first == f"# {alert.name}"


def _alert(name: str) -> Alert:
    return Alert(name, "g", "warning", "up == 0", None, "s", "d", None)


def test_a_mismatch_is_named_both_ways() -> None:
    rules = [_alert("ConcordNew"), _alert("ConcordTargetDown")]
    assert runbook_mismatch(rules, {"concordtargetdown", "concordgone", "index"}) == (["ConcordNew"], ["concordgone"])


def test_every_committed_runbook_url_is_absolute_and_built_from_the_docs_address() -> None:
    base = docs_base()
    assert base == yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())["site_url"]
    for alert in RULES:
        assert alert.summary and alert.description, alert.name
        assert alert.severity in ("warning", "critical"), alert.name
        assert alert.runbook_url == f"{base}runbooks/{alert.name.lower()}/", "run `make alerts`"
    assert ALERTS.read_text() == with_runbooks(ALERTS.read_text(), base), "run `make alerts`"


def test_the_promtool_tests_expect_the_same_urls() -> None:
    text = ALERT_TESTS.read_text()
    assert text == promtool_tests_with_runbooks(text, docs_base()), "run `make alerts`"
    expected = [
        (check["alertname"], exp["exp_annotations"]["runbook_url"])
        for case in yaml.safe_load(text)["tests"]
        for check in case.get("alert_rule_test", [])
        for exp in check.get("exp_alerts") or []
    ]
    assert expected
    assert all(url == runbook_url(docs_base(), name) for name, url in expected)


def test_another_base_changes_the_urls_and_nothing_else() -> None:
    text = ALERTS.read_text()
    moved = with_runbooks(text, "https://docs.example.org/concord")
    changed = [(a, b) for a, b in zip(text.splitlines(), moved.splitlines(), strict=True) if a != b]
    assert len(changed) == len(RULES)
    assert all(b.strip().startswith("runbook_url:") for _, b in changed)
    assert [a.runbook_url for a in alerts(moved)] == [
        f"https://docs.example.org/concord/runbooks/{a.name.lower()}/" for a in RULES
    ]
    assert with_runbooks(moved, docs_base()) == text  # and back, byte for byte


def test_a_rule_without_a_runbook_url_gets_one() -> None:
    text = "groups:\n  - name: g\n    rules:\n      - alert: New\n        expr: up == 0\n"
    rule = yaml.safe_load(with_runbooks(text, "https://d.example/"))["groups"][0]["rules"][0]
    assert rule["annotations"]["runbook_url"] == "https://d.example/runbooks/new/"


@pytest.mark.parametrize(
    "base",
    ["README.md#concordtargetdown", "/runbooks/", "docs.example.org", "ftp://d.example/", "https://d.example/?x=1"],
)
def test_a_base_that_cannot_be_opened_from_a_notification_is_refused(base: str) -> None:
    with pytest.raises(ConfigError, match="runbook base"):
        check_base(base)


def test_a_base_gets_its_trailing_slash() -> None:
    assert check_base("https://d.example/concord") == "https://d.example/concord/"
    assert runbook_url("https://d.example/concord", "KafkaNoActiveController") == (
        "https://d.example/concord/runbooks/kafkanoactivecontroller/"
    )


def test_docs_base_reads_site_url_whatever_tags_mkdocs_yml_uses(tmp_path: Path) -> None:
    conf = tmp_path / "mkdocs.yml"
    conf.write_text(
        "site_name: x\nsite_url: https://d.example/c/\n"
        "markdown_extensions:\n  - pymdownx.emoji:\n"
        "      emoji_index: !!python/name:material.extensions.emoji.twemoji\n"
        "extra:\n  key: !ENV [KEY, none]\n"
    )
    assert docs_base(conf) == "https://d.example/c/"
    conf.write_text("site_name: x\n")
    with pytest.raises(ConfigError, match="site_url is not set"):
        docs_base(conf)


def test_the_deploy_renderer_takes_the_same_base() -> None:
    world = load_world(REPO_ROOT / "topics")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    sources = read_sources(REPO_ROOT / "topics", runbook_base="https://docs.agency.example/concord/")
    objects = render(world, DeployOptions(), sources, at)
    rules_map = next(
        o for group in objects.values() for o in group if o["metadata"]["name"] == "concord-prometheus-rules"
    )
    rendered = alerts(rules_map["data"]["alerts.yml"])
    assert [a.runbook_url for a in rendered] == [
        f"https://docs.agency.example/concord/runbooks/{a.slug}/" for a in RULES
    ]
    assert read_sources(REPO_ROOT / "topics").alerts == ALERTS.read_text()  # without the option: as committed
