"""The check client against a real HTTPS server on loopback (the subscriber's own uvicorn
configuration in a thread: TLS, client certificates and API keys from the clients file
the local setup writes; the store filled in-process, no broker): answers arrive as the
service's own types, ``unknown`` raises unless allowed, and every failure is a typed
error naming the agency and the URL."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.core.errors import ConcordError
from services.embedded.tls import ensure_ca, issue_client_cert
from services.subscriber.api import CheckApp
from services.subscriber.client import (
    AsyncCheckClient,
    CheckClient,
    CheckResult,
    EntryNotFound,
    Identity,
    NotAuthorized,
    QuestionRejected,
    SubscriberFailed,
    SubscriberNotCurrent,
    SubscriberUnavailable,
)
from services.subscriber.clients import load_clients
from services.subscriber.identity import SubscriberHome
from services.subscriber.querylog import QueryLog
from services.subscriber.runner import ServeOptions, uvicorn_config
from services.subscriber.store import DirectiveStore
from tests.support import wait_for
from tests.unit.factories import ENTRY_ID, KNOWN_RIC, KNOWN_USCC
from tests.unit.subscriber_factories import AVIATION, RAIL, fill, offline_service

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str  # a current subscriber
    starting: str  # one whose feed has never been confirmed
    home: SubscriberHome

    def identity(self, client: str = "auditor") -> Identity:
        key = self.home.client_key(client)
        if key.exists():
            return Identity(ca=self.home.ca, api_key=key.read_text().strip())
        return Identity(ca=self.home.ca, cert=self.home.client_cert(client))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("client")
    home = SubscriberHome.of(root, "aviation")
    home.ensure("aviation")  # what the local setup issues: CA, server certificate, clients file
    store = DirectiveStore(root / "aviation.sqlite", "aviation")
    fill(store)
    log = QueryLog(root / "queries.sqlite", b"k" * 32)
    servers, threads, urls = [], [], []
    for current in (True, False):
        port = _free_port()
        app = CheckApp(offline_service(store, current=current), load_clients(home.clients), log)
        server = uvicorn.Server(uvicorn_config(app, ServeOptions(certfile=home.server, client_ca=home.ca, port=port)))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        urls.append(f"https://127.0.0.1:{port}")
    wait_for("the check API servers started", lambda: all(s.started for s in servers), timeout=10, every=0.02)
    try:
        yield Served(urls[0], urls[1], home)
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.should_exit = True
            thread.join(10)
        log.close()
        store.close()


@pytest.fixture(scope="module")
def url(served: Served) -> str:
    return served.url


def test_check(served: Served, url: str) -> None:
    with CheckClient(url, served.identity(), agency="aviation") as c:
        answer = c.check(KNOWN_RIC)
        assert isinstance(answer, CheckResult)
        assert answer.restricted and sorted(m.measure_id for m in answer.measures) == [AVIATION, RAIL]
        assert c.check(KNOWN_RIC, measure=RAIL, scheme="CN_RIC").measures[0].measure_id == RAIL
        assert not c.check("nobody").restricted
        # `at` as an aware datetime or a string; the aviation window ended on 2028-03-10.
        late = datetime(2029, 1, 1, tzinfo=UTC)
        assert [m.measure_id for m in c.check(KNOWN_RIC, at=late).measures] == [RAIL]
        assert c.check(KNOWN_RIC, at="2026-03-09T00:00:00Z").measures == []


def test_check_many_keeps_order_across_requests(served: Served, url: str) -> None:
    ids = [KNOWN_RIC if i % 700 == 0 else f"nobody-{i}" for i in range(2100)]  # three POSTs
    with CheckClient(url, served.identity("counter-key")) as c:
        results = c.check_many(ids, measure=AVIATION)
    assert [r.id for r in results] == ids
    assert [i for i, r in enumerate(results) if r.restricted] == [0, 700, 1400]


def test_entry_and_health(served: Served, url: str) -> None:
    with CheckClient(url, served.identity(), agency="aviation") as c:
        history = c.entry(f"court/{ENTRY_ID}")
        assert {d["measure_id"] for d in history["directives"]} == {AVIATION, RAIL}
        assert c.health().status == "ok"
    with CheckClient(served.starting, served.identity(), agency="aviation") as c:
        assert c.health().status == "starting"  # 503 is an answer, not an error
        with pytest.raises(EntryNotFound, match="aviation"):
            c.entry("court/no such entry?#")


def test_bad_question_is_rejected_with_agency_and_url(served: Served, url: str) -> None:
    with CheckClient(url, served.identity(), agency="aviation") as c, pytest.raises(QuestionRejected) as caught:
        c.check("x" * 65)
    err = caught.value
    assert isinstance(err, ConcordError) and not err.retriable
    assert (err.agency, err.url, err.status) == ("aviation", url, 422)
    assert "subscriber of 'aviation' at " + url in str(err)


def test_unreachable_subscriber_is_retriable() -> None:
    url = f"https://127.0.0.1:{_free_port()}"
    with CheckClient(url, timeout=1, agency="rail") as c, pytest.raises(SubscriberUnavailable) as caught:
        c.check(KNOWN_RIC)
    assert caught.value.retriable and url in str(caught.value) and "'rail'" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, b'{"unexpected": true}'), (502, b"bad gateway")],
    ids=["not-a-check-result", "server-error"],
)
def test_answer_that_is_not_the_api_is_a_retriable_failure(status: int, body: bytes) -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(status, content=body))
    with (
        CheckClient("http://proxy.invalid", agency="finance", transport=transport) as c,
        pytest.raises(SubscriberFailed) as caught,
    ):
        c.check(KNOWN_RIC)
    assert caught.value.retriable and "'finance'" in str(caught.value)


async def test_async_client(served: Served, url: str) -> None:
    async with AsyncCheckClient(url, served.identity(), agency="aviation") as c:
        assert (await c.check(KNOWN_USCC)).measures[0].kind == "INCENT"
        assert [r.restricted for r in await c.check_many([KNOWN_RIC, "nobody"])] == [True, False]
        assert (await c.entry(ENTRY_ID))["entry_id"] == ENTRY_ID
        assert (await c.health()).agency == "aviation"
        with pytest.raises(QuestionRejected):
            await c.check(KNOWN_RIC, at="yesterday")


def test_an_unknown_answer_raises_unless_allowed(served: Served) -> None:
    with CheckClient(served.starting, served.identity(), agency="aviation") as c:
        with pytest.raises(SubscriberNotCurrent) as caught:
            c.check(KNOWN_RIC)
        assert caught.value.retriable and [r.status for r in caught.value.results] == ["unknown"]
        with pytest.raises(SubscriberNotCurrent):
            c.check_many(["nobody", KNOWN_RIC])
        answer = c.check("nobody", allow_unknown=True)
        assert (answer.status, answer.restricted) == ("unknown", True)  # never clear


def test_each_identity_of_the_clients_file(served: Served, url: str) -> None:
    with CheckClient(url, served.identity("counter")) as c:  # a certificate, scope check
        answer = c.check(KNOWN_RIC, measure=AVIATION)
        assert [m.model_dump(exclude_none=True) for m in answer.measures] == [
            {"measure_id": AVIATION, "kind": "PUNISH"}
        ]
        with pytest.raises(NotAuthorized) as caught:
            c.entry(f"court/{ENTRY_ID}")
        assert caught.value.status == 403
    with CheckClient(url, served.identity("operator")) as c:  # details, not entries
        assert c.check(KNOWN_RIC, measure=AVIATION).measures[0].entry_id == ENTRY_ID


def test_without_an_identity_the_subscriber_answers_nothing(served: Served, url: str, tmp_path: Path) -> None:
    with CheckClient(url, Identity(ca=served.home.ca)) as c, pytest.raises(NotAuthorized) as caught:
        c.check(KNOWN_RIC)
    assert caught.value.status == 401
    # A certificate from another CA does not get through the TLS handshake.
    ensure_ca(tmp_path / "other", "Somebody else's CA")
    stranger = issue_client_cert(tmp_path / "other", "auditor", tmp_path / "stranger.pem")
    with CheckClient(url, Identity(ca=served.home.ca, cert=stranger)) as c, pytest.raises(SubscriberUnavailable):
        c.check(KNOWN_RIC)
    # Nor does a client that does not trust the agency's CA.
    with CheckClient(url, Identity(cert=served.home.client_cert("auditor"))) as c, pytest.raises(SubscriberUnavailable):
        c.check(KNOWN_RIC)
