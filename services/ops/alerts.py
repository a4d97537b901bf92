"""The alert rules and their runbooks: every alert links to its own page of the docs site.

``deploy/prometheus/alerts.yml`` is edited by hand, except for one annotation per alert:
``runbook_url`` is always ``<base>runbooks/<alert name in lower case>/``, absolute, so that
Alertmanager, Grafana or a pager can open it. The base is the docs site's address, set once
as ``site_url`` in ``mkdocs.yml``; ``make alerts`` writes the URLs from it into the rules (and
into the expected annotations of ``alerts_test.yml``, so ``promtool test rules`` keeps
passing). A deployment whose docs live elsewhere renders its copy of the rules with another
base: ``make alerts RUNBOOK_BASE=URL ALERTS_OUT=FILE`` or ``concord deploy render kubernetes
--runbook-base URL``.

The files are rewritten with ruamel.yaml's round trip, which keeps their comments, quoting
and layout: only the URLs change.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from ruamel.yaml import YAML

from services.core.errors import ConfigError
from services.settings import REPO_ROOT

ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = REPO_ROOT / "deploy" / "prometheus" / "alerts_test.yml"
MKDOCS = REPO_ROOT / "mkdocs.yml"
RUNBOOKS = "runbooks"  # the docs folder of the runbook pages, and their URL path under the base


@dataclass(frozen=True)
class Alert:
    """One alerting rule as an operator meets it."""

    name: str
    group: str
    severity: str
    expr: str
    for_: str | None
    summary: str
    description: str
    runbook_url: str | None

    @property
    def slug(self) -> str:
        return runbook_slug(self.name)


def runbook_slug(alert: str) -> str:
    """The page name of an alert's runbook (``docs/runbooks/<slug>.md``)."""
    return alert.lower()


def check_base(base: str) -> str:
    """``base`` as the prefix of every runbook URL (ending in ``/``), or ConfigError if it is not an
    absolute http(s) URL: a relative one cannot be opened from a notification."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"runbook base {base!r}: expected an absolute http(s) URL, e.g. https://docs.example.org/")
    if parts.query or parts.fragment:
        raise ConfigError(f"runbook base {base!r}: a base URL has no query or fragment")
    return base if base.endswith("/") else base + "/"


def runbook_url(base: str, alert: str) -> str:
    return f"{check_base(base)}{RUNBOOKS}/{runbook_slug(alert)}/"


class _AnyTag(yaml.SafeLoader):
    """Reads mkdocs.yml whatever tags it uses (``!ENV``, ``!!python/name:``): only site_url matters."""


_AnyTag.add_multi_constructor("", lambda loader, suffix, node: None)
_AnyTag.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def docs_base(mkdocs_yml: Path = MKDOCS) -> str:
    """The docs site's address: ``site_url`` of mkdocs.yml, the default base of the runbook URLs."""
    try:
        config = yaml.load(mkdocs_yml.read_text(), Loader=_AnyTag)  # noqa: S506 - a SafeLoader that drops tags
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{mkdocs_yml}: cannot read site_url: {exc}") from None
    url = config.get("site_url") if isinstance(config, dict) else None
    if not isinstance(url, str):
        raise ConfigError(f"{mkdocs_yml}: site_url is not set; it is the base of the alerts' runbook URLs")
    return check_base(url)


def alerts(text: str) -> list[Alert]:
    """Every alerting rule of a rules file, in file order."""
    found = []
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            ann = rule.get("annotations") or {}
            found.append(
                Alert(
                    name=str(rule["alert"]),
                    group=str(group["name"]),
                    severity=str((rule.get("labels") or {}).get("severity", "")),
                    expr=str(rule["expr"]).strip(),
                    for_=rule.get("for"),
                    summary=str(ann.get("summary", "")),
                    description=str(ann.get("description", "")),
                    runbook_url=ann.get("runbook_url"),
                )
            )
    return found


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096  # never fold a long expression or description anew
    return y


def _dump(y: YAML, data: Any) -> str:
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def _rules(doc: Any) -> Iterator[Any]:
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                yield rule


def with_runbooks(text: str, base: str) -> str:
    """The rules file ``text`` with every alert's ``runbook_url`` built from ``base`` (added where
    missing); everything else as it was."""
    base = check_base(base)
    y = _yaml()
    doc = y.load(text)
    for rule in _rules(doc):
        if rule.get("annotations") is None:
            rule["annotations"] = {}
        rule["annotations"]["runbook_url"] = runbook_url(base, str(rule["alert"]))
    return _dump(y, doc)


def promtool_tests_with_runbooks(text: str, base: str) -> str:
    """The promtool unit tests ``text`` expecting the runbook URLs :func:`with_runbooks` writes."""
    base = check_base(base)
    y = _yaml()
    doc = y.load(text)
    for case in doc.get("tests") or ():
        for check in case.get("alert_rule_test") or ():
            for expected in check.get("exp_alerts") or ():
                ann = expected.get("exp_annotations")
                if ann is not None and "runbook_url" in ann:
                    ann["runbook_url"] = runbook_url(base, str(check["alertname"]))
    return _dump(y, doc)


def main(argv: Sequence[str] | None = None) -> int:
    """``make alerts``: write the runbook URLs into the rules (and their tests) from the docs' address."""
    p = argparse.ArgumentParser(prog="python -m services.ops.alerts", description=main.__doc__)
    p.add_argument("--runbook-base", help="absolute URL of the docs site (default: site_url of mkdocs.yml)")
    p.add_argument("--out", type=Path, help="write the rules here instead of rewriting alerts.yml and its tests")
    args = p.parse_args(argv)
    try:
        base = check_base(args.runbook_base) if args.runbook_base else docs_base()
    except ConfigError as exc:
        print(f"alerts: {exc}", file=sys.stderr)
        return 2
    rules = with_runbooks(ALERTS.read_text(), base)
    if args.out is not None:
        args.out.write_text(rules)
        print(f"wrote {args.out} (runbooks under {base}{RUNBOOKS}/)")
        return 0
    ALERTS.write_text(rules)
    ALERT_TESTS.write_text(promtool_tests_with_runbooks(ALERT_TESTS.read_text(), base))
    written = f"{ALERTS.relative_to(REPO_ROOT)} and {ALERT_TESTS.relative_to(REPO_ROOT)}"
    print(f"wrote {written} (runbooks under {base}{RUNBOOKS}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
