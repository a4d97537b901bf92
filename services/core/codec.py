"""Avro single-object encoding of Concord's records.

Wire form (Avro specification, "Single-object encoding"): the two bytes ``C3 01``,
the 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing
Canonical Form, then the Avro binary body.  ``schemas/<name>/v<N>.avsc`` holds every
version ever used: a reader resolves the fingerprint to the writer's version and
reads it through the newest version, so old records stay readable forever.  An
unknown fingerprint is a typed error (quarantine reason), never a crash.

Schemas are parsed once per :class:`SchemaRegistry`; encoders are small callables.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import fastavro
from fastavro.schema import fingerprint as avro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.types import Schema
from pydantic import BaseModel, ValidationError

from services.core.errors import NotSingleObject, UndecodableBody, UnknownFingerprint
from services.core.models import (
    Directive,
    Heartbeat,
    ListEntryEvent,
    ListingCommitments,
    Notice,
    QuarantineRecord,
    Receipt,
    SealedListing,
)

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


def fingerprint(schema: Schema) -> bytes:
    """8 bytes, little-endian, as they appear after the ``C3 01`` marker.

    fastavro gives CRC-64-AVRO (the Rabin fingerprint of the Avro specification) of the
    Parsing Canonical Form as the hex of those same little-endian bytes.
    """
    return bytes.fromhex(avro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True)
class SchemaVersion:
    name: str
    version: int
    schema: Any  # fastavro's parsed schema
    fingerprint: bytes


M = TypeVar("M", bound=BaseModel)

# Which schema family each model travels as.
SCHEMA_NAMES: dict[type[BaseModel], str] = {
    ListEntryEvent: "list_entry_event",
    Directive: "directive",
    Receipt: "receipt",
    QuarantineRecord: "quarantine_record",
    Heartbeat: "heartbeat",
    ListingCommitments: "listing_commitments",
    SealedListing: "sealed_listing",
    Notice: "notice",
}


class SchemaRegistry:
    """Every schema version in ``schemas/``, indexed by name and by fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_fp: dict[bytes, SchemaVersion] = {}
        self._latest: dict[str, SchemaVersion] = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            versions = sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
            for path in versions:
                raw = json.loads(path.read_text(encoding="utf-8"))
                parsed = fastavro.parse_schema(raw, _write_hint=True, _force=True)
                sv = SchemaVersion(folder.name, int(path.stem[1:]), parsed, fingerprint(raw))
                self._by_fp[sv.fingerprint] = sv
                self._latest[folder.name] = sv

    def names(self) -> list[str]:
        return sorted(self._latest)

    def latest(self, name: str) -> SchemaVersion:
        return self._latest[name]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fp.get(fp)

    def encode(self, name: str, datum: Mapping[str, Any]) -> bytes:
        sv = self._latest[name]
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(sv.fingerprint)
        fastavro.schemaless_writer(buf, sv.schema, datum)
        return buf.getvalue()

    def split(self, data: bytes) -> tuple[SchemaVersion, bytes]:
        """Header check and writer-schema lookup, without decoding the body."""
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise NotSingleObject("not an Avro single-object record (no C3 01 marker)")
        fp = bytes(data[2:HEADER_LEN])
        sv = self._by_fp.get(fp)
        if sv is None:
            raise UnknownFingerprint(f"unknown schema fingerprint {fp.hex()}")
        return sv, data[HEADER_LEN:]

    def kind_of(self, data: bytes | None) -> str | None:
        """The record family ``data`` claims to be (``directive``, ``heartbeat``, ...), or None if it is
        not a single-object record of a known schema.  Reads the header only."""
        if data is None:
            return None
        try:
            return self.split(data)[0].name
        except (NotSingleObject, UnknownFingerprint):
            return None

    def decode(self, data: bytes, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        writer, body = self.split(data)
        if expect is not None and writer.name != expect:
            raise UndecodableBody(f"expected a {expect} record, got {writer.name}")
        reader = self._latest[writer.name]
        stream = io.BytesIO(body)
        try:
            datum = fastavro.schemaless_reader(stream, writer.schema, reader.schema if reader is not writer else None)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on garbage
            raise UndecodableBody(f"body does not decode as {writer.name} v{writer.version}: {exc}") from None
        if stream.tell() != len(body):
            raise UndecodableBody(f"{len(body) - stream.tell()} trailing bytes after the record")
        if not isinstance(datum, dict):
            raise UndecodableBody(f"body of {writer.name} is not a record")
        return writer.name, datum

    # Model-level helpers ---------------------------------------------------

    def encode_model(self, model: BaseModel) -> bytes:
        return self.encode(SCHEMA_NAMES[type(model)], model.model_dump())

    def decode_model(self, data: bytes, cls: type[M]) -> M:
        _, datum = self.decode(data, expect=SCHEMA_NAMES[cls])
        try:
            return cls.model_validate(datum)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UndecodableBody(f"{SCHEMA_NAMES[cls]} field {where}: {first['msg']}") from None


def default_schema_root() -> Path:
    """``schemas/`` beside the ``services`` package (the repository layout)."""
    return Path(__file__).resolve().parents[2] / "schemas"


@cache
def default_registry() -> SchemaRegistry:
    """The registry of :func:`default_schema_root`, loaded on first use and shared."""
    return SchemaRegistry(default_schema_root())
