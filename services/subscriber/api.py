"""The subscriber's HTTP API (OpenAPI at ``/openapi.json``).

Answers come from the in-memory index of the store, never from Kafka, so a check
is answered even while the exchange is unreachable; ``as_of`` says how fresh the
answer is and ``/healthz`` turns ``degraded`` when the feed has gone stale.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from services.ops.metrics import CONTENT_TYPE_LATEST, exposition
from services.subscriber.service import SubscriberService
from services.subscriber.store import punitive
from services.subscriber.types import BulkCheckRequest, BulkCheckResult, CheckResult, Health, MeasureHit


def _at(value: datetime | None) -> float:
    if value is None:
        return time.time()
    if value.tzinfo is None:
        raise HTTPException(status_code=422, detail="`at` must carry a time zone, e.g. 2026-03-10T00:00:00Z")
    return value.timestamp()


def answer(svc: SubscriberService, value: str, scheme: str | None, measure: str | None, at: float) -> CheckResult:
    hits = svc.store.check(value, scheme=scheme, measure=measure, at=at)
    restricted = punitive(hits)
    svc.metrics.checks.labels(svc.agency, "restricted" if restricted else "clear").inc()
    return CheckResult(
        id=value, scheme=scheme, restricted=restricted,
        measures=[MeasureHit.model_validate(h.as_json()) for h in hits], as_of=svc.as_of(),
    )


def build_api(svc: SubscriberService) -> FastAPI:
    app = FastAPI(
        title=f"Concord subscriber — {svc.agency}",
        version="1",
        description="Is this subject restricted for this measure now? Answers from the agency's verified store.",
    )

    @app.get("/v1/check", response_model=CheckResult)
    async def check(
        id: Annotated[str, Query(min_length=1, max_length=64, description="identifier value")],
        scheme: Annotated[str | None, Query(max_length=32)] = None,
        measure: Annotated[str | None, Query(max_length=128)] = None,
        at: Annotated[datetime | None, Query(description="ISO 8601 time with zone; default now")] = None,
    ) -> CheckResult:
        return answer(svc, id, scheme, measure, _at(at))

    @app.post("/v1/check", response_model=BulkCheckResult)
    async def check_bulk(req: BulkCheckRequest) -> BulkCheckResult:
        at = _at(req.at)
        return BulkCheckResult(results=[answer(svc, v, req.scheme, req.measure, at) for v in req.ids])

    @app.get("/v1/entries/{entry_id:path}")
    async def entry(entry_id: str) -> dict[str, object]:
        rows = svc.store.history(entry_id)
        if not rows:
            raise HTTPException(status_code=404, detail=f"no directive for entry {entry_id!r} in this store")
        return {"entry_id": entry_id, "directives": rows}

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Response:
        h = svc.health()
        code = 200 if h.status == "ok" else 503
        return Response(h.model_dump_json(), status_code=code, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(exposition(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.state.started = datetime.now(UTC)
    return app
