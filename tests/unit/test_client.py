"""The check client against a real HTTP server on loopback (uvicorn in a thread, the
subscriber's store filled in-process, no broker): answers arrive as the service's own
types, and every failure is a typed error naming the agency and the URL."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn

from services.core.errors import ConcordError
from services.subscriber.api import CheckApp
from services.subscriber.client import (
    AsyncCheckClient,
    CheckClient,
    CheckResult,
    EntryNotFound,
    QuestionRejected,
    SubscriberFailed,
    SubscriberUnavailable,
)
from services.subscriber.store import DirectiveStore
from tests.unit.factories import ENTRY_ID, KNOWN_RIC, KNOWN_USCC
from tests.unit.test_store import AVIATION, RAIL
from tests.unit.test_subscriber_api import fill, offline_service

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = DirectiveStore(tmp_path_factory.mktemp("client") / "aviation.sqlite", "aviation")
    fill(store)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(CheckApp(offline_service(store)), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def test_check(url: str) -> None:
    with CheckClient(url, agency="aviation") as c:
        answer = c.check(KNOWN_RIC)
        assert isinstance(answer, CheckResult)
        assert answer.restricted and sorted(m.measure_id for m in answer.measures) == [AVIATION, RAIL]
        assert c.check(KNOWN_RIC, measure=RAIL, scheme="CN_RIC").measures[0].measure_id == RAIL
        assert not c.check("nobody").restricted
        # `at` as an aware datetime or a string; the aviation window ended on 2028-03-10.
        late = datetime(2029, 1, 1, tzinfo=UTC)
        assert [m.measure_id for m in c.check(KNOWN_RIC, at=late).measures] == [RAIL]
        assert c.check(KNOWN_RIC, at="2026-03-09T00:00:00Z").measures == []


def test_check_many_keeps_order_across_requests(url: str) -> None:
    ids = [KNOWN_RIC if i % 700 == 0 else f"nobody-{i}" for i in range(2100)]  # three POSTs
    with CheckClient(url) as c:
        results = c.check_many(ids, measure=AVIATION)
    assert [r.id for r in results] == ids
    assert [i for i, r in enumerate(results) if r.restricted] == [0, 700, 1400]


def test_entry_and_health(url: str) -> None:
    with CheckClient(url, agency="aviation") as c:
        history = c.entry(f"court/{ENTRY_ID}")
        assert {d["measure_id"] for d in history["directives"]} == {AVIATION, RAIL}
        assert c.health().status == "starting"  # 503 is an answer, not an error
        with pytest.raises(EntryNotFound, match="aviation"):
            c.entry("court/no such entry?#")


def test_bad_question_is_rejected_with_agency_and_url(url: str) -> None:
    with CheckClient(url, agency="aviation") as c, pytest.raises(QuestionRejected) as caught:
        c.check("x" * 65)
    err = caught.value
    assert isinstance(err, ConcordError) and not err.retriable
    assert (err.agency, err.url, err.status) == ("aviation", url, 422)
    assert "subscriber of 'aviation' at " + url in str(err)


def test_unreachable_subscriber_is_retriable() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with CheckClient(url, timeout=1, agency="rail") as c, pytest.raises(SubscriberUnavailable) as caught:
        c.check(KNOWN_RIC)
    assert caught.value.retriable and url in str(caught.value) and "'rail'" in str(caught.value)


@pytest.mark.parametrize(("status", "body"), [(200, b'{"unexpected": true}'), (502, b"bad gateway")],
                         ids=["not-a-check-result", "server-error"])
def test_answer_that_is_not_the_api_is_a_retriable_failure(status: int, body: bytes) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(status, content=body))
    with CheckClient("http://proxy.invalid", agency="finance", transport=transport) as c, \
            pytest.raises(SubscriberFailed) as caught:
        c.check(KNOWN_RIC)
    assert caught.value.retriable and "'finance'" in str(caught.value)


async def test_async_client(url: str) -> None:
    async with AsyncCheckClient(url, agency="aviation") as c:
        assert (await c.check(KNOWN_USCC)).measures[0].kind == "INCENT"
        assert [r.restricted for r in await c.check_many([KNOWN_RIC, "nobody"])] == [True, False]
        assert (await c.entry(ENTRY_ID))["entry_id"] == ENTRY_ID
        assert (await c.health()).agency == "aviation"
        with pytest.raises(QuestionRejected):
            await c.check(KNOWN_RIC, at="yesterday")
