"""Small pieces of Markdown shared by the renderers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence


def cell(text: object) -> str:
    """``text`` safe inside a table cell: one line, pipes escaped outside code spans (Python-Markdown's
    tables do not split a row inside a code span, and show an escape there as written)."""
    parts = re.split(r"(`+[^`]*`+)", " ".join(str(text).split()))
    return "".join(part if i % 2 else part.replace("|", "\\|") for i, part in enumerate(parts))


def prose(text: object) -> str:
    """Text as Markdown that shows it as written: ``<home>`` is not an HTML tag (outside code spans,
    which show it as it is already)."""
    parts = re.split(r"(`+[^`]*`+)", str(text))
    return "".join(
        part if i % 2 else part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for i, part in enumerate(parts)
    )


def sentence(text: str) -> str:
    """``text`` ending in a full stop (or its own question mark)."""
    text = text.strip()
    return text if not text or text.endswith((".", "?", "!", ":")) else text + "."


def code(text: object) -> str:
    """``text`` as inline code, whatever backticks it holds."""
    s = str(text)
    run = 0
    longest = 0
    for ch in s:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
