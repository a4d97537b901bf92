"""YAML read with the line of every value: what the world, mapping and clients files share."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from services.core.documents import YamlInvalid, model_problems, read_yaml
from services.core.problems import Problem

pytestmark = pytest.mark.unit


def problems(text: str) -> list[Problem]:
    with pytest.raises(YamlInvalid) as caught:
        read_yaml(text, "f.yaml")
    return list(caught.value.problems)


def test_every_value_has_its_line() -> None:
    doc = read_yaml("a:\n  b: 1\n  c:\n    - x\n    - y\n", "f.yaml")
    assert doc.value == {"a": {"b": 1, "c": ["x", "y"]}}
    assert doc.line(("a", "b")) == 2
    assert doc.line(("a", "c", 1)) == 5
    assert doc.line(("a", "missing")) == 1  # a missing key: its mapping's line


def test_malformed_and_empty_documents() -> None:
    (bad,) = problems("a: [1, 2\n")
    assert bad.file == "f.yaml" and bad.line == 2 and bad.reason.startswith("malformed YAML")
    assert problems("# nothing\n") == [Problem(file="f.yaml", reason="file is empty")]


def test_duplicate_keys_merge_keys_and_tags_are_problems_all_at_once() -> None:
    found = problems("a: 1\nb:\n  c: 1\n  c: 2\nd: &x {e: 1}\nf:\n  <<: *x\ng: !!python/name:os.system x\na: 3\n")
    assert [(p.line, p.path) for p in found] == [(4, "b.c"), (7, "f"), (8, "g"), (9, "a")]
    assert found[0].reason == found[3].reason == "duplicate key"
    assert found[1].reason.startswith("merge keys (<<) are not supported")
    assert found[2].reason.startswith("malformed YAML: could not determine a constructor")


def test_codes_and_dates_as_written() -> None:
    text = "yes: 01\n2026-01-02: 2026-01-02\n"
    typed = read_yaml(text, "f.yaml")
    assert typed.value == {True: 1, date(2026, 1, 2): date(2026, 1, 2)}
    written = read_yaml(text, "f.yaml", keys_as_written=True, dates_as_written=True)
    assert written.value == {"yes": 1, "2026-01-02": "2026-01-02"}
    assert written.texts[("yes",)] == "01"


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: dict[str, Inner]


def test_model_errors_become_located_problems() -> None:
    doc = read_yaml("items:\n  one:\n    size: big\n  two:\n    sise: 1\n", "f.yaml")
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate(doc.value)
    found = model_problems(caught.value, doc, file="f.yaml", model=Outer)
    assert found == [
        Problem(
            file="f.yaml",
            line=3,
            path="items.one.size",
            reason="Input should be a valid integer, unable to parse string as an integer, got 'big'",
        ),
        Problem(file="f.yaml", line=4, path="items.two.size", reason="missing required key"),
        Problem(file="f.yaml", line=5, path="items.two.sise", reason="unknown key (expected size)"),
    ]
