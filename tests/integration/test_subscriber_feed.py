"""The aviation subscriber through the real broker: applies and lifts with signed
receipts, refuses tampered and forged directives, restarts (SIGTERM and SIGKILL)
without re-applying, bootstraps a wiped store from the compacted topic, and
enforces validity windows with the fan-out stopped.

One exchange (namespace, fan-out, subscriber) serves the whole module to keep the
tier lean; each test uses fresh subjects, and the test that stops the fan-out runs
last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.core.codec import default_registry
from services.core.identifiers import ric_check_char
from services.core.models import Directive, Identifier, Receipt
from services.core.signing import Domain, SignedHeaders
from services.demo import Subjects, cli_publisher, delisting_record, fresh_subjects, listing_records
from services.keystore import load_keyring, load_signer
from services.localstack import LocalStack, Service
from services.partitioning import partition_for
from services.subscriber.client import CheckClient, EntryNotFound, Identity, QuestionRejected
from services.topic_metadata import read_to_end
from tests.conftest import KafkaCluster
from tests.integration.conftest import make_stack
from tests.support import wait_for

pytestmark = pytest.mark.integration

AIR = "aviation.no-air-tickets"


@dataclass
class Exchange:
    stack: LocalStack
    cluster: KafkaCluster
    sub: Service

    @property
    def ns(self) -> str:
        return self.stack.namespace

    @property
    def url(self) -> str:
        assert self.sub.url
        return self.sub.url

    def topic(self, kind: str) -> str:
        return f"{self.ns}.{kind}.aviation"


def start_subscriber(stack: LocalStack, name: str, db: Path, *extra: str) -> Service:
    return stack.start_subscriber("aviation", None, *extra, name=name, db=db)


def client(stack: LocalStack, url: str, who: str = "auditor", **kw: Any) -> CheckClient:
    """A check client of the subscriber at ``url``, as the local client system ``who``."""
    home = stack.subscriber_home("aviation")
    key = home.client_key(who)
    identity = (
        Identity(ca=home.ca, api_key=key.read_text().strip())
        if key.exists()
        else Identity(ca=home.ca, cert=home.client_cert(who))
    )
    return CheckClient(url, identity, agency="aviation", **kw)


def verify(stack: LocalStack) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(stack.subscriber_home("aviation").ca))


def wait_ok(stack: LocalStack, url: str, timeout: float = 60.0) -> None:
    wait_for(
        f"{url} healthy",
        lambda: httpx.get(f"{url}/healthz", timeout=2, verify=verify(stack)).status_code == 200,
        timeout=timeout,
        ignoring=(httpx.HTTPError,),
    )


@pytest.fixture(scope="module")
def ex(kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    home = tmp_path_factory.mktemp("subscriber") / "home"
    stack = make_stack(kafka_cluster, home, "t" + secrets.token_hex(4))
    try:
        stack.start_fanout()
        sub = start_subscriber(stack, "subscriber-aviation", home / "data" / "aviation.sqlite")
        stack.wait_healthy(timeout=120)
        yield Exchange(stack, kafka_cluster, sub)
    finally:
        stack.stop()


# --------------------------------------------------------------------------- helpers


def publish_listing(ex: Exchange, *, person_for: float = 3600.0) -> tuple[Subjects, str, list[dict[str, Any]]]:
    rng = random.Random()
    s = fresh_subjects(rng)
    run = f"{rng.randint(0, 10**8):08d}"
    now = datetime.now(UTC)
    records = listing_records(s, run, now, now + timedelta(seconds=person_for))
    path = ex.stack.home / f"listing-{run}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert cli_publisher(ex.stack.home)("court", path) == 0
    return s, run, records


def restricted(ex: Exchange, ident: str, url: str | None = None) -> bool:
    with client(ex.stack, url or ex.url) as c:
        return c.check(ident, measure=AIR).status == "restricted"


async def _read_all(access: Any, topic: str) -> list[Any]:
    async with asyncio.timeout(60):
        return [r for _, r in await read_to_end(access, [topic])]


def read_all(ex: Exchange, kind: str) -> list[Any]:
    """Every record of the agency's topic of ``kind`` but the fan-out's heartbeats."""
    records = asyncio.run(_read_all(ex.cluster.access("concord-admin"), ex.topic(kind)))
    return [r for r in records if default_registry().kind_of(r.value) != "heartbeat"]


def receipts(ex: Exchange) -> list[Receipt]:
    """Every receipt on the aviation receipts topic, each verified as signed by aviation."""
    ring = load_keyring(ex.stack.home / "keys")
    out = []
    for rec in read_all(ex, "receipts"):
        ring.verify(
            Domain.RECEIPT,
            rec.value,
            SignedHeaders.from_kafka(rec.headers),
            expected_agency="aviation",
            at=datetime.now(UTC),
        )
        out.append(default_registry().decode_model(rec.value, Receipt))
    return out


def produce_as_fanout(ex: Exchange, value: bytes, headers: list[tuple[str, bytes]], key: bytes) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(**ex.cluster.access("concord-fanout").aiokafka_kwargs(), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(ex.topic("directives"), value=value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(go())


def history(ex: Exchange, entry: str) -> list[dict[str, Any]]:
    with client(ex.stack, ex.url) as c:
        try:
            return list(c.entry(entry)["directives"])
        except EntryNotFound:
            return []


def other_ric(ric: str) -> str:
    first = ric[:14] + f"{(int(ric[14:17]) + 1) % 1000:03d}"
    return first + ric_check_char(first)


# --------------------------------------------------------------------------- (a) apply, lift, receipts


def test_apply_and_lift_are_stored_answered_and_receipted(ex: Exchange) -> None:
    s, run, records = publish_listing(ex)
    wait_for("legal rep restricted", lambda: restricted(ex, s.legal_rep), ignoring=(httpx.HTTPError,))
    wait_for("person restricted", lambda: restricted(ex, s.person), ignoring=(httpx.HTTPError,))
    assert not restricted(ex, s.company)  # aviation has no measure for organisations
    (applied,) = history(ex, f"court/demo-{run}-c")
    assert (applied["action"], applied["status"], applied["measure_id"]) == ("APPLY", "APPLIED", AIR)

    delisting = delisting_record(s, run, datetime.now(UTC), records[0])
    path = ex.stack.home / f"delisting-{run}.jsonl"
    path.write_text(json.dumps(delisting) + "\n")
    assert cli_publisher(ex.stack.home)("court", path) == 0
    wait_for("legal rep lifted", lambda: not restricted(ex, s.legal_rep), ignoring=(httpx.HTTPError,))
    lift = history(ex, f"court/demo-{run}-c")[-1]
    assert (lift["action"], lift["status"], lift["cause"]) == ("LIFT", "LIFTED", "DELISTED")

    def both_receipts() -> dict[str, str]:
        got = {r.directive_id: r.status.value for r in receipts(ex)}
        want = {applied["directive_id"], lift["directive_id"]}
        return got if want <= set(got) else {}

    got = wait_for("APPLIED and LIFTED receipts", both_receipts, timeout=30, every=1.0, ignoring=(httpx.HTTPError,))
    assert (got[applied["directive_id"]], got[lift["directive_id"]]) == ("APPLIED", "LIFTED")
    # Each receipt is on the partition of its entry's list records (Kafka's default partitioner on the entry id).
    ours = {applied["directive_id"], lift["directive_id"]}
    placed = {
        default_registry().decode_model(r.value, Receipt).directive_id: r.partition for r in read_all(ex, "receipts")
    }
    assert {placed[d] for d in ours} == {partition_for(f"demo-{run}-c", 3)}


# --------------------------------------------------------------------------- (b) tampered and forged


def test_tampered_and_forged_directives_are_rejected_and_nothing_is_stored(ex: Exchange) -> None:
    s, run, _ = publish_listing(ex)
    wait_for("person restricted", lambda: restricted(ex, s.person), ignoring=(httpx.HTTPError,))
    entry = f"court/demo-{run}-p"
    (genuine_row,) = history(ex, entry)
    real = next(
        r
        for r in read_all(ex, "directives")
        if default_registry().decode_model(r.value, Directive).directive_id == genuine_row["directive_id"]
    )

    # Tampered: one byte of the target identifier changed, the fan-out's headers kept.
    at = real.value.rindex(s.person.encode())
    tampered_id = s.person[:-2] + ("0" if s.person[-2] != "0" else "1") + s.person[-1]
    value = real.value[:at] + tampered_id.encode() + real.value[at + len(s.person) :]
    assert sum(a != b for a, b in zip(value, real.value, strict=True)) == 1
    produce_as_fanout(ex, value, list(real.headers), real.key)

    # Forged: a well-formed directive for a new subject, signed with the court's key (not the fan-out's).
    genuine = default_registry().decode_model(real.value, Directive)
    victim = other_ric(s.person)
    forged = genuine.model_copy(
        update={
            "directive_id": secrets.token_hex(16),
            "target": genuine.target.model_copy(update={"identifiers": (Identifier(scheme="CN_RIC", value=victim),)}),
        }
    )
    forged_value = default_registry().encode_model(forged)
    court = load_signer(ex.stack.home / "keys", "court")
    produce_as_fanout(ex, forged_value, court.sign(Domain.DIRECTIVE, forged_value).as_kafka(), forged.key.encode())

    def rejected() -> dict[str, str]:
        got = {r.directive_id: r.reason or "" for r in receipts(ex) if r.status.value == "REJECTED"}
        return got if {genuine.directive_id, forged.directive_id} <= set(got) else {}

    reasons = wait_for("two REJECTED receipts", rejected, timeout=30, every=1.0, ignoring=(httpx.HTTPError,))
    assert reasons[genuine.directive_id].startswith("TAMPERED")
    assert reasons[forged.directive_id].startswith("WRONG_AGENCY")
    # Nothing of either was stored.
    assert not restricted(ex, victim)
    assert restricted(ex, s.person)
    assert [d["directive_id"] for d in history(ex, entry)] == [genuine.directive_id]
    with client(ex.stack, ex.url) as c:
        assert c.check(victim).measures == []
        with pytest.raises(QuestionRejected):  # one digit changed: not even a valid identifier to ask about
            c.check(tampered_id)


# --------------------------------------------------------------------------- (c) restarts


def applied_and_receipted(ex: Exchange, what: str) -> tuple[Subjects, str, set[str]]:
    """A new listing published, its person restricted by the subscriber and a receipt sent for each of its
    directives: its subjects, its run and the ids of those directives."""
    s, run, _ = publish_listing(ex)
    wait_for(f"{what} applied", lambda: restricted(ex, s.person), ignoring=(httpx.HTTPError,))
    held = {d["directive_id"] for d in history(ex, f"court/demo-{run}-p")}
    wait_for(
        f"receipts of {what}",
        lambda: held <= {r.directive_id for r in receipts(ex)},
        timeout=30,
        every=1.0,
        ignoring=(httpx.HTTPError,),
    )
    return s, run, held


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_restart_resumes_without_reapplying(ex: Exchange, kill: bool) -> None:
    s, run, held = applied_and_receipted(ex, "the first listing")
    time.sleep(1.0)  # the outbox marks what it sent right after the broker acknowledged it
    before = Counter((r.directive_id, r.status.value) for r in receipts(ex))

    name, db = ex.sub.name, ex.stack.home / "data" / "aviation.sqlite"
    ex.stack.stop(name, kill=kill)
    ex.sub = start_subscriber(ex.stack, name, db)
    wait_ok(ex.stack, ex.url)
    assert restricted(ex, s.person)  # answered from the store it kept

    applied_and_receipted(ex, "a listing after the restart")
    time.sleep(2.0)  # give a re-application, if there were one, time to show
    after = Counter((r.directive_id, r.status.value) for r in receipts(ex))
    assert {k: n for k, n in after.items() if n > 1} == {}
    assert {k: n for k, n in after.items() if k in before} == before
    assert [d["directive_id"] for d in history(ex, f"court/demo-{run}-p")] == sorted(held)


# --------------------------------------------------------------------------- (d) bootstrap and health


def test_wiped_subscriber_bootstraps_from_the_topic_and_answers_the_same(ex: Exchange) -> None:
    s, _, _ = publish_listing(ex)
    wait_for("person restricted", lambda: restricted(ex, s.person), ignoring=(httpx.HTTPError,))
    idents = [s.company, s.legal_rep, s.person] + [
        d.target.identifiers[0].value
        for d in (default_registry().decode_model(r.value, Directive) for r in read_all(ex, "directives"))
    ]

    fresh = start_subscriber(
        ex.stack, "subscriber-aviation-fresh", ex.stack.home / "data" / "fresh.sqlite", "--progress-threshold", "0"
    )
    assert fresh.url
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not seen or seen[-1] != "ok":
        assert time.monotonic() < deadline, f"never ok: {seen}"
        try:
            status = httpx.get(f"{fresh.url}/healthz", timeout=2, verify=verify(ex.stack)).json()["status"]
        except httpx.HTTPError:
            status = None
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        time.sleep(0.02)
    # A small feed can be read before the first poll, so "starting" may be too brief to see
    # (the health logic itself is unit-tested with a fake clock); never anything but these two.
    assert seen[-1] == "ok" and set(seen) <= {"starting", "ok"}, seen

    def answers(url: str) -> list[tuple[str, str, list[tuple[str, str | None, str | None]]]]:
        with client(ex.stack, url) as c:
            return [
                (r.id, r.status, sorted((m.measure_id, m.entry_id, m.valid_until) for m in r.measures))
                for r in c.check_many(idents)
            ]

    assert answers(fresh.url) == answers(ex.url)
    assert sum(r == "restricted" for _, r, _ in answers(fresh.url)) >= 2
    assert fresh.log is not None
    log = fresh.log.read_text()
    assert "[aviation] bootstrap: reading" in log and "[aviation] bootstrap: done" in log
    ex.stack.stop(fresh.name)


# --------------------------------------------------------------------------- (e) known callers, caps, the query log


def _raw_post(ex: Exchange, head: bytes, body: bytes = b"", *, read: bool = True) -> bytes:
    """One request over TLS as the auditor, written as given; the answer's head."""
    home = ex.stack.subscriber_home("aviation")
    ctx = ssl.create_default_context(cafile=str(home.ca))
    ctx.load_cert_chain(str(home.client_cert("auditor")))
    host, port = ex.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(head)
        with contextlib.suppress(OSError):  # the server may close before the whole body is written
            tls.sendall(body)
        return tls.recv(4096) if read else b""


def test_a_huge_body_is_refused_without_disturbing_the_feed(ex: Exchange) -> None:
    ten_mb = 10 * 1024 * 1024
    stop = threading.Event()
    answers: list[bytes] = []

    def flood() -> None:
        # 10 MB bodies, declared and chunked, again and again while a listing goes through.
        while not stop.is_set():
            answers.append(
                _raw_post(
                    ex,
                    b"POST /v1/check HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(ten_mb).encode() + b"\r\n\r\n",
                )
            )
            chunk = b"a" * (1024 * 1024)
            answers.append(
                _raw_post(
                    ex,
                    b"POST /v1/check HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n",
                    b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)),
                )
            )

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        s, _, _ = publish_listing(ex)
        wait_for(
            "the listing applied during the flood",
            lambda: restricted(ex, s.person),
            timeout=60,
            ignoring=(httpx.HTTPError,),
        )
        health = httpx.get(f"{ex.url}/healthz", timeout=5, verify=verify(ex.stack))
        assert health.status_code == 200, health.text
    finally:
        stop.set()
        thread.join(30)
    assert answers and all(a.startswith(b"HTTP/1.1 413 ") for a in answers), answers[:3]
    assert all(b"connection: close" in a.lower() for a in answers)


def test_queries_lists_exactly_the_queries_about_an_id(ex: Exchange) -> None:
    s, _, _ = publish_listing(ex)
    wait_for("person restricted", lambda: restricted(ex, s.person), ignoring=(httpx.HTTPError,))
    asked = s.person
    with (
        client(ex.stack, ex.url, "counter") as counter,
        client(ex.stack, ex.url, "counter-key") as keyed,
        client(ex.stack, ex.url, "auditor") as auditor,
    ):
        counter.check(asked)
        counter.check(s.legal_rep)  # about someone else
        keyed.check_many([s.company, asked.lower(), "nobody"])
        auditor.check(f" {asked} ", measure=AIR)
        auditor.check(s.company)
    time.sleep(1.0)  # the query log writes in batches, every quarter of a second
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "subscriber",
            "queries",
            "--agency",
            "aviation",
            "--id",
            asked.lower(),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")},
            "CONCORD_HOME": str(ex.stack.home),
        },
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    # restricted() above asked as the auditor too: every query about the person, and only those.
    mine = [(r["client"], r["route"], r["measure"], r["answer"]) for r in rows]
    assert mine[-3:] == [
        ("counter", "check", None, "restricted"),
        ("counter-key", "check", None, "restricted"),
        ("auditor", "check", AIR, "restricted"),
    ]
    assert all(c == "auditor" and m == AIR for c, _, m, _ in mine[:-3])
    # Polls made before the listing arrived answered clear, naming no measure.
    assert all(AIR in r["measures"] if r["answer"] == "restricted" else r["measures"] == [] for r in rows)
    log = (ex.stack.home / "data" / "aviation-queries.sqlite").read_bytes()
    assert asked.encode() not in log and s.company.encode() not in log


def test_only_committed_directives_are_applied(ex: Exchange) -> None:
    """read_committed: a directive of an aborted transaction never reaches the store; one of a
    committed transaction does, and the transaction markers do not keep the feed from being current."""
    s, run, _ = publish_listing(ex)
    wait_for("person restricted", lambda: restricted(ex, s.person), ignoring=(httpx.HTTPError,))
    (row,) = history(ex, f"court/demo-{run}-p")
    real = next(
        r
        for r in read_all(ex, "directives")
        if r.value and default_registry().decode_model(r.value, Directive).directive_id == row["directive_id"]
    )
    genuine = default_registry().decode_model(real.value, Directive)
    fanout = load_signer(ex.stack.home / "keys", "concord-fanout")
    # Two re-issues of the genuine directive, both of which the subscriber would apply if it read them
    # (every directive must follow from its record): the aborted one under the higher sequence number,
    # so that reading it would leave the committed one unapplied as older.
    aborted_id, committed_id = secrets.token_hex(16), secrets.token_hex(16)

    def variant(directive_id: str, seq: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        d = genuine.model_copy(update={"directive_id": directive_id, "seq": seq})
        value = default_registry().encode_model(d)
        return real.key, value, fanout.sign(Domain.DIRECTIVE, value).as_kafka()

    async def go() -> None:
        # The admin writes (the fan-out's principal has no transactional id granted yet); the fan-out signs.
        producer = AIOKafkaProducer(
            **ex.cluster.access("concord-admin").aiokafka_kwargs(),
            transactional_id=f"t-{secrets.token_hex(4)}",
            enable_idempotence=True,
        )
        await producer.start()
        try:
            key, value, headers = variant(aborted_id, genuine.seq + 2)
            await producer.begin_transaction()
            await producer.send_and_wait(ex.topic("directives"), value=value, key=key, headers=headers)
            await producer.abort_transaction()
            key, value, headers = variant(committed_id, genuine.seq + 1)
            await producer.begin_transaction()
            await producer.send_and_wait(ex.topic("directives"), value=value, key=key, headers=headers)
            await producer.commit_transaction()
        finally:
            await producer.stop()

    asyncio.run(go())

    def ids() -> list[str]:
        return [h["directive_id"] for h in history(ex, f"court/demo-{run}-p")]

    wait_for("the committed directive applied", lambda: committed_id in ids(), ignoring=(httpx.HTTPError,))
    assert aborted_id not in ids()
    assert restricted(ex, s.person)
    wait_ok(ex.stack, ex.url)  # the feed is confirmed current past the transaction markers


# --------------------------------------------------------------------------- (f) validity, fan-out stopped


def test_expired_restriction_answers_clear_with_the_fanout_stopped(ex: Exchange) -> None:
    s, run, _ = publish_listing(ex, person_for=15)
    wait_for("person restricted", lambda: restricted(ex, s.person), ignoring=(httpx.HTTPError,))
    (row,) = history(ex, f"court/demo-{run}-p")
    with client(ex.stack, ex.url) as c:
        until = datetime.fromisoformat(c.check(s.person, measure=AIR).measures[0].valid_until or "")
    ex.stack.stop("fanout")
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.5)
    assert not restricted(ex, s.person)
    assert [d["directive_id"] for d in history(ex, f"court/demo-{run}-p")] == [row["directive_id"]]  # no LIFT
    with client(ex.stack, ex.url) as c:
        before = c.check(s.person, measure=AIR, at=until - timedelta(seconds=1))
    assert before.restricted  # still answerable for a time inside the window
