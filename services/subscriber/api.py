"""The subscriber's HTTP API (OpenAPI at ``/openapi.json``).

Answers come from the in-memory index of the store, never from Kafka, so a check
is answered even while the exchange is unreachable; ``as_of`` says how fresh the
answer is and ``/healthz`` turns ``degraded`` when the feed has gone stale.

``/v1/check`` is the hot path (an airline counter asks it thousands of times a
second), so :class:`CheckApp` answers well-formed check requests itself, before
FastAPI's routing, dependency injection and response validation, writing the JSON
directly.  Anything it does not recognise as plainly valid (an ``at``, a repeated
parameter, a bad length, a body that does not parse) goes to the FastAPI routes
below, which answer the same question the same way and own every error answer:
the OpenAPI document FastAPI generates from them therefore describes both paths.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from json.encoder import encode_basestring_ascii as _js  # type: ignore[attr-defined]
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from services.ops.metrics import CONTENT_TYPE_LATEST, exposition
from services.subscriber.service import SubscriberService
from services.subscriber.types import (
    BulkCheckRequest,
    BulkCheckResult,
    CheckResult,
    EntryHistory,
    Health,
    Instant,
    Problem,
)

JSON = "application/json"
MAX_ID, MAX_SCHEME, MAX_MEASURE = 64, 32, 128


def at_seconds(value: datetime | None, where: tuple[str, ...]) -> float:
    """``at`` as epoch seconds; a naive or unrepresentable time is the caller's error (422)."""
    if value is None:
        return time.time()
    problem = None
    if value.tzinfo is None or value.utcoffset() is None:
        problem = ("timezone_aware", "`at` must carry a time zone, e.g. 2026-03-10T00:00:00Z")
    else:
        try:
            return value.timestamp()
        except (OverflowError, OSError, ValueError):
            problem = ("datetime_range", "`at` is outside the range of representable times")
    raise RequestValidationError([{"type": problem[0], "loc": where, "msg": problem[1], "input": value.isoformat()}])


def answer_json(svc: SubscriberService, value: str, scheme: str | None, measure: str | None, at: float) -> str:
    """One check answer, as the JSON text of :class:`CheckResult`."""
    hits = svc.store.check(value, scheme=scheme, measure=measure, at=at)
    restricted = False
    for h in hits:
        if h.kind == "PUNISH":
            restricted = True
            break
    (svc.checks_restricted if restricted else svc.checks_clear).inc()
    as_of = svc.as_of()
    return (f'{{"id":{_js(value)},"scheme":{"null" if scheme is None else _js(scheme)},'
            f'"restricted":{"true" if restricted else "false"},'
            f'"measures":[{",".join(h.json_text() for h in hits)}],'
            f'"as_of":{"null" if as_of is None else _js(as_of)}}}')


def bulk_json(svc: SubscriberService, req: BulkCheckRequest, at: float) -> str:
    return '{"results":[' + ",".join(answer_json(svc, v, req.scheme, req.measure, at) for v in req.ids) + "]}"


def build_api(svc: SubscriberService) -> FastAPI:
    """The FastAPI routes: the OpenAPI document, and every answer the fast path leaves to them."""
    app = FastAPI(
        title=f"Concord subscriber — {svc.agency}",
        version="1",
        description="Is this subject restricted for this measure now? Answers from the agency's verified store.",
    )

    @app.get("/v1/check", response_model=CheckResult, responses={
        422: {"description": "a parameter is missing, too long, given twice, or `at` is not a time with a zone"}})
    async def check(
        id: Annotated[str, Query(min_length=1, max_length=MAX_ID, description="identifier value")],
        scheme: Annotated[str | None, Query(max_length=MAX_SCHEME, description="identifier scheme, e.g. CN_RIC")] = None,
        measure: Annotated[str | None, Query(max_length=MAX_MEASURE, description="only this measure")] = None,
        at: Annotated[Instant | None, Query(description="RFC 3339 time with zone; default now")] = None,
    ) -> Response:
        text = answer_json(svc, id, scheme, measure, at_seconds(at, ("query", "at")))
        return Response(text, media_type=JSON)

    @app.post("/v1/check", response_model=BulkCheckResult,
              responses={400: {"model": Problem, "description": "the body is not JSON"}})
    async def check_bulk(req: BulkCheckRequest) -> Response:
        return Response(bulk_json(svc, req, at_seconds(req.at, ("body", "at"))), media_type=JSON)

    @app.get("/v1/entries/{entry_id:path}", response_model=EntryHistory,
             responses={404: {"model": Problem, "description": "no directive for this entry in the store"}})
    async def entry(entry_id: str) -> EntryHistory:
        """Every directive applied for an entry (``origin/entry_id`` narrows to one publishing agency)."""
        rows = svc.store.history(entry_id)
        if not rows:
            raise HTTPException(status_code=404, detail=f"no directive for entry {entry_id!r} in this store")
        return EntryHistory.model_validate({"entry_id": entry_id, "directives": rows})

    @app.get("/healthz", response_model=Health,
             responses={503: {"model": Health, "description": "starting, or the feed is stale (degraded)"}})
    async def healthz() -> Response:
        h = svc.health()
        code = 200 if h.status == "ok" else 503
        return Response(h.model_dump_json(), status_code=code, media_type=JSON)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(exposition(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class CheckApp:
    """The ASGI application uvicorn serves: the check fast path in front of :func:`build_api`."""

    def __init__(self, svc: SubscriberService) -> None:
        self.svc = svc
        self.api = build_api(svc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/check":
            if scope["method"] == "GET":
                text = self._get(scope["query_string"])
                if text is not None:
                    await _respond(send, *text)
                    return
            elif scope["method"] == "POST":
                receive = await self._post(scope, receive, send)
                if receive is None:
                    return
        await self.api(scope, receive, send)

    def _get(self, query: bytes) -> tuple[str, int] | None:
        """The answer to a plainly valid check without ``at``, else None (FastAPI decides).

        A parameter given twice is refused here (FastAPI would silently keep the last
        one): ``id=A&id=B`` is a question nobody can answer as asked.
        """
        params: dict[str, str] = {}
        for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if k in params and k in ("id", "scheme", "measure", "at"):
                problem = {"type": "repeated_parameter", "loc": ["query", k], "msg": f"give `{k}` only once",
                           "input": v}
                return json.dumps({"detail": [problem]}), 422
            params[k] = v
        value, scheme, measure = params.get("id"), params.get("scheme"), params.get("measure")
        if value is None or "at" in params:
            return None
        if not 0 < len(value) <= MAX_ID or (scheme is not None and len(scheme) > MAX_SCHEME) or (
                measure is not None and len(measure) > MAX_MEASURE):
            return None
        return answer_json(self.svc, value, scheme, measure, time.time()), 200

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer a well-formed bulk check; else hand FastAPI a ``receive`` that replays the body."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive  # the client went away: let the framework see it
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.split(b";")[0].strip() == JSON.encode():
            try:
                req: BulkCheckRequest | None = BulkCheckRequest.model_validate_json(body)
            except ValidationError:
                req = None
            if req is not None:
                try:
                    at = at_seconds(req.at, ("body", "at"))
                except RequestValidationError:
                    pass
                else:
                    await _respond(send, bulk_json(self.svc, req, at))
                    return None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    # FastAPI's own attributes (openapi(), routes, state) stay reachable for tools and tests.
    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


async def _respond(send: Send, text: str, status: int = 200) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
