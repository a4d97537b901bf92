"""MkDocs hooks (``hooks:`` in mkdocs.yml): the pages generated from the code, at every build.

- ``reference/cli.md`` from ``concord``'s argparse parser, ``reference/check-api.md`` and
  ``reference/openapi.json`` from the subscriber's OpenAPI document, ``reference/schemas.md``
  from ``schemas/``, and a page per module of ``services/core`` (and the check client) for
  mkdocstrings;
- ``runbooks/index.md`` from ``deploy/prometheus/alerts.yml``, and above each runbook the rule
  it answers (expression, delay, severity, what the notification says). A runbook page without
  its alert, or an alert without its page, stops the build;
- every hand-written page's commands, options, files and make targets checked against the
  code (:mod:`.claims`): each one that does not hold is a warning, so a strict build fails;
- the figures of ``benchmarks.md`` (where it says ``<!-- bench-results -->``) from
  ``bench/results/*.json``, and on any page ``<!-- enum: module.Class -->`` as a table of that
  enumeration's members (:mod:`.enums`).

The navigation in mkdocs.yml names the hand-written pages; the runbooks and the Python modules
are added to it here, after the page that opens their section.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from services.docsite import benchmarks, claims, cli, enums, openapi, schemas
from services.docsite.markdown import code, prose, table
from services.ops.alerts import ALERTS, RUNBOOKS, Alert, alerts
from services.settings import REPO_ROOT

RUNBOOK_INDEX = f"{RUNBOOKS}/index.md"
PYTHON_INDEX = "reference/python/index.md"
BENCH_MARKER = "<!-- bench-results -->"
# The modules whose API the site documents: the pure core, and the client agency systems use.
PYTHON_PACKAGES = ("services.core",)
PYTHON_MODULES = ("services.subscriber.client",)
log = logging.getLogger("mkdocs.hooks.concord")  # under "mkdocs": a strict build counts its warnings


def python_modules() -> list[str]:
    names = [
        f"{package}.{m.name}"
        for package in PYTHON_PACKAGES
        for m in pkgutil.iter_modules(importlib.import_module(package).__path__)
        if not m.name.startswith("_")
    ]
    return sorted(names) + list(PYTHON_MODULES)


def runbook_mismatch(rules: list[Alert], pages: set[str]) -> tuple[list[str], list[str]]:
    """(alerts without a runbook page, runbook pages without an alert), by page name."""
    slugs = {a.slug for a in rules}
    return sorted(a.name for a in rules if a.slug not in pages), sorted(pages - slugs - {"index"})


def runbook_pages(files: Files) -> set[str]:
    prefix = f"{RUNBOOKS}/"
    return {
        f.src_uri.removeprefix(prefix).removesuffix(".md")
        for f in files.documentation_pages()
        if f.src_uri.startswith(prefix) and "/" not in f.src_uri.removeprefix(prefix)
    }


def runbook_header(alert: Alert) -> str:
    held = f", held for {alert.for_}" if alert.for_ else " (at once)"
    return (
        f'!!! abstract "{alert.severity} · group {alert.group}"\n'
        f"    **Fires when** {code(alert.expr)}{held}.\n\n"
        f"    **The notification says:** {prose(alert.summary)}. {prose(alert.description)}\n"
    )


def runbook_index(rules: list[Alert]) -> str:
    return (
        "# Runbooks\n\n"
        "One page per alert of `deploy/prometheus/alerts.yml`; each alert's `runbook_url` opens its page. "
        "Start with `concord status`, the service's log under `<home>/logs/`, and the dashboards "
        "([Operating](../operating/index.md)).\n\n"
        + table(
            ("alert", "severity", "group", "what it says"),
            [(f"[{a.name}]({a.slug}.md)", a.severity, a.group, prose(a.summary)) for a in rules],
        )
    )


def _extend(nav: Any, after: str, entries: list[dict[str, str]]) -> bool:
    """Add ``entries`` after the nav item naming the page ``after``; True if it was found."""
    if isinstance(nav, list):
        for i, item in enumerate(nav):
            page = item if isinstance(item, str) else next(iter(item.values())) if isinstance(item, dict) else None
            if page == after:
                nav[i + 1 : i + 1] = entries
                return True
            if _extend(item, after, entries):
                return True
    elif isinstance(nav, dict):
        return any(_extend(v, after, entries) for v in nav.values())
    return False


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    rules = alerts(ALERTS.read_text())
    if config.nav is not None:
        found = _extend(config.nav, RUNBOOK_INDEX, [{a.name: f"{RUNBOOKS}/{a.slug}.md"} for a in rules])
        found &= _extend(
            config.nav, PYTHON_INDEX, [{m.removeprefix("services."): _python_page(m)} for m in python_modules()]
        )
        if not found:
            raise PluginError(f"mkdocs.yml: the nav must name {RUNBOOK_INDEX} and {PYTHON_INDEX}")
    return config


def _python_page(module: str) -> str:
    return f"reference/python/{module.removeprefix('services.')}.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    rules = alerts(ALERTS.read_text())
    missing, orphans = runbook_mismatch(rules, runbook_pages(files))
    if missing or orphans:
        raise PluginError(
            f"runbooks: alerts without a page docs/{RUNBOOKS}/<alert in lower case>.md: {missing or 'none'}; "
            f"pages without an alert in {ALERTS.relative_to(REPO_ROOT)}: {orphans or 'none'}"
        )
    from services.cli import build_parser

    doc = openapi.subscriber_openapi()
    generated = {
        "reference/cli.md": cli.render(build_parser()),
        "reference/check-api.md": openapi.render(doc),
        "reference/openapi.json": openapi.document_json(doc),
        "reference/schemas.md": schemas.render(REPO_ROOT / "schemas", REPO_ROOT),
        RUNBOOK_INDEX: runbook_index(rules),
        PYTHON_INDEX: "# Python API\n\nGenerated by mkdocstrings from the docstrings of the pure core "
        "(`services/core`, no Kafka) and of the check client agency systems use.\n\n"
        + "\n".join(f"- [`{m}`]({_python_page(m).removeprefix('reference/python/')})" for m in python_modules())
        + "\n",
    }
    generated |= {_python_page(m): f"# `{m}`\n\n::: {m}\n" for m in python_modules()}
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    uri = page.file.src_uri
    if not page.file.generated_by and page.file.abs_src_path:
        for claim in claims.checker().check(markdown, page=Path(page.file.abs_src_path)):
            log.warning("Doc file '%s', %s", uri, claim)
    markdown = enums.expand(markdown)
    if uri.startswith(f"{RUNBOOKS}/") and uri != RUNBOOK_INDEX:
        by_slug = {a.slug: a for a in alerts(ALERTS.read_text())}
        alert = by_slug[uri.removeprefix(f"{RUNBOOKS}/").removesuffix(".md")]
        title, _, rest = markdown.partition("\n")
        return f"{title}\n\n{runbook_header(alert)}\n{rest}"
    if BENCH_MARKER in markdown:
        try:
            figures = benchmarks.render(REPO_ROOT / "bench" / "results", REPO_ROOT / "bench")
        except benchmarks.ResultsInvalid as exc:
            raise PluginError(f"benchmarks: {exc}") from None
        return markdown.replace(BENCH_MARKER, figures)
    return markdown
