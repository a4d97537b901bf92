"""The docs site's generated pages (services/docsite): each covers everything it describes.

`make test` builds the whole site with ``mkdocs build --strict``; these tests pin what the
generators promise: every CLI command, every API route and schema, every wire schema file,
and the benchmark figures as their JSON states them. Pure: no broker.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from services.cli import build_parser
from services.docsite import benchmarks, claims, cli, enums, openapi, schemas
from services.docsite.griffe_roles import plain
from services.docsite.hooks import python_modules
from services.docsite.markdown import code, prose
from services.settings import REPO_ROOT

pytestmark = pytest.mark.unit

EXAMPLE_RESULTS = Path(__file__).parent / "data" / "bench-results"


# --- CLI ---------------------------------------------------------------------------


def _leaf_commands(parser: argparse.ArgumentParser) -> list[cli.Command]:
    return [c for c in cli.commands(parser) if c.parser.get_default("fn") is not None]


def test_the_cli_page_has_a_section_for_every_command_and_every_option() -> None:
    parser = build_parser()
    page = cli.render(parser)
    found = list(cli.commands(build_parser()))
    names = {c.name for c in found}
    # The commands a user types, including those the governance package registers.
    assert {
        "concord validate",
        "concord publish",
        "concord adapter run",
        "concord check",
        "concord status",
        "concord audit",
        "concord fanout worker",
        "concord subscriber run",
        "concord subscriber queries",
        "concord subscriber client-key",
        "concord run",
        "concord deploy render kubernetes",
        "concord acl plan",
        "concord acl apply",
        "concord acl drift",
        "concord registry publish",
    } <= names
    for cmd in found:
        assert f"`{cmd.name}` {{#{cmd.anchor}}}" in page, cmd.name
        for action in cmd.parser._actions:  # noqa: SLF001 - the arguments argparse knows, to compare with the page
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert code(option) in page, (cmd.name, option)
    # Every command that runs something is reached by the walk.
    assert all(callable(c.parser.get_default("fn")) for c in _leaf_commands(parser))
    assert len(_leaf_commands(parser)) >= 16


def test_a_command_added_to_the_parser_appears_with_its_arguments() -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001 - test setup
    new = subs.add_parser("rotate-keys", help="rotate an agency's signing keys")
    new.add_argument("--agency", required=True)
    new.add_argument("--overlap-days", type=int, default=7, help="days both keys are valid (default %(default)s)")
    page = cli.render(parser)
    assert "## `concord rotate-keys` {#concord-rotate-keys}" in page
    assert "Rotate an agency's signing keys." in page
    assert "| `--overlap-days` `OVERLAP_DAYS` | `7` | days both keys are valid (default 7) |" in page
    assert "| `--agency` `AGENCY` |  | **Required.** |" in page


def test_help_text_shows_placeholders_as_written() -> None:
    page = cli.render(build_parser())
    assert "default &lt;home&gt;/adapter/&lt;agency&gt;.sqlite" in page
    assert "<home>" not in page.replace("`<home>", "")  # never an HTML tag


# --- check API ---------------------------------------------------------------------


def test_the_api_page_lists_every_route_of_the_subscriber_app() -> None:
    app = openapi.subscriber_app()
    doc = app.openapi()
    page = openapi.render(doc)
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert routes
    for route in routes:
        for method in route.methods or ():  # Starlette types methods as optional; an APIRoute always has them
            assert f"### `{method} {route.path_format}`" in page, (method, route.path_format)
    assert len(openapi.operations(doc)) == sum(len(r.methods or ()) for r in routes)
    for name in doc["components"]["schemas"]:
        assert f"### {name} {{#schema-{name.lower()}}}" in page
    for scheme in doc["components"]["securitySchemes"]:
        assert code(scheme) in page


def test_every_parameter_and_answer_of_an_operation_is_in_its_section() -> None:
    doc = openapi.subscriber_openapi()
    page = openapi.render(doc)
    for method, path, op in openapi.operations(doc):
        section = page.split(f"### `{method} {path}`", 1)[1].split("\n### ", 1)[0]
        for param in op.get("parameters", []):
            assert f"| {code(param['name'])} | {param['in']} |" in section
        for status in op["responses"]:
            assert f"| {code(status)} |" in section


def test_an_operation_added_to_a_document_appears() -> None:
    doc = openapi.subscriber_openapi()
    doc["paths"]["/v1/subjects/{id}/report"] = {
        "get": {"summary": "Report", "description": "A signed account for the subject.", "responses": {"200": {}}}
    }
    page = openapi.render(doc)
    assert "### `GET /v1/subjects/{id}/report`" in page
    assert "A signed account for the subject." in page


# --- wire schemas ------------------------------------------------------------------


def test_the_schema_page_covers_every_avsc_file_and_its_fields() -> None:
    page = schemas.render(REPO_ROOT / "schemas", REPO_ROOT)
    files = sorted((REPO_ROOT / "schemas").glob("*/v*.avsc"))
    assert files
    for path in files:
        doc = json.loads(path.read_text())
        assert f"`{path.relative_to(REPO_ROOT).as_posix()}`" in page
        assert f"{{#{path.parent.name}-{path.stem}}}" in page
        for field in doc["fields"]:
            assert f"| {code(field['name'])} |" in page, (path, field["name"])


def test_a_new_schema_version_appears_with_its_fingerprint(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(REPO_ROOT / "schemas" / "receipt", root / "receipt")
    v2 = json.loads((root / "receipt" / "v1.avsc").read_text())
    v2["fields"].append({"name": "note", "type": ["null", "string"], "default": None, "doc": "free text"})
    (root / "receipt" / "v2.avsc").write_text(json.dumps(v2))
    files = schemas.schema_files(root)
    page = schemas.render(root, tmp_path)
    assert [f.version for f in files] == [1, 2]
    assert files[0].fingerprint != files[1].fingerprint
    assert f"`{files[1].fingerprint}`" in page
    assert "| `note` | `null | string` | `null` | free text |" in page.replace("\\|", "|")


@pytest.mark.parametrize(
    ("avro", "text"),
    [
        ("string", "string"),
        (["null", "long"], "null | long"),
        ({"type": "array", "items": "org.concord.Name"}, "array<Name>"),
        ({"type": "map", "values": "bytes"}, "map<bytes>"),
        ({"type": "long", "logicalType": "timestamp-micros"}, "long (timestamp-micros)"),
        ({"type": "enum", "name": "a.Action", "symbols": ["APPLY"]}, "enum Action"),
        ({"type": "fixed", "name": "Digest", "size": 32}, "fixed Digest (32 bytes)"),
    ],
)
def test_avro_types_read_as_avro_states_them(avro: object, text: str) -> None:
    assert schemas.type_text(avro) == text


def test_a_schema_file_that_is_not_json_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "receipt").mkdir()
    (tmp_path / "receipt" / "v1.avsc").write_text('{\n  "type": "record",\n  oops\n}')
    with pytest.raises(ValueError, match=r"receipt/v1\.avsc:3: not JSON"):
        schemas.schema_files(tmp_path)


# --- benchmarks --------------------------------------------------------------------


def test_the_example_results_render_every_figure() -> None:
    page = benchmarks.render(EXAMPLE_RESULTS)
    section = page.split("{#results-exchange}", 1)[1].split("\n### ", 1)[0]
    assert "| `publish.records_per_s` | 14,949 |" in section
    assert "| `fanout.listings_per_s` | 887.4 |" in section
    assert "| `e2e.p99_ms` | 547 |" in section
    assert "| `sign.us_per_record` | 2.62 |" in section
    assert "cpus `2`" in section and "python `3.11.2`" in section
    assert "Run again with `make bench`." in section


def test_a_benchmark_without_results_says_it_has_not_been_measured(tmp_path: Path) -> None:
    page = benchmarks.render(tmp_path / "absent")
    for bench in benchmarks.BENCHMARKS:
        section = page.split(f"{{#results-{bench.name}}}", 1)[1].split("\n### ", 1)[0]
        assert f"Not measured yet: `{bench.command}` writes `bench/results/{bench.name}.json`." in section


def test_results_of_a_benchmark_not_listed_are_shown_too(tmp_path: Path) -> None:
    (tmp_path / "quix-floor.json").write_text(json.dumps({"figures": {"floor.records_per_s": 8500}}))
    page = benchmarks.render(tmp_path)
    assert "{#results-quix-floor}" in page and "| `floor.records_per_s` | 8,500 |" in page


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{", "line 1: not JSON"),
        ("[]", "expected a JSON object"),
        ('{"machine": {}}', "figures: expected an object"),
        ('{"figures": {}}', "figures: expected an object"),
        ('{"figures": {"a.b": "fast"}}', "figures.a.b: expected a finite number, not 'fast'"),
        ('{"figures": {"a.b": true}}', "figures.a.b: expected a finite number"),
        ('{"figures": {"a.b": NaN}}', "figures.a.b: expected a finite number"),
        ('{"figures": {"a": 1}, "machine": []}', "machine: expected an object"),
        ('{"figures": {"a": 1}, "command": 3}', "command: expected a string"),
    ],
)
def test_a_results_file_of_another_shape_is_refused_with_its_reason(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "exchange.json"
    path.write_text(content)
    with pytest.raises(benchmarks.ResultsInvalid) as err:
        benchmarks.read_results(path)
    assert err.value.path == path
    assert err.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("value", "text"), [(1234.0, "1,234"), (887.44, "887.4"), (2.6249, "2.62"), (0.01234, "0.0123"), (-3.0, "-3")]
)
def test_figures_read_as_a_person_reads_them(value: float, text: str) -> None:
    assert benchmarks.number(value) == text


# --- small pieces ------------------------------------------------------------------


def test_python_api_pages_cover_every_core_module() -> None:
    here = REPO_ROOT / "services" / "core"
    core = {p.stem for p in here.glob("*.py") if not p.stem.startswith("_")}
    core |= {p.parent.name for p in here.glob("*/__init__.py")}  # packages: services.core.world
    assert {m.removeprefix("services.core.") for m in python_modules() if m.startswith("services.core.")} == core


@pytest.mark.parametrize(
    ("doc", "shown"),
    [
        (":class:`Keyring` remembers", "`Keyring` remembers"),
        ("see :func:`~services.core.merkle.root`.", "see `root`."),
        (":meth:`SignedHeaders.seal`", "`SignedHeaders.seal`"),
        (":mod:`services.core.merkle`", "`services.core.merkle`"),
        ("``literal`` stays", "``literal`` stays"),
    ],
)
def test_sphinx_roles_become_code_spans(doc: str, shown: str) -> None:
    assert plain(doc) == shown


def test_prose_escapes_tags_but_not_code() -> None:
    assert prose("under <home>/x, `<home>` as is") == "under &lt;home&gt;/x, `<home>` as is"


def test_each_benchmark_says_what_it_measures_from_its_script() -> None:
    page = benchmarks.render(EXAMPLE_RESULTS, REPO_ROOT / "bench")
    for bench in benchmarks.BENCHMARKS:
        doc = benchmarks.what_it_measures(REPO_ROOT / "bench" / bench.script)
        assert doc, bench.script
        section = page.split(f"{{#results-{bench.name}}}", 1)[1].split("\n### ", 1)[0]
        assert doc.splitlines()[0] in section


def test_an_enum_marker_becomes_the_table_of_its_members_with_their_comments() -> None:
    page = enums.expand("before\n\n<!-- enum: services.core.reasons.Reason -->\n\nafter")
    from services.core.reasons import Reason

    for member in Reason:
        assert f"| {code(member.value)} |" in page
    assert "| `WINDOW_MISMATCH` | validity not the record's period capped by the MOU's |" in page
    assert page.startswith("before") and page.endswith("after")
    with pytest.raises(TypeError, match="not an enumeration"):
        enums.expand("<!-- enum: services.core.signing.Signer -->")


# --- what hand-written pages claim -------------------------------------------------


@pytest.mark.parametrize(
    "page", [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))], ids=lambda p: p.name
)
def test_every_command_option_file_and_target_a_page_names_exists(page: Path) -> None:
    # The README is not part of the site, so this is where its claims are checked; the build checks the pages.
    assert [str(c) for c in claims.checker().check(page.read_text(), page=page)] == []


def _claims(markdown: str) -> list[str]:
    return [str(c) for c in claims.checker().check(markdown, page=REPO_ROOT / "README.md")]


def test_an_option_a_command_does_not_have_is_named_with_the_command_and_the_line() -> None:
    page = "intro\n\n```sh\n.venv/bin/concord audit --stores\n.venv/bin/concord audit --everything\n```\n"
    assert _claims(page) == ["line 5: .venv/bin/concord audit --everything: concord audit has no option --everything"]


def test_an_unknown_command_is_named_with_those_that_exist() -> None:
    (claim,) = _claims("run `concord keys list|rotate|forget` first")
    assert "concord keys has no command forget (it has: rotate, revoke, list)" in claim


def test_option_values_brackets_continuations_and_placeholders_are_read_as_a_reader_reads_them() -> None:
    page = (
        "```sh\n"
        "concord subscriber run --agency aviation --port 8443 \\\n"
        "    [--stale-after 30] [--clients FILE]   # comment --not-an-option\n"
        "concord check --agency aviation 11010519491231002X --measure aviation.no-air-tickets\n"
        "court --jsonl--> concord publish --signed Avro--> concord.lists.court\n"
        "```\n"
        "`concord acl plan / apply / drift`, `--stale-after`, `make docs`, `schemas/<record>/v<N>.avsc`"
    )
    assert _claims(page) == []
    wrong = "```\nconcord subscriber run --agency a \\\n    [--stale-before 30]\n```"
    (claim,) = _claims(wrong)
    assert claim.endswith("[--stale-before 30]: concord subscriber run has no option --stale-before")
    assert claim.startswith("line 2: ")


def test_options_alone_files_targets_and_links_that_do_not_exist_are_named() -> None:
    page = "`--no-heartbeats`, `make nothing`, `services/core/nowhere.py`, [gone](docs/gone.md)"
    assert _claims(page) == [
        "line 1: --no-heartbeats: no concord command has this option",
        "line 1: make nothing: no such target in the Makefile",
        "line 1: services/core/nowhere.py: no such file or folder in the repository",
        "line 1: docs/gone.md: the link leads nowhere",
    ]
