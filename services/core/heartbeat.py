"""The fan-out's heartbeat on a directive partition: recognise it, verify it, or refuse it.

A heartbeat travels on the directive topic beside the directives (its key is
:func:`~services.core.models.heartbeat_key`), so a subscriber tells it apart by its
schema, not by its key: :func:`is_heartbeat` looks only at the single-object header.
:func:`admit_heartbeat` then checks what a directive's wrapper gets checked for — the
fan-out's signature under its own domain (a directive's signature can never pass for
a heartbeat's, nor the reverse) at the broker's timestamp — and that it speaks of the
partition and the agency it was read from: a heartbeat copied to another partition or
another agency's topic would otherwise vouch for a partition whose writer is down.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from services.core.codec import SCHEMA_NAMES, SchemaRegistry
from services.core.errors import CodecError, SignatureInvalid
from services.core.intake import FANOUT_PRINCIPAL, Refused
from services.core.models import Heartbeat
from services.core.reasons import Reason
from services.core.signing import Domain, Keyring, SignedHeaders

HEARTBEAT = SCHEMA_NAMES[Heartbeat]


def is_heartbeat(schemas: SchemaRegistry, value: bytes | None) -> bool:
    """Whether ``value`` was written with the heartbeat schema (header only; nothing is decoded)."""
    if not value:
        return False
    try:
        writer, _ = schemas.split(value)
    except CodecError:
        return False
    return writer.name == HEARTBEAT


def admit_heartbeat(
    *,
    agency: str,
    partition: int,
    value: bytes,
    headers: Iterable[tuple[str, bytes]] | None,
    timestamp_ms: int,
    keyring: Keyring,
    schemas: SchemaRegistry,
) -> Heartbeat:
    """The heartbeat read from ``agency``'s directive ``partition``, verified, or Refused."""
    at = datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, UTC)
    try:
        keyring.verify(
            Domain.HEARTBEAT, value, SignedHeaders.from_kafka(headers), expected_agency=FANOUT_PRINCIPAL, at=at
        )
    except SignatureInvalid as exc:
        raise Refused(exc.reason, exc.message) from None
    try:
        beat = schemas.decode_model(value, Heartbeat)
    except CodecError as exc:
        raise Refused(exc.reason, exc.message) from None
    if beat.subscriber != agency:
        raise Refused(Reason.WRONG_SUBSCRIBER, f"heartbeat is for {beat.subscriber!r}, not {agency!r}")
    if beat.partition != partition:
        raise Refused(
            Reason.WRONG_PARTITION, f"heartbeat of partition {beat.partition} read from partition {partition}"
        )
    return beat
