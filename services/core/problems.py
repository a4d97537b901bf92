"""One reason an input is wrong, located where a person can fix it.

A :class:`Problem` names the file (when there is one), the line in it, the path of the
field inside the document (``versions[0].measures[1].implementing_agency``,
``subject.identifiers[0].value``) and the reason.  The world loader, the mapping loader,
record validation and the adapter all produce these values and pass them on unchanged;
they become text only where a person reads them (``str(problem)``, an error's message,
the CLI), so code and tests read the fields and never parse a message back.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Loc", "Problem", "describe", "format_path"]

#: A location inside a parsed document: mapping keys and list indexes from the root.
Loc = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True, kw_only=True)
class Problem:
    """``file``/``line`` are None where the input has no file (a record being validated),
    ``path`` is empty where the problem is about the whole document or record."""

    file: str | None = None
    line: int | None = None
    path: str = ""
    reason: str

    @classmethod
    def of(cls, path: str, reason: str) -> Problem:
        """A problem with the field at ``path`` of a record not (yet) placed in a file."""
        return cls(path=path, reason=reason)

    def at(self, file: str, line: int | None) -> Problem:
        """The same problem, located in ``file`` at ``line`` (a record's row in its source)."""
        return dataclasses.replace(self, file=file, line=line)

    def __str__(self) -> str:
        """``FILE[:LINE]: path: reason``; without a file, ``path: reason`` (``<record>`` for no path)."""
        if self.file is None:
            return f"{self.path or '<record>'}: {self.reason}"
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


def format_path(loc: Iterable[str | int]) -> str:
    """``("versions", 0, "measures")`` as ``versions[0].measures``; a key that is not a plain
    name is quoted: ``fields["subject.kind"]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def describe(problems: Sequence[Problem], what: str) -> str:
    """An error message: the one problem, or ``N problems in WHAT:`` and one line each."""
    if len(problems) == 1:
        return str(problems[0])
    return f"{len(problems)} problems in {what}:\n" + "\n".join(str(p) for p in problems)
