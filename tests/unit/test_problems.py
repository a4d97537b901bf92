"""A problem becomes text only where a person reads it, in one shape: FILE[:LINE]: path: reason."""

from __future__ import annotations

import pytest

from services.core.errors import WorldInvalid
from services.core.problems import Problem, describe, format_path

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (
            Problem(file="m.yaml", line=3, path="fields.reason", reason="duplicate key"),
            "m.yaml:3: fields.reason: duplicate key",
        ),
        (Problem(file="agencies.yaml", reason="file is empty"), "agencies.yaml: file is empty"),
        (Problem(file="a.yaml", line=2, reason="malformed YAML: x"), "a.yaml:2: malformed YAML: x"),
        (Problem.of("basis.issued_by", "a sanction needs"), "basis.issued_by: a sanction needs"),
        (Problem.of("", "a record must be a JSON object"), "<record>: a record must be a JSON object"),
    ],
)
def test_a_problem_reads_file_line_path_reason(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_a_record_problem_is_placed_in_its_file() -> None:
    placed = Problem.of("event_id", "is required").at("export.csv", 7)
    assert placed == Problem(file="export.csv", line=7, path="event_id", reason="is required")


def test_paths_quote_keys_that_are_not_plain_names() -> None:
    assert format_path(("versions", 0, "measures", 1, "kind")) == "versions[0].measures[1].kind"
    assert format_path(("fields", "subject.kind", "column")) == 'fields["subject.kind"].column'


def test_many_problems_are_counted_then_listed() -> None:
    problems = [Problem(file="a.yaml", line=1, path="x", reason="bad"), Problem(file="b.yaml", reason="worse")]
    assert describe(problems, "the declared world").splitlines() == [
        "2 problems in the declared world:",
        "a.yaml:1: x: bad",
        "b.yaml: worse",
    ]
    assert describe(problems[:1], "the declared world") == "a.yaml:1: x: bad"


def test_the_world_error_carries_its_problems() -> None:
    one = Problem(file="agencies.yaml", line=4, path="agencies[0].name", reason="must not be empty")
    error = WorldInvalid([one])
    assert error.problems == (one,)
    assert error.context == {"file": "agencies.yaml", "path": "agencies[0].name", "line": 4}
    two = WorldInvalid([one, Problem(file="topics.yaml", reason="file is missing")])
    assert len(two.problems) == 2 and two.context == {}
