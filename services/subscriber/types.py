"""The check API's request and answer types, shared by the service and the client
(:mod:`services.subscriber.client`): what the OpenAPI document publishes is these."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

IdValue = Annotated[str, Field(min_length=1, max_length=64)]

Status = Literal["restricted", "clear", "unknown"]
# How a check question was answered, as the metrics and the query log count it.
CHECK_RESULTS: tuple[str, ...] = ("restricted", "clear", "unknown", "invalid")
MAX_BULK = 1000

_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")


def parse_instant(value: object) -> datetime:
    """An RFC 3339 date-time *with* its offset, as the OpenAPI ``date-time`` format says.

    Stricter than pydantic's datetime on purpose: a bare number (read as epoch
    seconds) or a time without a zone would be a guess about what the caller meant.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a time zone, e.g. 2026-03-10T00:00:00Z")
        return value
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-03-10T00:00:00Z")
    day, clock, fraction, zone = m.groups()
    micros = f".{(fraction or '0')[:6]:0<6}"
    return datetime.fromisoformat(f"{day}T{clock}{micros}{'+00:00' if zone in 'Zz' else zone}")


Instant = Annotated[datetime, BeforeValidator(parse_instant), WithJsonSchema({"type": "string", "format": "date-time"})]


class MeasureHit(BaseModel):
    """A measure held for the subject.

    A client with the ``check`` scope alone gets the measure and its kind; the
    provenance (MOU, entry, origin, validity window; ``valid_until`` null means
    open-ended) needs the ``details`` scope.
    """

    model_config = ConfigDict(frozen=True)

    measure_id: str
    kind: Literal["PUNISH", "INCENT"]
    mou_id: str | None = None
    entry_id: str | None = None
    origin_agency: str | None = None
    valid_from: str | None = None
    valid_until: str | None = None


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(description="the identifier as asked, normalised (NFKC, case, whitespace)")
    scheme: str | None = None
    status: Status = Field(
        description="restricted: a PUNISH measure applies at the given time; clear: none does; "
        "unknown: the store is not known to be current (bootstrapping, the feed "
        "not confirmed by the broker, or no fan-out heartbeat) — never read as clear"
    )
    restricted: bool = Field(
        description="status != 'clear', for callers that read only this: an unknown answer is never a clear one"
    )
    measures: list[MeasureHit]
    as_of: str | None = Field(description="when the store last confirmed it had read its whole feed")


class BulkCheckRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: Annotated[list[IdValue], Field(min_length=1, max_length=MAX_BULK)]
    scheme: str | None = None
    measure: str | None = None
    at: Instant | None = None


class BulkCheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    results: list[CheckResult]


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "degraded", "starting"]
    agency: str
    active_directives: int
    lag: int | None
    as_of: str | None
    last_applied_at: str | None
    heartbeat_age: float | None = Field(
        default=None,
        description="seconds since the oldest partition's latest fan-out heartbeat (null: none, or not required)",
    )
    detail: str | None = None
    registry: str | None = Field(
        default=None,
        description="the signed registry verified against: its serial and publication time, or why it is not "
        "current (null: the subscriber runs on files)",
    )


class DirectiveRecord(BaseModel):
    """One directive applied to the store, with where it was read (its provenance)."""

    model_config = ConfigDict(frozen=True)

    directive_id: str
    key: str
    origin_agency: str
    entry_id: str
    seq: int
    action: Literal["APPLY", "LIFT"]
    cause: str
    measure_id: str
    mou_id: str
    mou_version: int
    entry_version: int
    issued_at: str
    applied_at: str
    status: str
    topic: str
    partition: int
    offset: int


class EntryHistory(BaseModel):
    model_config = ConfigDict(frozen=True)

    entry_id: str
    directives: list[DirectiveRecord]


class Problem(BaseModel):
    """An error answer that is not a request validation error."""

    detail: str
