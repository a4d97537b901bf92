"""How `concord` ends on an error, and that what its messages tell a user to run exists."""

from __future__ import annotations

import argparse
import re

import pytest

from services import cli
from services.core.errors import ConfigError, RecordInvalid
from services.core.problems import Problem
from tests.unit.factories import REPO_ROOT

pytestmark = pytest.mark.unit


class NotARecordInvalid(ConfigError):
    """A configuration error that bears the name of the record error without being one."""


NotARecordInvalid.__name__ = "RecordInvalid"


def _raising(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """`concord` with one command, the default, that raises ``exc``."""

    def fail(_args: argparse.Namespace) -> int:
        raise exc

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog="concord")
        p.add_argument("--debug", action="store_true")
        p.set_defaults(fn=fail)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RecordInvalid([Problem.of("entry_id", "is required")]), cli.EXIT_INVALID),
        (ConfigError("no keyring"), cli.EXIT_ERROR),
    ],
    ids=["record-invalid", "config-error"],
)
def test_the_exit_code_follows_the_class_of_the_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: Exception, code: int
) -> None:
    _raising(monkeypatch, exc)
    assert cli.main([]) == code
    assert capsys.readouterr().err.startswith("concord: ")


def test_an_error_merely_named_like_the_record_error_is_not_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _raising(monkeypatch, NotARecordInvalid("boom"))
    assert cli.main([]) == cli.EXIT_ERROR
    assert capsys.readouterr().err == "concord: boom\n"


# A command quoted in a message or docstring: `concord keys rotate ...` or `make run`.
QUOTED = re.compile(r"`(concord|make) ([a-z][a-z-]*(?: [a-z][a-z-]*)*)")


def _quoted_commands() -> set[tuple[str, tuple[str, ...]]]:
    found = set()
    for path in (REPO_ROOT / "services").rglob("*.py"):
        for tool, words in QUOTED.findall(path.read_text(encoding="utf-8")):
            found.add((tool, tuple(words.split())))
    return found


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public view of its subcommands
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - as above
            return dict(action.choices)
    return {}


def _make_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.M))


def test_every_command_a_message_names_exists() -> None:
    quoted = _quoted_commands()
    assert ("make", ("run",)) in quoted  # the scan finds what it looks for
    targets = _make_targets()
    missing = []
    for tool, words in sorted(quoted):
        if tool == "make":
            if words[0] not in targets:
                missing.append(f"make {words[0]}")
            continue
        parser = cli.build_parser()
        for i, word in enumerate(words):
            subs = _subcommands(parser)
            if not subs:
                break  # the rest are arguments
            if word not in subs:
                missing.append("concord " + " ".join(words[: i + 1]))
                break
            parser = subs[word]
    assert missing == []


def test_the_scan_would_notice_a_command_that_does_not_exist() -> None:
    parser = cli.build_parser()
    assert "keys" in _subcommands(parser)
    assert "init" not in _subcommands(_subcommands(parser)["keys"])
    assert "keys" not in _make_targets()
