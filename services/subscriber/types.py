"""The check API's request and answer types, shared by the service and the client."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

IdValue = Annotated[str, Field(min_length=1, max_length=64)]


class MeasureHit(BaseModel):
    model_config = ConfigDict(frozen=True)

    measure_id: str
    kind: Literal["PUNISH", "INCENT"]
    mou_id: str
    entry_id: str
    origin_agency: str
    valid_from: str
    valid_until: str | None


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    scheme: str | None = None
    restricted: bool = Field(description="true when a PUNISH measure applies at the given time")
    measures: list[MeasureHit]
    as_of: str | None = Field(description="when the store last confirmed it had read its whole feed")


class BulkCheckRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: Annotated[list[IdValue], Field(min_length=1, max_length=1000)]
    scheme: str | None = None
    measure: str | None = None
    at: datetime | None = None


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
    detail: str | None = None
