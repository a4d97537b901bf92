"""The benchmarks page's generated part: what each benchmark measures, read from its script's
docstring, and its figures, read from ``bench/results/<name>.json`` when the site is built.

Each benchmark target writes one file of this shape (its headline figures flat, under
``figures``; what it ran on; how to run it again)::

    {"figures": {"fanout.listings_per_s": 1234.0, "e2e.p99_ms": 7292.0},
     "machine": {"cpus": 2, "python": "3.11.2"},
     "command": "make bench"}

A benchmark without its file is shown as not measured yet; a file that is not of this shape
stops the build with the file and what is wrong in it.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.docsite.markdown import code, prose, table


@dataclass(frozen=True)
class Benchmark:
    """A benchmark the Makefile runs, and the results file it writes."""

    name: str  # bench/results/<name>.json
    title: str
    command: str
    script: str = ""  # bench/<script>: its docstring says what it measures


BENCHMARKS = (
    Benchmark("exchange", "The exchange under load", "make bench", "bench_exchange.py"),
    Benchmark("scale", "The fan-out holding a million entries", "make bench-scale", "bench_scale.py"),
    Benchmark("records", "The record path per core", "make bench-records", "bench_records.py"),
    Benchmark("subscriber", "The subscriber", "make bench-subscriber", "bench_subscriber.py"),
)


def what_it_measures(script: Path) -> str:
    """The script's docstring as Markdown: its first line, then the rest (read, never run)."""
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) if script.is_file() else None
    return doc or ""


class ResultsInvalid(ValueError):
    """A results file that is not of the documented shape."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Results:
    figures: dict[str, float]
    machine: dict[str, Any]
    command: str


def read_results(path: Path) -> Results:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsInvalid(path, f"line {exc.lineno}: not JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsInvalid(path, f"unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise ResultsInvalid(path, "expected a JSON object with figures, machine and command")
    figures = doc.get("figures")
    if not isinstance(figures, dict) or not figures:
        raise ResultsInvalid(path, "figures: expected an object of headline figures, name -> number")
    for key, value in figures.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ResultsInvalid(path, f"figures.{key}: expected a finite number, not {value!r}")
    machine = doc.get("machine", {})
    if not isinstance(machine, dict):
        raise ResultsInvalid(path, "machine: expected an object")
    command = doc.get("command", "")
    if not isinstance(command, str):
        raise ResultsInvalid(path, "command: expected a string")
    return Results({str(k): float(v) for k, v in figures.items()}, machine, command)


def number(value: float) -> str:
    """A figure as a reader takes it in: thousands grouped, three significant decimals at most."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:,.3g}" if abs(value) >= 1 else f"{value:.3g}"


def render_results(results: Results) -> str:
    out = [table(("figure", "value"), [(code(k), number(v)) for k, v in results.figures.items()])]
    if results.machine:
        out.append("Measured on: " + ", ".join(f"{prose(k)} {code(v)}" for k, v in results.machine.items()) + ".\n")
    if results.command:
        out.append(f"Run again with {code(results.command)}.\n")
    return "\n".join(out)


def render(results_dir: Path, bench_dir: Path | None = None) -> str:
    """Every known benchmark (what it measures, when ``bench_dir`` holds its script, and its figures),
    then any other results file."""
    out = []
    known = {b.name for b in BENCHMARKS}
    extra = sorted(p.stem for p in results_dir.glob("*.json") if p.stem not in known) if results_dir.is_dir() else []
    for bench in (*BENCHMARKS, *(Benchmark(name, name, "") for name in extra)):
        path = results_dir / f"{bench.name}.json"
        out.append(f"### {bench.title} {{#results-{bench.name}}}\n")
        doc = what_it_measures(bench_dir / bench.script) if bench_dir is not None and bench.script else ""
        if doc:
            out.append(doc + "\n")
            out.append(f"**Figures** (`bench/results/{bench.name}.json`):\n")
        if not path.is_file():
            how = f": `{bench.command}` writes `bench/results/{bench.name}.json`" if bench.command else ""
            out.append(f"Not measured yet{how}.\n")
            continue
        out.append(render_results(read_results(path)))
    return "\n".join(out)
