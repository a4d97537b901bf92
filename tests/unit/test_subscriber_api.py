"""The subscriber's HTTP API in-process over a real store (no broker, the feed never
started): known clients only (API keys, certificates, scopes, rates, caps), the
hand-written check path answers exactly what the FastAPI routes answer, every error
is FastAPI's, answers are ``unknown`` unless the store is current, malformed
identifiers are refused, every question is in the query log, and health follows the
feed's clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from services.subscriber.api import CheckApp, RequestLimits
from services.subscriber.clients import Clients
from services.subscriber.querylog import QueryLog
from services.subscriber.service import SubscriberService, assess_health
from services.subscriber.store import DirectiveStore
from services.subscriber.types import BulkCheckResult, CheckResult, EntryHistory, Health
from tests.unit.factories import ENTRY_ID, KNOWN_RIC, KNOWN_RIC_X, KNOWN_USCC
from tests.unit.subscriber_factories import (
    AUDITOR,
    AVIATION,
    RAIL,
    SECRET,
    client_specs,
    fill,
    offline_service,
)

pytestmark = pytest.mark.unit

COUNTER = f"counter.{SECRET}"
SLOW = f"slow.{SECRET}"
WRONG_RIC = KNOWN_RIC[:-1] + ("0" if KNOWN_RIC[-1] != "0" else "1")
QUERY_KEY = b"k" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DirectiveStore]:
    store = DirectiveStore(tmp_path / "aviation.sqlite", "aviation")
    fill(store)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def svc(store: DirectiveStore) -> SubscriberService:
    return offline_service(store)


@pytest.fixture
def querylog(tmp_path: Path) -> Iterator[QueryLog]:
    log = QueryLog(tmp_path / "queries.sqlite", QUERY_KEY)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture(scope="module")
def clients() -> Clients:
    return Clients(client_specs())


def app_for(
    svc: SubscriberService, clients: Clients, log: QueryLog, *, fast: bool = True, limits: RequestLimits | None = None
) -> CheckApp:
    return CheckApp(svc, clients, log, limits, fast=fast)


def as_client(key: str | None, **kw: Any) -> dict[str, Any]:
    return {"headers": {"authorization": f"Bearer {key}"}} if key else {}


@pytest.fixture
async def http(svc: SubscriberService, clients: Clients, querylog: QueryLog) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_for(svc, clients, querylog))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(AUDITOR)) as c:
        yield c


async def via_fastapi(
    svc: SubscriberService, clients: Clients, log: QueryLog, method: str, url: str, **kw: Any
) -> httpx.Response:
    """The same request, answered by the FastAPI routes alone (no fast path)."""
    transport = httpx.ASGITransport(app=app_for(svc, clients, log, fast=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(AUDITOR)) as c:
        return await c.request(method, url, **kw)


@pytest.mark.parametrize(
    "params",
    [
        {"id": KNOWN_RIC},
        {"id": f" {KNOWN_RIC} "},
        {"id": KNOWN_RIC, "measure": AVIATION},
        {"id": KNOWN_RIC, "scheme": "CN_RIC", "measure": RAIL},
        {"id": KNOWN_RIC, "scheme": ""},
        {"id": KNOWN_USCC},
        {"id": KNOWN_RIC_X},
        {"id": "nobody"},
        {"id": 'naïve "quoted" \\ id'},
        {"id": KNOWN_RIC, "unknown": "ignored"},
    ],
    ids=[
        "plain",
        "spaces",
        "measure",
        "scheme-measure",
        "empty-scheme",
        "incentive",
        "lifted",
        "unknown",
        "escaping",
        "extra-param",
    ],
)
async def test_fast_path_answers_what_fastapi_answers(
    svc: SubscriberService, clients: Clients, querylog: QueryLog, http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    fast = await http.get("/v1/check", params=params)
    slow = await via_fastapi(svc, clients, querylog, "GET", "/v1/check", params=params)
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == "application/json"
    fast_answer = CheckResult.model_validate_json(fast.content)
    assert fast_answer == CheckResult.model_validate_json(slow.content)
    assert fast.json() == slow.json()


async def test_check_answer(http: httpx.AsyncClient) -> None:
    answer = CheckResult.model_validate_json((await http.get("/v1/check", params={"id": KNOWN_RIC})).content)
    assert (answer.status, answer.restricted) == ("restricted", True)
    assert sorted(m.measure_id for m in answer.measures) == [AVIATION, RAIL]
    assert {m.entry_id for m in answer.measures} == {ENTRY_ID}
    assert answer.as_of is not None
    green = CheckResult.model_validate_json((await http.get("/v1/check", params={"id": KNOWN_USCC})).content)
    assert (green.status, green.restricted) == ("clear", False)
    assert [m.kind for m in green.measures] == ["INCENT"]


async def test_validity_is_enforced_at_the_time_asked(http: httpx.AsyncClient) -> None:
    async def measures(at: str) -> list[str]:
        r = await http.get("/v1/check", params={"id": KNOWN_RIC, "at": at})
        assert r.status_code == 200, r.text
        return sorted(m["measure_id"] for m in r.json()["measures"])

    assert await measures("2026-03-10T12:00:00Z") == [AVIATION, RAIL]
    assert await measures("2026-03-10T20:00:00+08:00") == [AVIATION, RAIL]
    assert await measures("2028-03-10T00:00:00Z") == [RAIL]  # aviation's window has ended; rail's is open
    assert await measures("2026-03-09T23:59:59Z") == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({}, ["query", "id"]),
        ({"id": ""}, ["query", "id"]),
        ({"id": "1" * 65}, ["query", "id"]),
        ({"id": KNOWN_RIC, "scheme": "S" * 33}, ["query", "scheme"]),
        ({"id": KNOWN_RIC, "measure": "m" * 129}, ["query", "measure"]),
        ({"id": KNOWN_RIC, "at": "2026-03-10T00:00:00"}, ["query", "at"]),
        ({"id": KNOWN_RIC, "at": "yesterday"}, ["query", "at"]),
        ({"id": WRONG_RIC}, ["query", "id"]),
        ({"id": WRONG_RIC, "scheme": "CN_RIC"}, ["query", "id"]),
        ({"id": KNOWN_RIC, "scheme": "CN_USCC"}, ["query", "id"]),
        ({"id": "nobody", "scheme": "cn ric"}, ["query", "id"]),
        ({"id": "a\x00b"}, ["query", "id"]),
    ],
    ids=[
        "no-id",
        "empty-id",
        "long-id",
        "long-scheme",
        "long-measure",
        "naive-at",
        "bad-at",
        "bad-check-char",
        "bad-ric",
        "ric-as-uscc",
        "bad-scheme",
        "control-char",
    ],
)
async def test_bad_questions_get_fastapi_validation_errors(
    http: httpx.AsyncClient, params: dict[str, str], loc: list[str]
) -> None:
    r = await http.get("/v1/check", params=params)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == loc


@pytest.mark.parametrize("param", ["id", "scheme", "measure", "at"])
async def test_a_parameter_given_twice_is_refused(http: httpx.AsyncClient, param: str) -> None:
    # FastAPI alone would quietly keep the last value; the question is ambiguous, so it is refused.
    first = {"id": KNOWN_RIC, "scheme": "CN_RIC", "measure": AVIATION, "at": "2026-03-10T12:00:00Z"}
    query = "&".join(f"{k}={v}" for k, v in first.items()) + f"&{param}={first[param]}"
    r = await http.get(f"/v1/check?{query}")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", param]


async def test_bulk_check(
    svc: SubscriberService, clients: Clients, querylog: QueryLog, http: httpx.AsyncClient
) -> None:
    body = {"ids": [KNOWN_RIC, "nobody", KNOWN_USCC], "measure": AVIATION}
    fast = await http.post("/v1/check", json=body)
    slow = await via_fastapi(svc, clients, querylog, "POST", "/v1/check", json=body)
    assert fast.status_code == slow.status_code == 200
    assert fast.json() == slow.json()
    results = BulkCheckResult.model_validate_json(fast.content).results
    assert [(r.id, r.restricted) for r in results] == [(KNOWN_RIC, True), ("nobody", False), (KNOWN_USCC, False)]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"ids": []}', {"content-type": "application/json"}),
        (b'{"ids": ["x"], "extra": 1}', {"content-type": "application/json"}),
        (b'{"ids": ["x"], "at": "2026-03-10T00:00:00"}', {"content-type": "application/json"}),
        (b'{"ids": ["x"', {"content-type": "application/json"}),
        (b'{"ids": ["' + b"1" * 65 + b'"]}', {"content-type": "application/json"}),
        (b'{"ids": ["nobody", "' + WRONG_RIC.encode() + b'"]}', {"content-type": "application/json"}),
    ],
    ids=["empty", "extra-field", "naive-at", "truncated", "long-id", "malformed-id"],
)
async def test_bad_bulk_questions_get_fastapi_errors(
    svc: SubscriberService,
    clients: Clients,
    querylog: QueryLog,
    http: httpx.AsyncClient,
    body: bytes,
    headers: dict[str, str],
) -> None:
    fast = await http.post("/v1/check", content=body, headers=headers)
    slow = await via_fastapi(svc, clients, querylog, "POST", "/v1/check", content=body, headers=headers)
    assert fast.status_code == slow.status_code == 422
    assert fast.json() == slow.json()


async def test_entry_history(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/entries/court/court-2026-9")
    assert r.status_code == 200
    history = EntryHistory.model_validate_json(r.content)
    assert [(d.action, d.status, d.seq) for d in history.directives] == [("APPLY", "APPLIED", 1), ("LIFT", "LIFTED", 2)]
    assert (await http.get("/v1/entries/court-2026-9")).json() == {**r.json(), "entry_id": "court-2026-9"}
    missing = await http.get("/v1/entries/market/court-2026-9")
    assert missing.status_code == 404 and "court-2026-9" in missing.json()["detail"]


async def test_health_of_a_subscriber_that_never_reached_the_exchange(
    store: DirectiveStore, clients: Clients, querylog: QueryLog
) -> None:
    transport = httpx.ASGITransport(app=app_for(offline_service(store, current=False), clients, querylog))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub") as c:
        r = await c.get("/healthz")  # no client identity needed: it names nobody
    assert r.status_code == 503
    h = Health.model_validate_json(r.content)
    assert (h.status, h.detail, h.active_directives, h.as_of) == ("starting", "connecting to the exchange", 3, None)


async def test_metrics_count_answers(http: httpx.AsyncClient) -> None:
    await http.get("/v1/check", params={"id": KNOWN_RIC})
    await http.post("/v1/check", json={"ids": ["a", "b"]})
    await http.get("/v1/check", params={"id": WRONG_RIC})
    text = (await http.get("/metrics")).text
    assert 'concord_subscriber_checks_total{agency="aviation",result="restricted"} 1.0' in text
    assert 'concord_subscriber_checks_total{agency="aviation",result="clear"} 2.0' in text
    assert 'concord_subscriber_checks_total{agency="aviation",result="invalid"} 1.0' in text


# --------------------------------------------------------------------------- known callers only


async def test_a_request_without_a_client_identity_is_refused(
    svc: SubscriberService, clients: Clients, querylog: QueryLog
) -> None:
    transport = httpx.ASGITransport(app=app_for(svc, clients, querylog))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub") as c:
        for method, url, kw in (
            ("GET", "/v1/check", {"params": {"id": KNOWN_RIC}}),
            ("POST", "/v1/check", {"json": {"ids": [KNOWN_RIC]}}),
            ("GET", "/v1/entries/court/court-2026-9", {}),
        ):
            for headers in (
                {},
                {"authorization": f"Bearer auditor.{SECRET}x"},
                {"authorization": "Bearer nobody.x"},
                {"authorization": f"Basic {AUDITOR}"},
            ):
                r = await c.request(method, url, headers=headers, **kw)
                assert r.status_code == 401, (method, url, headers)
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert KNOWN_RIC not in r.text
    querylog.flush()
    assert querylog.count() == 0  # nobody was answered


async def test_a_client_without_the_entries_scope_cannot_read_entries(
    svc: SubscriberService, clients: Clients, querylog: QueryLog
) -> None:
    transport = httpx.ASGITransport(app=app_for(svc, clients, querylog))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(COUNTER)) as c:
        r = await c.get("/v1/entries/court/court-2026-9")
        assert r.status_code == 403 and "entries" in r.json()["detail"]
        assert (await c.get("/v1/check", params={"id": KNOWN_RIC})).status_code == 200


async def test_a_counter_gets_the_minimal_answer(svc: SubscriberService, clients: Clients, querylog: QueryLog) -> None:
    for fast in (True, False):
        transport = httpx.ASGITransport(app=app_for(svc, clients, querylog, fast=fast))
        async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(COUNTER)) as c:
            one = (await c.get("/v1/check", params={"id": KNOWN_RIC, "measure": AVIATION})).json()
            many = (await c.post("/v1/check", json={"ids": [KNOWN_RIC]})).json()["results"][0]
        assert one["measures"] == [{"measure_id": AVIATION, "kind": "PUNISH"}], fast
        assert sorted(m["measure_id"] for m in many["measures"]) == [AVIATION, RAIL]
        assert all(set(m) == {"measure_id", "kind"} for m in many["measures"])
        assert one["status"] == many["status"] == "restricted"


async def test_a_client_over_its_rate_gets_429_with_retry_after(svc: SubscriberService, querylog: QueryLog) -> None:
    own = Clients(client_specs())  # a rate count of this test's own
    transport = httpx.ASGITransport(app=app_for(svc, own, querylog))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(SLOW)) as c:
        codes = [(await c.get("/v1/check", params={"id": "nobody"})).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await c.get("/v1/check", params={"id": "nobody"})
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(COUNTER)) as c:
        assert (await c.get("/v1/check", params={"id": "nobody"})).status_code == 200  # others are not slowed


async def test_a_certificate_identifies_its_client(
    svc: SubscriberService, clients: Clients, querylog: QueryLog
) -> None:
    app = app_for(svc, clients, querylog)

    def presenting(name: str | None) -> Any:
        async def tls(scope: Scope, receive: Receive, send: Send) -> None:
            # What services.subscriber.tls puts in the scope once the handshake verified the chain.
            scope["extensions"] = {"tls": {"client_cert_name": name, "client_cert_chain": []}}
            await app(scope, receive, send)

        return tls

    for name, code in (("desk-01", 200), ("someone-else", 401), (None, 401)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=presenting(name)), base_url="http://sub") as c:
            assert (await c.get("/v1/check", params={"id": KNOWN_RIC})).status_code == code, name
    querylog.flush()
    assert [r.client for r in querylog.about([KNOWN_RIC])] == ["desk"]


async def call(app: CheckApp, scope_extra: dict[str, Any], chunks: list[bytes]) -> tuple[int, dict[bytes, bytes], int]:
    """Drive the app with raw ASGI messages; return status, headers and how many body chunks it read."""
    sent: list[Message] = []
    read = 0

    async def receive() -> Message:
        nonlocal read
        read += 1
        chunk = chunks[read - 1]
        return {"type": "http.request", "body": chunk, "more_body": read < len(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/check",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {AUDITOR}".encode()), (b"content-type", b"application/json")],
        **scope_extra,
    }
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), read


async def test_a_body_over_the_cap_is_refused_before_it_is_read(
    svc: SubscriberService, clients: Clients, querylog: QueryLog
) -> None:
    app = app_for(svc, clients, querylog, limits=RequestLimits(max_body=1000))
    big = [b"x" * 600] * 20
    declared = {
        "headers": [
            (b"authorization", f"Bearer {AUDITOR}".encode()),
            (b"content-length", str(10 * 1024 * 1024).encode()),
        ]
    }
    status, headers, read = await call(app, declared, big)
    assert (status, headers[b"connection"], read) == (413, b"close", 0)  # not a byte of it read
    status, headers, read = await call(app, {}, big)  # chunked: refused as soon as it passes the cap
    assert (status, headers[b"connection"], read) == (413, b"close", 2)
    status, _, _ = await call(app, {}, [b'{"ids": ["nobody"]}'])
    assert status == 200


async def test_a_body_that_does_not_arrive_in_time_is_refused(
    svc: SubscriberService, clients: Clients, querylog: QueryLog
) -> None:
    import asyncio

    app = app_for(svc, clients, querylog, limits=RequestLimits(body_timeout=0.2))
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.sleep(10)
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/check",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {AUDITOR}".encode())],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 408


async def test_too_many_ids_and_too_long_a_query_are_refused(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/check", json={"ids": ["x"] * 1001})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "ids"]
    r = await http.get("/v1/check?id=x&pad=" + "p" * 9000)
    assert r.status_code == 414


# --------------------------------------------------------------------------- fail closed


async def test_answers_are_unknown_until_the_store_is_current(
    store: DirectiveStore, clients: Clients, querylog: QueryLog
) -> None:
    svc = offline_service(store, current=False)
    now = [time.time()]
    svc.clock = lambda: now[0]
    svc.stale_after = 5.0
    transport = httpx.ASGITransport(app=app_for(svc, clients, querylog))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(AUDITOR)) as c:

        async def statuses() -> list[tuple[str, bool]]:
            one = [(await c.get("/v1/check", params={"id": i})).json() for i in ("nobody", KNOWN_RIC)]
            many = (await c.post("/v1/check", json={"ids": ["nobody", KNOWN_RIC]})).json()["results"]
            assert one == many
            return [(r["status"], r["restricted"]) for r in one]

        # Bootstrapping: never clear, and a caller reading only `restricted` is not told "clear" either.
        assert await statuses() == [("unknown", True), ("unknown", True)]
        svc.confirm(time.time())
        assert await statuses() == [("clear", False), ("restricted", True)]
        svc.confirm(time.time() - 6)  # an older confirmation changes nothing
        assert await statuses() == [("clear", False), ("restricted", True)]


def test_heartbeats_are_required_on_every_partition(store: DirectiveStore) -> None:
    svc = offline_service(store, current=False)
    svc.require_heartbeats = True
    svc.stale_after = 5.0
    svc.expect_partitions([0, 1])
    t = time.time()
    svc.confirm(t)
    assert not svc.current(t)  # no heartbeat yet
    svc.heard(0, t - 1)
    assert not svc.current(t)  # partition 1 still silent
    svc.heard(1, t - 2)
    assert svc.current(t) and svc.current(t + 2.9) and not svc.current(t + 3.1)  # 5 s after the older beat
    svc.heard(1, t - 3)  # an older heartbeat arriving late changes nothing
    assert svc.current(t + 2.9)


# --------------------------------------------------------------------------- the query log


async def test_every_question_is_in_the_query_log_and_no_identifier_in_clear(
    svc: SubscriberService, clients: Clients, querylog: QueryLog, http: httpx.AsyncClient
) -> None:
    lower = KNOWN_RIC_X.lower()
    await http.get("/v1/check", params={"id": KNOWN_RIC, "measure": AVIATION})
    await http.get("/v1/check", params={"id": f" {lower} "})  # found under its normal form
    await http.post("/v1/check", json={"ids": [KNOWN_RIC, "nobody"]})
    await http.get("/v1/check", params={"id": WRONG_RIC})
    await http.get("/v1/entries/court/court-2026-9")
    transport = httpx.ASGITransport(app=app_for(svc, clients, querylog))
    async with httpx.AsyncClient(transport=transport, base_url="http://sub", **as_client(COUNTER)) as c:
        await c.get("/v1/check", params={"id": KNOWN_RIC})
    querylog.flush()
    about = [
        (r.client, r.scope, r.route, r.measure, r.answer, tuple(sorted(r.measures)))
        for r in querylog.about([KNOWN_RIC])
    ]
    assert about == [
        ("auditor", "check,details,entries", "check", AVIATION, "restricted", (AVIATION,)),
        ("auditor", "check,details,entries", "check", None, "restricted", (AVIATION, RAIL)),
        ("counter", "check", "check", None, "restricted", (AVIATION, RAIL)),
    ]
    assert [r.answer for r in querylog.about([KNOWN_RIC_X])] == ["clear"]  # its only directive was lifted
    assert [r.answer for r in querylog.about([WRONG_RIC])] == ["invalid"]
    assert [r.route for r in querylog.about(["court/court-2026-9"])] == ["entries"]
    raw = querylog.path.read_bytes() + Path(f"{querylog.path}-wal").read_bytes()  # noqa: ASYNC240 - the test's files
    for ident in (KNOWN_RIC, KNOWN_RIC_X, lower, "nobody", WRONG_RIC, "court-2026-9"):
        assert ident.encode() not in raw


def test_the_query_log_is_append_only_and_kept_for_its_retention(tmp_path: Path) -> None:
    import sqlite3

    log = QueryLog(tmp_path / "q.sqlite", QUERY_KEY, retention_s=3600)
    now = time.time()
    log.record(now - 7200, "auditor", "check", "check", log.subject("old"), None, None, "clear")
    log.record(now, "auditor", "check", "check", log.subject("new"), None, None, "clear")
    log.flush()
    db = sqlite3.connect(tmp_path / "q.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE queries SET answer = 'restricted'")
    with pytest.raises(sqlite3.DatabaseError, match="retention"):
        db.execute("DELETE FROM queries")
    db.close()
    assert log.purge(now) == 1
    assert [r.answer for r in log.about(["new"])] == ["clear"] and log.about(["old"]) == []
    log.close()


# --------------------------------------------------------------------------- health on a fake clock


def health_at(
    now: float,
    confirmed_at: float | None,
    *,
    connected: bool = True,
    stale_after: float = 30.0,
    heartbeats: dict[int, float | None] | None = None,
) -> Health:
    return assess_health(
        agency="aviation",
        now=now,
        connected=connected,
        confirmed_at=confirmed_at,
        heartbeats=heartbeats,
        lag=0,
        stale_after=stale_after,
        active=7,
        last_applied_at=None,
    )


T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("now", "confirmed_at", "connected", "heartbeats", "status", "detail"),
    [
        (T0, None, False, None, "starting", "connecting to the exchange"),
        (T0, None, True, None, "starting", "reading the directive feed"),
        (T0, T0, True, None, "ok", None),
        (T0 + 30, T0, True, None, "ok", None),
        (T0 + 30.5, T0, True, None, "degraded", "feed not confirmed by the broker for 30s"),
        (T0 + 3600, T0, False, None, "degraded", "feed not confirmed by the broker for 3600s"),
        (T0, T0, True, {0: T0, 1: T0 - 29}, "ok", None),
        (T0, T0, True, {0: T0, 1: T0 - 31}, "degraded", "no fan-out heartbeat within 30s on partition 1"),
        (T0, T0, True, {0: None, 1: None}, "degraded", "no fan-out heartbeat within 30s on partition 0, 1"),
    ],
    ids=[
        "connecting",
        "reading",
        "fresh",
        "at-threshold",
        "just-stale",
        "long-stale",
        "heartbeats",
        "silent-one",
        "never-heard",
    ],
)
def test_health_turns_degraded_when_the_feed_is_stale(
    now: float,
    confirmed_at: float | None,
    connected: bool,
    heartbeats: dict[int, float | None] | None,
    status: str,
    detail: str | None,
) -> None:
    h = health_at(now, confirmed_at, connected=connected, heartbeats=heartbeats)
    assert (h.status, h.detail) == (status, detail)
    assert h.as_of == (None if confirmed_at is None else "2026-03-10T12:00:00Z")


async def test_service_health_follows_its_clock(store: DirectiveStore) -> None:
    svc = offline_service(store, current=False)
    now = [T0]
    svc.clock = lambda: now[0]
    svc.stale_after = 5.0
    assert svc.health().status == "starting"
    svc.confirm(T0)  # what the confirmation loop records after a round trip to the broker
    assert svc.health().status == "ok" and svc.current(T0)
    now[0] = T0 + 6
    assert svc.health().status == "degraded" and not svc.current(T0 + 6)
