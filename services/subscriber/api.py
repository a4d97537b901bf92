"""The subscriber's HTTP API (OpenAPI at ``/openapi.json``).

Answers come from the in-memory index of the store, never from Kafka; whether they
may say ``restricted`` or ``clear`` is decided by the feed's freshness
(:meth:`SubscriberService.current`): otherwise they say ``unknown``.

Known callers only.  :class:`CheckApp` stands in front of every route but
``/healthz``, ``/metrics`` and the OpenAPI document and, before anything else:

1. identifies the client — a TLS client certificate the handshake verified against
   the agency's CA (see :mod:`services.subscriber.tls`), or an API key — against
   the clients file (:mod:`services.subscriber.clients`): 401 without one;
2. counts it against its rate: 429 with ``Retry-After``;
3. checks its scope: ``check`` for ``/v1/check``, ``entries`` for ``/v1/entries``: 403;
4. caps the request: a query string over :attr:`RequestLimits.max_query` (414), a body
   over :attr:`RequestLimits.max_body` (413, from ``Content-Length`` before a byte of
   it is read, or as soon as a chunked body passes it; the connection is closed), a
   body that does not arrive within :attr:`RequestLimits.body_timeout` (408).

``/v1/check`` is the hot path (an airline counter asks it thousands of times a
second), so the app answers well-formed check requests itself, before FastAPI's
routing, dependency injection and response validation, writing the JSON directly.
Anything it does not recognise as plainly valid (a repeated parameter, a bad
length, a body that does not parse) goes to the FastAPI routes below, which answer
the same question the same way and own every error answer: the OpenAPI document
FastAPI generates from them therefore describes both paths.

Every identifier is normalised and validated before it is looked up
(:func:`services.core.identifiers.query_identifier`); a malformed one is answered
422 with the reason, never "clear".  Every identifier asked, answered or refused,
goes to the query log (:mod:`services.subscriber.querylog`) with the client's name.
A client with the ``check`` scope alone is told whether it is restricted and which
measures apply; the provenance of each measure needs ``details``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii as _js
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from services.core.identifiers import query_identifier
from services.ops.metrics import CONTENT_TYPE_LATEST, exposition
from services.subscriber.clients import Client, Clients
from services.subscriber.clients import Scope as ClientScope
from services.subscriber.querylog import QueryLog
from services.subscriber.service import SubscriberService
from services.subscriber.types import (
    MAX_BULK,
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
CLIENT = "concord.client"  # where the identified client travels in the ASGI scope
PUBLIC = frozenset({"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


@dataclass(frozen=True)
class RequestLimits:
    max_body: int = 256 * 1024  # 1,000 ids of 64 characters, escaped, fit with room to spare
    max_query: int = 8192  # the longest valid question, every character percent-encoded UTF-8, is ~3 KiB
    body_timeout: float = 10.0


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


class Answers:
    """Check answers as JSON text, each logged: shared by the fast path and the FastAPI routes."""

    def __init__(self, svc: SubscriberService, log: QueryLog) -> None:
        self.svc = svc
        self.log = log
        self.counted = svc.checks

    def refusals(
        self, values: list[str], scheme: str | None, where: tuple[str, ...], client: Client, measure: str | None
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """The normalised values, and a 422 problem for each malformed one (logged as ``invalid``)."""
        normal: list[str] = []
        problems: list[dict[str, Any]] = []
        now = time.time()
        for i, value in enumerate(values):
            n, problem = query_identifier(value, scheme)
            normal.append(n)
            if problem is not None:
                loc = [*where, i] if where[-1] == "ids" else list(where)
                problems.append({"type": "invalid_identifier", "loc": loc, "msg": problem, "input": value})
                self.log.record(
                    now, client.name, client.scope, "check", self.log.subject(n), scheme, measure, "invalid"
                )
                self.counted["invalid"].inc()
        return normal, problems

    def one(
        self, value: str, scheme: str | None, measure: str | None, at: float, now: float, current: bool, client: Client
    ) -> str:
        hits = self.svc.store.check(value, scheme=scheme, measure=measure, at=at)
        if not current:
            status = "unknown"
        else:
            status = "clear"
            for h in hits:
                if h.kind == "PUNISH":
                    status = "restricted"
                    break
        self.counted[status].inc()
        self.log.record(
            now,
            client.name,
            client.scope,
            "check",
            self.log.subject(value),
            scheme,
            measure,
            status,
            ",".join(h.measure_id for h in hits),
        )
        if client.details:
            measures = ",".join(h.json_text() for h in hits)
        else:
            measures = ",".join(f'{{"measure_id":{_js(h.measure_id)},"kind":"{h.kind}"}}' for h in hits)
        as_of = self.svc.as_of()
        return (
            f'{{"id":{_js(value)},"scheme":{"null" if scheme is None else _js(scheme)},'
            f'"status":"{status}","restricted":{"false" if status == "clear" else "true"},'
            f'"measures":[{measures}],'
            f'"as_of":{"null" if as_of is None else _js(as_of)}}}'
        )

    def single(self, value: str, scheme: str | None, measure: str | None, at: float, client: Client) -> str:
        now = time.time()
        return self.one(value, scheme, measure, at, now, self.svc.current(now), client)

    def many(self, values: list[str], scheme: str | None, measure: str | None, at: float, client: Client) -> str:
        now = time.time()
        current = self.svc.current(now)
        return '{"results":[' + ",".join(self.one(v, scheme, measure, at, now, current, client) for v in values) + "]}"


def _client(request: Request) -> Client:
    client = request.scope.get(CLIENT)
    if not isinstance(client, Client):  # the routes are only reachable through CheckApp
        raise HTTPException(status_code=401, detail="a client identity is required")
    return client


def _check_body(scheme: str | None, measure: str | None) -> None:
    for field, value, limit in (("scheme", scheme, MAX_SCHEME), ("measure", measure, MAX_MEASURE)):
        if value is not None and len(value) > limit:
            raise RequestValidationError(
                [
                    {
                        "type": "string_too_long",
                        "loc": ("body", field),
                        "msg": f"at most {limit} characters",
                        "input": value,
                    }
                ]
            )


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no client identity (client certificate or API key)"},
    403: {"model": Problem, "description": "the client's scopes do not allow this"},
    429: {"model": Problem, "description": "the client is over its rate; see Retry-After"},
}


def build_api(svc: SubscriberService, answers: Answers) -> FastAPI:
    """The FastAPI routes: the OpenAPI document, and every answer the fast path leaves to them."""
    app = FastAPI(
        title=f"Concord subscriber — {svc.agency}",
        version="2",
        description="Is this subject restricted for this measure now? Answers from the agency's verified store, "
        "to the clients the agency declared (client certificate or API key), each query logged.",
    )

    @app.get(
        "/v1/check",
        response_model=CheckResult,
        responses={
            **AUTH_RESPONSES,
            414: {"model": Problem, "description": "the query string is too long"},
            422: {
                "description": "a parameter is missing, too long, given twice, `at` is not a time with a zone, "
                "or the identifier is malformed (the reason says why)"
            },
        },
    )
    async def check(
        request: Request,
        ident: Annotated[str, Query(alias="id", min_length=1, max_length=MAX_ID, description="identifier value")],
        scheme: Annotated[
            str | None, Query(max_length=MAX_SCHEME, description="identifier scheme, e.g. CN_RIC")
        ] = None,
        measure: Annotated[str | None, Query(max_length=MAX_MEASURE, description="only this measure")] = None,
        at: Annotated[Instant | None, Query(description="RFC 3339 time with zone; default now")] = None,
    ) -> Response:
        client = _client(request)
        when = at_seconds(at, ("query", "at"))
        scheme, measure = scheme or None, measure or None  # an empty parameter is an absent one
        (value,), problems = answers.refusals([ident], scheme, ("query", "id"), client, measure)
        if problems:
            raise RequestValidationError(problems)
        return Response(answers.single(value, scheme, measure, when, client), media_type=JSON)

    @app.post(
        "/v1/check",
        response_model=BulkCheckResult,
        responses={
            **AUTH_RESPONSES,
            400: {"model": Problem, "description": "the body is not JSON"},
            408: {"model": Problem, "description": "the body did not arrive in time"},
            413: {"model": Problem, "description": "the body is larger than the subscriber accepts"},
            422: {
                "description": f"not a bulk question (at most {MAX_BULK} ids), or malformed identifiers (each "
                "with its reason)"
            },
        },
    )
    async def check_bulk(request: Request, req: BulkCheckRequest) -> Response:
        client = _client(request)
        _check_body(req.scheme, req.measure)
        when = at_seconds(req.at, ("body", "at"))
        values, problems = answers.refusals(list(req.ids), req.scheme, ("body", "ids"), client, req.measure)
        if problems:
            raise RequestValidationError(problems)
        return Response(answers.many(values, req.scheme, req.measure, when, client), media_type=JSON)

    @app.get(
        "/v1/entries/{entry_id:path}",
        response_model=EntryHistory,
        responses={
            **AUTH_RESPONSES,
            404: {"model": Problem, "description": "no directive for this entry in the store"},
        },
    )
    async def entry(request: Request, entry_id: str) -> EntryHistory:
        """Every directive applied for an entry (``origin/entry_id`` narrows to one publishing agency).

        Needs the ``entries`` scope (auditors)."""
        client = _client(request)
        rows = svc.store.history(entry_id)
        answers.log.record(
            time.time(),
            client.name,
            client.scope,
            "entries",
            answers.log.subject(entry_id),
            None,
            None,
            "found" if rows else "none",
        )
        if not rows:
            raise HTTPException(status_code=404, detail=f"no directive for entry {entry_id!r} in this store")
        return EntryHistory.model_validate({"entry_id": entry_id, "directives": rows})

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "starting, or not current (degraded)"}},
    )
    async def healthz() -> Response:
        h = svc.health()
        code = 200 if h.status == "ok" else 503
        return Response(h.model_dump_json(), status_code=code, media_type=JSON)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(exposition(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = plain_openapi()
            doc.setdefault("components", {})["securitySchemes"] = {
                "clientCertificate": {
                    "type": "mutualTLS",
                    "description": "a certificate issued by the agency's CA to a declared client",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`<client name>.<secret>`, as issued by the agency",
                },
            }
            for path, ops in doc["paths"].items():
                if path.startswith("/v1/"):
                    for op in ops.values():
                        op["security"] = [{"clientCertificate": []}, {"apiKey": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the document
    return app


class CheckApp:
    """The ASGI application uvicorn serves: identity, rate, scope and size first, then the
    check fast path in front of :func:`build_api`."""

    def __init__(
        self,
        svc: SubscriberService,
        clients: Clients,
        log: QueryLog,
        limits: RequestLimits | None = None,
        *,
        fast: bool = True,
    ) -> None:
        self.svc = svc
        self.clients = clients
        self.limits = limits or RequestLimits()
        self.answers = Answers(svc, log)
        self.api = build_api(svc, self.answers)
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC:
            await self.api(scope, receive, send)
            return
        client = await self._identify(scope)
        if client is None:
            await _respond(
                send,
                '{"detail":"a client identity is required: a client certificate issued by the '
                'agency, or an API key (Authorization: Bearer <name>.<secret>)"}',
                401,
                [(b"www-authenticate", b'Bearer realm="concord"')],
            )
            return
        retry = self.clients.admit(client)
        if retry is not None:
            await _respond(
                send,
                f'{{"detail":"client {client.name} is over its rate"}}',
                429,
                [(b"retry-after", str(int(retry)).encode())],
            )
            return
        path = scope["path"]
        needed = (
            ClientScope.CHECK
            if path == "/v1/check"
            else ClientScope.ENTRIES
            if path.startswith("/v1/entries/")
            else None
        )
        if needed is not None and needed not in client.scopes:
            await _respond(send, f'{{"detail":"client {client.name} lacks the {needed} scope"}}', 403)
            return
        if len(scope.get("query_string", b"")) > self.limits.max_query:
            await _respond(send, f'{{"detail":"the query string is longer than {self.limits.max_query} bytes"}}', 414)
            return
        scope[CLIENT] = client
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._body(scope, receive, send)
            if body is None:
                return
            receive = _replay(body, receive)
            if self.fast and path == "/v1/check":
                answer = self._post(scope, body, client)
                if answer is not None:
                    await _respond(send, answer)
                    return
        elif self.fast and path == "/v1/check" and scope["method"] == "GET":
            text = self._get(scope["query_string"], client)
            if text is not None:
                await _respond(send, *text)
                return
        await self.api(scope, receive, send)

    async def _identify(self, scope: Scope) -> Client | None:
        tls = scope.get("extensions", {}).get("tls")
        if tls is not None:
            client = self.clients.by_certificate(tls.get("client_cert_name"))
            if client is not None:
                return client
        for name, value in scope["headers"]:
            if name == b"authorization":
                kind, _, token = value.decode("latin-1").partition(" ")
                if kind.lower() != "bearer" or not token:
                    return None
                return self.clients.remembered_key(token) or await self.clients.by_api_key(token)
        return None

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The request body within the caps, else None (answered 413 or 408, connection closed)."""
        cap = self.limits.max_body
        close = [(b"connection", b"close")]
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = cap + 1
                if declared > cap:
                    await _respond(send, f'{{"detail":"the body is larger than {cap} bytes"}}', 413, close)
                    return None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return None  # the client went away
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > cap:
                        await _respond(send, f'{{"detail":"the body is larger than {cap} bytes"}}', 413, close)
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            await _respond(send, '{"detail":"the body did not arrive in time"}', 408, close)
            return None

    def _get(self, query: bytes, client: Client) -> tuple[str, int] | None:
        """The answer to a plainly valid check without ``at``, else None (FastAPI decides).

        A parameter given twice is refused here (FastAPI would silently keep the last
        one): ``id=A&id=B`` is a question nobody can answer as asked.
        """
        params: dict[str, str] = {}
        for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if k in params and k in ("id", "scheme", "measure", "at"):
                problem = {
                    "type": "repeated_parameter",
                    "loc": ["query", k],
                    "msg": f"give `{k}` only once",
                    "input": v,
                }
                return json.dumps({"detail": [problem]}), 422
            params[k] = v
        value, scheme, measure = params.get("id"), params.get("scheme"), params.get("measure")
        if value is None or "at" in params:
            return None
        if (
            not 0 < len(value) <= MAX_ID
            or (scheme is not None and len(scheme) > MAX_SCHEME)
            or (measure is not None and len(measure) > MAX_MEASURE)
        ):
            return None
        scheme = scheme or None
        normal, invalid = query_identifier(value, scheme)
        if invalid is not None:
            return None  # the route answers 422 (and logs it)
        return self.answers.single(normal, scheme, measure or None, time.time(), client), 200

    def _post(self, scope: Scope, body: bytes, client: Client) -> str | None:
        """The answer to a well-formed bulk check; None if FastAPI should decide."""
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if content_type.split(b";")[0].strip() != JSON.encode():
            return None
        try:
            req = BulkCheckRequest.model_validate_json(body)
        except ValidationError:
            return None
        if (req.scheme is not None and len(req.scheme) > MAX_SCHEME) or (
            req.measure is not None and len(req.measure) > MAX_MEASURE
        ):
            return None
        try:
            at = at_seconds(req.at, ("body", "at"))
        except RequestValidationError:
            return None
        normal = []
        for v in req.ids:
            n, problem = query_identifier(v, req.scheme)
            if problem is not None:
                return None
            normal.append(n)
        return self.answers.many(normal, req.scheme, req.measure, at, client)

    # FastAPI's own attributes (openapi(), routes, state) stay reachable for tools and tests.
    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, text: str, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
