"""The subscriber's HTTP API in-process over a real store (no broker, the feed never
started): the hand-written check path answers exactly what the FastAPI routes
answer, every error is FastAPI's, and health follows the feed's clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.core.codec import default_registry
from services.core.models import Action, MeasureKind
from services.core.signing import Keyring, Signer
from services.kafka_access import KafkaAccess
from services.subscriber.api import CheckApp
from services.subscriber.service import SubscriberService, assess_health
from services.subscriber.store import DirectiveStore
from services.subscriber.types import BulkCheckResult, CheckResult, EntryHistory, Health
from tests.unit.factories import ENTRY_ID, KNOWN_RIC, KNOWN_RIC_X, KNOWN_USCC, NOW
from tests.unit.test_store import AVIATION, RAIL, Feed, directive

pytestmark = pytest.mark.unit

GREEN = "customs.green-channel"


def fill(store: DirectiveStore) -> None:
    feed = Feed()
    store.apply([
        feed(directive()),
        feed(directive(measure=RAIL, valid_until=None)),
        feed(directive(measure=GREEN, kind=MeasureKind.INCENT, entry_id="tax-2026-7",
                       ids=(("CN_USCC", KNOWN_USCC),))),
        feed(directive(entry_id="court-2026-9", ids=(("CN_RIC", KNOWN_RIC_X),))),
        feed(directive(entry_id="court-2026-9", action=Action.LIFT, seq=2, ids=(("CN_RIC", KNOWN_RIC_X),))),
    ], NOW)


def offline_service(store: DirectiveStore) -> SubscriberService:
    """A subscriber whose feed is never started: the API answers from the store alone."""
    return SubscriberService(
        agency="aviation", access=KafkaAccess(bootstrap="127.0.0.1:9"), store=store, keyring=Keyring(),
        schemas=default_registry(), signer=Signer.generate("aviation", "aviation-test"),
        directive_topic="t.directives.aviation", receipts_topic="t.receipts.aviation",
    )


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[SubscriberService]:
    store = DirectiveStore(tmp_path / "aviation.sqlite", "aviation")
    fill(store)
    try:
        yield offline_service(store)
    finally:
        store.close()


@pytest.fixture
async def http(svc: SubscriberService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=CheckApp(svc)), base_url="http://sub") as c:
        yield c


async def via_fastapi(svc: SubscriberService, method: str, url: str, **kw: object) -> httpx.Response:
    """The same request, answered by the FastAPI routes alone (no fast path)."""
    api = CheckApp(svc).api
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://sub") as c:
        return await c.request(method, url, **kw)  # type: ignore[arg-type]


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
        {"id": "naïve \"quoted\" \\ id"},
        {"id": KNOWN_RIC, "unknown": "ignored"},
    ],
    ids=["plain", "spaces", "measure", "scheme-measure", "empty-scheme", "incentive", "lifted", "unknown",
         "escaping", "extra-param"],
)
async def test_fast_path_answers_what_fastapi_answers(svc: SubscriberService, http: httpx.AsyncClient,
                                                      params: dict[str, str]) -> None:
    fast = await http.get("/v1/check", params=params)
    slow = await via_fastapi(svc, "GET", "/v1/check", params=params)
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == "application/json"
    fast_answer = CheckResult.model_validate_json(fast.content)
    assert fast_answer == CheckResult.model_validate_json(slow.content)
    assert fast.json() == slow.json()


async def test_check_answer(http: httpx.AsyncClient) -> None:
    answer = CheckResult.model_validate_json((await http.get("/v1/check", params={"id": KNOWN_RIC})).content)
    assert answer.restricted
    assert sorted(m.measure_id for m in answer.measures) == [AVIATION, RAIL]
    assert {m.entry_id for m in answer.measures} == {ENTRY_ID}
    assert answer.as_of is None  # the feed never confirmed it was read to its end
    green = CheckResult.model_validate_json((await http.get("/v1/check", params={"id": KNOWN_USCC})).content)
    assert not green.restricted and [m.kind for m in green.measures] == ["INCENT"]


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
    ],
    ids=["no-id", "empty-id", "long-id", "long-scheme", "long-measure", "naive-at", "bad-at"],
)
async def test_bad_questions_get_fastapi_validation_errors(http: httpx.AsyncClient, params: dict[str, str],
                                                           loc: list[str]) -> None:
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


async def test_bulk_check(svc: SubscriberService, http: httpx.AsyncClient) -> None:
    body = {"ids": [KNOWN_RIC, "nobody", KNOWN_USCC], "measure": AVIATION}
    fast = await http.post("/v1/check", json=body)
    slow = await via_fastapi(svc, "POST", "/v1/check", json=body)
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
    ],
    ids=["empty", "extra-field", "naive-at", "truncated", "long-id"],
)
async def test_bad_bulk_questions_get_fastapi_errors(svc: SubscriberService, http: httpx.AsyncClient, body: bytes,
                                                     headers: dict[str, str]) -> None:
    fast = await http.post("/v1/check", content=body, headers=headers)
    slow = await via_fastapi(svc, "POST", "/v1/check", content=body, headers=headers)
    assert fast.status_code == slow.status_code == 422
    assert fast.json() == slow.json()


async def test_entry_history(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/entries/court/court-2026-9")
    assert r.status_code == 200
    history = EntryHistory.model_validate_json(r.content)
    assert [(d.action, d.status, d.seq) for d in history.directives] == [("APPLY", "APPLIED", 1),
                                                                          ("LIFT", "LIFTED", 2)]
    assert (await http.get("/v1/entries/court-2026-9")).json() == {**r.json(), "entry_id": "court-2026-9"}
    missing = await http.get("/v1/entries/market/court-2026-9")
    assert missing.status_code == 404 and "court-2026-9" in missing.json()["detail"]


async def test_health_of_a_subscriber_that_never_reached_the_exchange(http: httpx.AsyncClient) -> None:
    r = await http.get("/healthz")
    assert r.status_code == 503
    h = Health.model_validate_json(r.content)
    assert (h.status, h.detail, h.active_directives, h.as_of) == ("starting", "connecting to the exchange", 3, None)


async def test_metrics_count_answers(http: httpx.AsyncClient) -> None:
    await http.get("/v1/check", params={"id": KNOWN_RIC})
    await http.post("/v1/check", json={"ids": ["a", "b"]})
    text = (await http.get("/metrics")).text
    assert 'concord_subscriber_checks_total{agency="aviation",result="restricted"} 1.0' in text
    assert 'concord_subscriber_checks_total{agency="aviation",result="clear"} 2.0' in text


# --------------------------------------------------------------------------- health on a fake clock


def health_at(now: float, caught_up_at: float | None, *, connected: bool = True, stale_after: float = 30.0) -> Health:
    return assess_health(agency="aviation", now=now, connected=connected, caught_up_at=caught_up_at, lag=0,
                         stale_after=stale_after, active=7, last_applied_at=None)


T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("now", "caught_up_at", "connected", "status", "detail"),
    [
        (T0, None, False, "starting", "connecting to the exchange"),
        (T0, None, True, "starting", "reading the directive feed"),
        (T0, T0, True, "ok", None),
        (T0 + 30, T0, True, "ok", None),
        (T0 + 30.5, T0, True, "degraded", "feed not confirmed for 30s"),
        (T0 + 3600, T0, False, "degraded", "feed not confirmed for 3600s"),
    ],
    ids=["connecting", "reading", "fresh", "at-threshold", "just-stale", "long-stale"],
)
def test_health_turns_degraded_when_the_feed_is_stale(now: float, caught_up_at: float | None, connected: bool,
                                                      status: str, detail: str | None) -> None:
    h = health_at(now, caught_up_at, connected=connected)
    assert (h.status, h.detail) == (status, detail)
    assert h.as_of == (None if caught_up_at is None else "2026-03-10T12:00:00Z")


async def test_service_health_follows_its_clock(svc: SubscriberService) -> None:
    now = [T0]
    svc.clock = lambda: now[0]
    svc.stale_after = 5.0
    assert svc.health().status == "starting"
    svc.caught_up(T0)  # what the feed loop records when it reaches the end of the topic
    assert svc.health().status == "ok"
    now[0] = T0 + 6
    assert svc.health().status == "degraded"
