"""The check API's reference, rendered from the OpenAPI document the subscriber serves.

The document is FastAPI's, built by :func:`services.subscriber.api.build_api`; its routes read
the subscriber's store only when they answer, so the document is made from an agency's name
alone (:func:`subscriber_openapi`), with no store, feed or broker.
"""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import FastAPI

from services.docsite.markdown import code, prose, table

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class _AgencyOnly:
    """What building the routes reads of a subscriber: its agency's name."""

    def __init__(self, agency: str) -> None:
        self.agency = agency


def subscriber_app(agency: str = "<agency>") -> FastAPI:
    """The routes of a subscriber of ``agency``, for their document: they cannot answer."""
    from services.subscriber.api import Answers, build_api
    from services.subscriber.service import SubscriberService

    return build_api(cast(SubscriberService, _AgencyOnly(agency)), cast(Answers, None))


def subscriber_openapi(agency: str = "<agency>") -> dict[str, Any]:
    """The OpenAPI document ``GET /openapi.json`` of a subscriber of ``agency`` answers."""
    return subscriber_app(agency).openapi()


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation of the document, in its order."""
    return [
        (method.upper(), path, op)
        for path, item in doc.get("paths", {}).items()
        for method, op in item.items()
        if method in METHODS
    ]


def _ref(schema: dict[str, Any] | None) -> str:
    """A schema as a short type: a link to a component, or its JSON type."""
    if not schema:
        return ""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return " or ".join(_ref(s) for s in schema[key])
    kind = schema.get("type", "object")
    if kind == "array":
        return f"array of {_ref(schema.get('items'))}"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt else str(kind)


def _anchor(name: str) -> str:
    return "schema-" + name.lower()


def _op_anchor(method: str, path: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in path.lower()).strip("-")
    return f"{method.lower()}-{slug}"


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("minimum", ">= {}"),
        ("maximum", "<= {}"),
    ):
        if key in schema:
            parts.append(label.format(schema[key]))
    for sub in schema.get("anyOf", []):
        c = _constraints(sub)
        if c:
            parts.append(c)
    return ", ".join(parts)


def _what(op: dict[str, Any]) -> str:
    """An operation in a few words: the first line of its description, else its summary."""
    return str(op.get("description") or op.get("summary") or "").strip().split("\n", 1)[0]


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    out = [f"### `{method} {path}` {{#{_op_anchor(method, path)}}}\n"]
    if op.get("description"):
        out.append(prose(op["description"]) + "\n")
    if op.get("security"):
        schemes = sorted({name for requirement in op["security"] for name in requirement})
        out.append("Asked as a declared client: " + " or ".join(code(s) for s in schemes) + ".\n")
    params = op.get("parameters", [])
    if params:
        rows = [
            (
                code(p["name"]),
                p["in"],
                "yes" if p.get("required") else "",
                _ref(p.get("schema")),
                prose("; ".join(x for x in (p.get("description", ""), _constraints(p.get("schema", {}))) if x)),
            )
            for p in params
        ]
        out.append(table(("parameter", "in", "required", "type", "meaning"), rows))
    body = op.get("requestBody")
    if body:
        kinds = ", ".join(f"{code(ct)}: {_ref(v.get('schema'))}" for ct, v in body.get("content", {}).items())
        out.append(f"Request body{' (required)' if body.get('required') else ''}: {kinds}.\n")
    answers = [
        (
            code(status),
            prose(resp.get("description", "")),
            ", ".join(_ref(v.get("schema")) for v in resp.get("content", {}).values() if v.get("schema")),
        )
        for status, resp in op.get("responses", {}).items()
    ]
    out.append(table(("status", "when", "body"), answers))
    return "\n".join(out)


def _component(name: str, schema: dict[str, Any]) -> str:
    out = [f"### {name} {{#{_anchor(name)}}}\n"]
    if schema.get("description"):
        out.append(prose(schema["description"]) + "\n")
    if "enum" in schema:
        out.append("One of " + ", ".join(code(v) for v in schema["enum"]) + ".\n")
    props = schema.get("properties", {})
    if props:
        required = set(schema.get("required", []))
        rows = [
            (
                code(prop),
                _ref(s),
                "yes" if prop in required else "",
                prose("; ".join(x for x in (s.get("description", ""), _constraints(s)) if x)),
            )
            for prop, s in props.items()
        ]
        out.append(table(("field", "type", "required", "meaning"), rows))
    return "\n".join(out)


def render(doc: dict[str, Any]) -> str:
    info = doc.get("info", {})
    ops = operations(doc)
    out = [
        "# Check API reference\n",
        (
            f"Generated from the OpenAPI {doc.get('openapi', '')} document of the subscriber "
            "(`services/subscriber/api.py`) when the site is built. A running subscriber serves the same "
            "document at `/openapi.json`; this site has a copy: [openapi.json](openapi.json). "
            "How callers are declared, and what the answers mean, is in [Subscriber](../subscriber.md).\n"
        ),
        (
            f"**{prose(info.get('title', ''))}** (version {info.get('version', '')}): "
            f"{prose(info.get('description', ''))}\n"
        ),
        table(
            ("method", "path", "what"),
            [(code(m), f"[`{p}`](#{_op_anchor(m, p)})", prose(_what(op))) for m, p, op in ops],
        ),
    ]
    schemes = doc.get("components", {}).get("securitySchemes", {})
    if schemes:
        out.append("## Who may ask\n")
        out.append(
            table(
                ("scheme", "type", "how"),
                [
                    (
                        code(n),
                        s.get("type", "") + (f" ({s['scheme']})" if "scheme" in s else ""),
                        prose(s.get("description", "")),
                    )
                    for n, s in schemes.items()
                ],
            )
        )
    out.append("## Operations\n")
    out += [_operation(m, p, op) for m, p, op in ops]
    components = doc.get("components", {}).get("schemas", {})
    if components:
        out.append("## Schemas\n")
        out += [_component(name, schema) for name, schema in components.items()]
    return "\n".join(out)


def document_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
