"""Tables of the code's own enumerations, for pages that name them (``<!-- enum: module.Class -->``).

Each member's meaning is the comment on its line in the source, where there is one: the table
cannot disagree with the enum it shows.
"""

from __future__ import annotations

import importlib
import inspect
import re
from enum import Enum

from services.docsite.markdown import code, prose, table

MARKER = re.compile(r"<!-- enum: ([\w.]+) -->")
_MEMBER = re.compile(r"^\s*(\w+)\s*=\s*[^#]*?(?:#\s*(.*))?$")


def enum_class(path: str) -> type[Enum]:
    module, _, name = path.rpartition(".")
    found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, Enum)):
        raise TypeError(f"{path} is not an enumeration")
    return found


def member_comments(cls: type[Enum]) -> dict[str, str]:
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        m = _MEMBER.match(line)
        if m and m.group(1) in cls.__members__ and m.group(2):
            comments[m.group(1)] = m.group(2).strip()
    return comments


def enum_table(cls: type[Enum]) -> str:
    comments = member_comments(cls)
    members = list(cls)
    same = all(m.name == m.value for m in members)
    header: tuple[str, ...] = ("value",) if same else ("member", "value")
    rows: list[tuple[str, ...]] = [((code(m.value),) if same else (code(m.name), code(m.value))) for m in members]
    if comments:
        header += ("meaning",)
        rows = [(*row, prose(comments.get(m.name, ""))) for row, m in zip(rows, members, strict=True)]
    return table(header, rows)


def expand(markdown: str) -> str:
    """``markdown`` with every enum marker replaced by its table."""
    return MARKER.sub(lambda m: enum_table(enum_class(m.group(1))), markdown)
