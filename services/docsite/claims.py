"""What a page says that the repository can check: commands, options, files and make targets.

Hand-written pages name ``concord`` commands, their options, files of the repository and
``make`` targets.  Each of them can stop being true when the code changes, and nobody reads
every page after every change, so the build (and a unit test, for the README, which is not
part of the site) reads them back from the page's code, where a reader would copy them from:

- ``concord <command> ... --option`` in a code block or code span: the command must be one of
  ``concord``'s parser and each option one of that command's (a ``[--option]`` counts as one;
  ``a|b`` at a command's place names alternatives, each of which must exist);
- a code span that is an option alone (`` `--stale-after` ``): some command must have it;
- a repository path in code (``services/...``, ``tests/...``, ``deploy/...``, ``topics/...``,
  ``schemas/...``, ``bench/...``, ``docs/...``) or a link target: it must exist; a placeholder
  (``<record>``, ``v<N>``) or ``*`` stands for any name, ``...`` for any rest; what a command
  writes (:data:`OUTPUTS`) need not exist yet;
- ``make <target>``: the target must be in the ``Makefile``.

Arguments of commands other than ``concord`` and ``make``, text outside code, and lines drawn
with arrows (``-->``, a picture) are not read.
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from services.docsite.cli import commands

#: Folders of the repository whose paths a page may name.
TOP_FOLDERS = ("services", "tests", "deploy", "topics", "schemas", "bench", "docs")
#: Folders that commands write and the repository does not hold until they run.
OUTPUTS = ("bench/results",)  # make bench
_FENCE = re.compile(r"^ *(```+|~~~+)[^\n]*\n(.*?)^ *\1 *$", re.MULTILINE | re.DOTALL)
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PLACEHOLDER = re.compile(r"<[^<>\n]*>")
_PATH = re.compile(rf"(?<![\w./<>-])((?:{'|'.join(TOP_FOLDERS)})/[\w./*<>{{}}-]*)")
_COMMAND = re.compile(r"(?<![\w.-])(?:\.venv/bin/)?concord((?:[ \t]+[^\s#|;&>`][^\s;&>`]*)*)")
_MAKE = re.compile(r"(?<![\w.-])make[ \t]+([a-z][\w-]*)")
_TARGET = re.compile(r"^([A-Za-z0-9][\w.-]*)[ \t]*:(?!=)", re.MULTILINE)


@dataclass(frozen=True)
class Claim:
    """One thing a page says that did not hold: where (line), what, and why."""

    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.text}: {self.reason}"


def _code(markdown: str) -> Iterator[tuple[int, str]]:
    """Each piece of code of a page (fenced blocks, then code spans outside them), with its first line."""
    outside = markdown
    for m in _FENCE.finditer(markdown):
        yield markdown.count("\n", 0, m.start(2)) + 1, m.group(2)
        blank = re.sub(r"[^\n]", " ", m.group(0))  # keeps line numbers for the spans after it
        outside = outside[: m.start()] + blank + outside[m.end() :]
    for m in _SPAN.finditer(outside):
        yield outside.count("\n", 0, m.start(2)) + 1, m.group(2).strip()


def _lines(code: str) -> Iterator[tuple[int, str]]:
    """The lines of a piece of code, a line ending in a backslash joined with the next."""
    joined, first = "", 0
    for i, line in enumerate(code.split("\n")):
        if not joined:
            first = i
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        yield first, joined + line
        joined = ""
    if joined:
        yield first, joined


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse's only list of a parser's arguments
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - argparse exports no public name for it
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return dict(parser._option_string_actions)  # noqa: SLF001 - argparse's map of option strings


class Checker:
    """Checks pages against ``concord``'s parser, the repository at ``root`` and its Makefile."""

    def __init__(self, parser: argparse.ArgumentParser, root: Path) -> None:
        self.parser = parser
        self.root = root
        makefile = root / "Makefile"
        self.targets = set(_TARGET.findall(makefile.read_text())) if makefile.exists() else set()
        self.all_options = {o for c in commands(parser) for o in _options(c.parser)}

    def check(self, markdown: str, *, page: Path | None = None) -> list[Claim]:
        """Every claim of ``markdown`` that does not hold; ``page`` is where relative links start."""
        found: list[Claim] = []
        for first, code in _code(markdown):
            for offset, line in _lines(code):
                at = first + offset
                if "-->" in line:
                    continue
                for m in _COMMAND.finditer(line):
                    found += [Claim(at, m.group(0).strip(), why) for why in self.command(m.group(1).split())]
                for m in _MAKE.finditer(line):
                    if m.group(1) not in self.targets:
                        found.append(Claim(at, m.group(0), "no such target in the Makefile"))
                for path in _PATH.findall(_PLACEHOLDER.sub("*", line)):
                    if not self.exists(path):
                        found.append(Claim(at, path, "no such file or folder in the repository"))
            if re.fullmatch(r"--[a-z][\w-]*", code) and code not in self.all_options:
                found.append(Claim(first, code, "no concord command has this option"))
        for m in _LINK.finditer(markdown):
            target = m.group(1).split("#")[0]
            if not target or "://" in target or target.startswith("mailto:"):
                continue
            base = page.parent if page is not None else self.root
            if not (base / target).exists() and not self._generated(base / target):
                found.append(Claim(markdown.count("\n", 0, m.start()) + 1, target, "the link leads nowhere"))
        return found

    def command(self, words: Iterable[str]) -> list[str]:
        """Why ``concord <words>`` is not a command line ``concord`` accepts (empty: it is)."""
        parser, path = self.parser, ["concord"]
        tokens = [w.strip("[]") for w in words]
        i = 0
        while i < len(tokens):
            word = tokens[i]
            i += 1
            subs = _subparsers(parser)
            if word.startswith("--"):
                name = word.split("=", 1)[0]
                action = _options(parser).get(name)
                if action is None:
                    return [f"{' '.join(path)} has no option {name}"]
                if action.nargs != 0 and "=" not in word:
                    i += 1
            elif subs and re.fullmatch(r"[a-z][\w-]*(\|[a-z][\w-]*)*", word):
                names = word.split("|")
                unknown = [n for n in names if n not in subs]
                if unknown:
                    return [f"{' '.join(path)} has no command {unknown[0]} (it has: {', '.join(subs)})"]
                if len(names) > 1:
                    return []
                parser, path = subs[word], [*path, word]
            elif subs:
                return []  # a word in a command's place that reads as no command (a placeholder)
        return []

    def exists(self, path: str) -> bool:
        path = path.rstrip(".,:;")
        if any(path == o or path.startswith(f"{o}/") for o in OUTPUTS):
            return True
        if "..." in path:
            path = path.split("...", 1)[0] + "*"
        pattern = re.sub(r"\{[^}]*\}", "*", path).rstrip("/")
        if "*" not in pattern:
            return (self.root / pattern).exists() or self._generated(self.root / pattern)
        return next(self.root.glob(pattern), None) is not None

    def _generated(self, path: Path) -> bool:
        """Pages the site generates at build time (the reference pages, the runbook index)."""
        try:
            relative = path.resolve().relative_to((self.root / "docs").resolve())
        except ValueError:
            return False
        return relative.parts[:1] == ("reference",) or relative.as_posix() == "runbooks/index.md"


@functools.cache
def checker() -> Checker:
    """The checker of this repository, with the parser ``concord`` runs."""
    from services.cli import build_parser
    from services.settings import REPO_ROOT

    return Checker(build_parser(), REPO_ROOT)
