"""The wire schemas' reference, read from ``schemas/<record>/v<N>.avsc`` at build time.

One section per record family and version: its fingerprint as it appears on the wire after
``C3 01`` (fastavro's CRC-64-AVRO of the Parsing Canonical Form), its documentation, and a
table of fields per named record it defines, with types as Avro states them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, to_parsing_canonical_form

from services.docsite.markdown import code, prose, table

Schema = Any  # a parsed .avsc: str, list or dict, as JSON allows


@dataclass(frozen=True)
class SchemaFile:
    family: str  # the folder name: list_entry_event, directive, ...
    version: int
    path: Path
    schema: Schema

    @property
    def fingerprint(self) -> str:
        return str(fingerprint(to_parsing_canonical_form(self.schema), "CRC-64-AVRO"))


def schema_files(root: Path) -> list[SchemaFile]:
    """Every ``<family>/v<N>.avsc`` under ``root``, by family, then version."""
    found = []
    for path in root.glob("*/v*.avsc"):
        try:
            version = int(path.stem[1:])
        except ValueError:
            continue
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
        found.append(SchemaFile(path.parent.name, version, path, schema))
    return sorted(found, key=lambda f: (f.family, f.version))


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def type_text(t: Schema) -> str:
    """An Avro type as one line: ``string``, ``null | long``, ``array<Name>``, ``long (timestamp-micros)``."""
    if isinstance(t, str):
        return _short(t)
    if isinstance(t, list):
        return " | ".join(type_text(x) for x in t)
    kind = t["type"]
    if kind == "array":
        return f"array<{type_text(t['items'])}>"
    if kind == "map":
        return f"map<{type_text(t['values'])}>"
    if kind in ("record", "error"):
        return _short(t["name"])
    if kind == "enum":
        return f"enum {_short(t['name'])}"
    if kind == "fixed":
        return f"fixed {_short(t['name'])} ({t['size']} bytes)"
    text = type_text(kind)
    if "logicalType" in t:
        text += f" ({t['logicalType']})"
    return text


def named_types(t: Schema) -> Iterator[dict[str, Any]]:
    """The records and enums ``t`` defines, outermost first."""
    if isinstance(t, list):
        for x in t:
            yield from named_types(x)
    elif isinstance(t, dict):
        kind = t.get("type")
        if kind in ("record", "error"):
            yield t
            for f in t.get("fields", []):
                yield from named_types(f["type"])
        elif kind == "enum":
            yield t
        elif kind == "array":
            yield from named_types(t["items"])
        elif kind == "map":
            yield from named_types(t["values"])


def _default(field: dict[str, Any]) -> str:
    return code(json.dumps(field["default"], ensure_ascii=False)) if "default" in field else ""


def render_file(f: SchemaFile, repo: Path) -> str:
    top = f.schema
    title = _short(top["name"]) if isinstance(top, dict) and "name" in top else f.family
    out = [
        f"## {title} v{f.version} {{#{f.family}-v{f.version}}}\n",
        f"`{f.path.relative_to(repo).as_posix()}` · fingerprint `{f.fingerprint}`"
        + (f" · `{top['namespace']}.{title}`" if isinstance(top, dict) and "namespace" in top else "")
        + "\n",
    ]
    if isinstance(top, dict) and top.get("doc"):
        out.append(prose(top["doc"]) + "\n")
    for named in named_types(top):
        name = _short(named["name"])
        if named["type"] == "enum":
            symbols = ", ".join(code(s) for s in named["symbols"])
            default = (
                f" (a reader that does not know a symbol reads `{named['default']}`)" if "default" in named else ""
            )
            out.append(f"**{name}** (enum): {symbols}{default}.\n")
            continue
        if named is not top:
            out.append(f"**{name}**" + (f": {prose(named['doc'])}" if named.get("doc") else "") + "\n")
        rows = [
            (code(field["name"]), code(type_text(field["type"])), _default(field), prose(field.get("doc", "")))
            for field in named.get("fields", [])
        ]
        out.append(table(("field", "type", "default", "meaning"), rows))
    return "\n".join(out)


def render(root: Path, repo: Path) -> str:
    files = schema_files(root)
    families = sorted({f.family for f in files})
    out = [
        "# Wire schemas\n",
        (
            "Generated from `schemas/*/v*.avsc` when the site is built. Every version ever used is kept, "
            "so old records stay readable: a reader finds the writer's version by the fingerprint after "
            "the `C3 01` marker and reads the record through the newest version. How records are signed "
            "is in [Wire formats and signatures](../wire-formats.md).\n"
        ),
        table(
            ("record", "versions", "latest fingerprint"),
            [
                (
                    f"[{f}](#{f}-v{max(x.version for x in files if x.family == f)})",
                    ", ".join(f"v{x.version}" for x in files if x.family == f),
                    code([x for x in files if x.family == f][-1].fingerprint),
                )
                for f in families
            ],
        ),
    ]
    out += [render_file(f, repo) for f in files]
    return "\n".join(out)
