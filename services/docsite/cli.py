"""The CLI reference, walked from the argparse parser ``concord`` itself runs.

argparse has no public way to list a parser's arguments or subcommands, so the walk reads
its ``_actions`` (the stable attribute its own help formatter reads); the usage lines are
argparse's own.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Iterator
from dataclasses import dataclass

from services.docsite.markdown import code, prose, sentence, table


@dataclass(frozen=True)
class Command:
    """One parser of the tree: ``concord``, ``concord acl``, ``concord acl plan``, ..."""

    path: tuple[str, ...]  # ("acl", "plan"); () for concord itself
    help: str
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join((self.parser.prog.split()[0], *self.path))

    @property
    def anchor(self) -> str:
        return "-".join(("concord", *self.path))


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return list(parser._actions)  # noqa: SLF001 - argparse's only list of a parser's arguments


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = (), summary: str = "") -> Iterator[Command]:
    """``parser`` and every subcommand under it, depth first, in the order they were added."""
    yield Command(path, summary or (parser.description or ""), parser)
    for action in _actions(parser):
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - argparse exports no public name for it
            helps = {a.dest: a.help or "" for a in action._choices_actions}  # noqa: SLF001 - each subcommand's help
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name), helps.get(name, ""))


def _expand(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    """An argument's help with argparse's ``%(default)s``-style fields filled in, as ``--help`` shows it."""
    if not action.help or action.help is argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)  # noqa: SLF001 - argparse's own expansion of help fields


def _argument(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(code(o) for o in action.option_strings)
        if action.nargs != 0:
            choices = "{" + ",".join(map(str, action.choices)) + "}" if action.choices is not None else None
            metavar = action.metavar or choices or action.dest.upper()
            names += f" {code(metavar if isinstance(metavar, str) else ' '.join(metavar))}"
        return names
    return code(action.metavar or action.dest)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, argparse.SUPPRESS) or action.required:
        return ""
    return code(action.default)


def _rows(cmd: Command) -> list[tuple[str, str, str]]:
    rows = []
    for action in _actions(cmd.parser):
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):  # noqa: SLF001 - as above
            continue
        text = prose(_expand(action, cmd.parser))
        if action.choices is not None:
            text = sentence(text) + " One of " + ", ".join(code(c) for c in action.choices) + "."
        if action.required and action.option_strings:
            text = "**Required.** " + text
        rows.append((_argument(action), _default(action), text))
    return rows


def render(parser: argparse.ArgumentParser, width: int = 100) -> str:
    """The whole reference page, one section per command; usage lines wrapped at ``width`` whatever
    the terminal (the parser's formatters are set to it)."""
    all_commands = list(commands(parser))
    for cmd in all_commands:
        cmd.parser.formatter_class = functools.partial(argparse.HelpFormatter, width=width)
    root = all_commands[0]
    out = [
        "# CLI reference\n",
        (
            "Generated from the argparse parser of `concord` (`services/cli.py`) when the site is built: "
            "every command, in the order `concord --help` lists them, with its arguments. "
            "`concord COMMAND --help` prints the same.\n"
        ),
    ]
    for cmd in all_commands[1:]:
        depth = "    " * (len(cmd.path) - 1)
        out.append(f"{depth}- [`{cmd.name}`](#{cmd.anchor}) — {cmd.help}")
    out.append("")
    for cmd in all_commands:
        level = "#" * min(2 + max(len(cmd.path) - 1, 0), 4)
        out.append(f"{level} `{cmd.name}` {{#{cmd.anchor}}}\n")
        if cmd.help:
            out.append(prose(sentence(cmd.help[0].upper() + cmd.help[1:])) + "\n")
        usage = cmd.parser.format_usage().removeprefix("usage: ").rstrip()
        usage = "\n".join(line.removeprefix(" " * len("usage: ")) for line in usage.splitlines())
        out.append("```text\n" + usage + "\n```\n")
        rows = _rows(cmd)
        if rows:
            out.append(table(("argument", "default", "meaning"), rows))
        if cmd is root:
            out.append("The options of `concord` itself go before the command: `concord --debug publish ...`.\n")
    return "\n".join(out)
