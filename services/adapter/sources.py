"""Reading an agency's export: JSON Lines, one record a line, with line numbers.

A line that is not JSON is not fatal: it becomes a problem on that line, like any
other invalid record, and reading goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from services.core.errors import FieldProblem

MAX_LINE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Row:
    line: int
    raw: Any | None
    problem: FieldProblem | None = None
    text: str = ""


def read_jsonl(stream: IO[str]) -> Iterator[Row]:
    for n, text in enumerate(stream, start=1):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(stripped.encode()) > MAX_LINE_BYTES:
            yield Row(n, None, FieldProblem("", f"record is larger than {MAX_LINE_BYTES // 1024} KiB"), stripped[:200])
            continue
        try:
            yield Row(n, json.loads(stripped), text=stripped)
        except json.JSONDecodeError as exc:
            yield Row(n, None, FieldProblem("", f"malformed JSON: {exc.msg} at column {exc.colno}"), stripped)
