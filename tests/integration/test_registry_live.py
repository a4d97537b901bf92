"""Governance that changes without restarts: a running exchange follows the signed registry.

One exchange (the fan-out and the subscribers of finance, aviation and securities, all on
the registry) lives through, in order: a new MOU published while everything runs, after
the court rotated its key; a revocation met by a record its producer backdated; an MOU
terminated; a registry that grew older than its maximum age; and a fresh publication.
No service is restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.models import Action, ListEntryEvent
from services.core.signing import Domain, Signer
from services.localstack import LocalStack, Service
from tests.conftest import KafkaCluster
from tests.integration.conftest import make_stack, started
from tests.integration.support import (
    BOARD,
    add_securities_mou,
    directives,
    for_entry,
    publish,
    quarantined,
    terminate_judgment_defaulters,
)
from tests.support import wait_for
from tests.unit.factories import delisting, entry_dict, legal_rep, make_ric, make_uscc, organization

pytestmark = pytest.mark.integration

REPO_TOPICS = Path(__file__).resolve().parents[2] / "topics"


def concord(stack: LocalStack, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    env["CONCORD_HOME"] = str(stack.home)
    env["CONCORD_WORLD_DIR"] = str(stack.world_dir)
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def health(service: Service) -> tuple[int, dict[str, Any]]:
    """``/healthz`` of the fan-out (plain HTTP) or of a subscriber (TLS, its agency's CA)."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(service.ca)) if service.ca else None
    try:
        with urllib.request.urlopen(f"{service.url}/healthz", timeout=5, context=ctx) as r:  # noqa: S310 - loopback
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def service(stack: LocalStack, name: str) -> Service:
    return next(s for s in stack.services if s.name == name)


def registry_serial(stack: LocalStack, name: str) -> int | None:
    _, doc = health(service(stack, name))
    reg = doc.get("registry")
    if isinstance(reg, dict):
        return int(reg["serial"]) if reg.get("serial") is not None else None
    return int(reg.split()[1].rstrip(",")) if isinstance(reg, str) and reg.startswith("serial") else None


def everyone_at(stack: LocalStack, serial: int) -> None:
    """Wait until the fan-out and every subscriber hold registry publication ``serial``."""
    names = [s.name for s in stack.services if s.url]
    wait_for(
        f"every service on registry serial {serial}",
        lambda: [registry_serial(stack, n) for n in names],
        until=lambda got: all(g == serial for g in got),
        timeout=30,
    )


def answer(stack: LocalStack, agency: str, ident: str, measure: str | None = None) -> str:
    with stack.check_client(agency) as client:
        return client.check(ident, measure=measure, allow_unknown=True).status


def answers(stack: LocalStack, asks: Sequence[tuple[str, str, str | None]]) -> list[str]:
    return [answer(stack, agency, ident, measure) for agency, ident, measure in asks]


def world_with(stack: LocalStack, name: str, edit: Callable[[Path], None]) -> Path:
    """A copy of the world folder with ``edit(mous_folder)`` applied."""
    target = stack.home.parent / name
    shutil.copytree(stack.world_dir or REPO_TOPICS, target)
    edit(target / "mous")
    return target


def produce_backdated(stack: LocalStack, signer: Signer, event: ListEntryEvent, stamp: datetime) -> None:
    """What a thief with a revoked key does: signs now, and stamps the record with an earlier time."""
    topic = stack.world.topic_name("lists", signer.agency, namespace=stack.namespace)
    sealed = seal_record(event, default_registry())

    async def go() -> None:
        producer = AIOKafkaProducer(**stack.access(signer.agency).aiokafka_kwargs(), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                topic,
                value=sealed.value,
                key=event.entry_id.encode(),
                headers=signer.sign(Domain.LIST_RECORD, sealed.commitments).as_kafka(),
                timestamp_ms=int(stamp.timestamp() * 1000),
            )
        finally:
            await producer.stop()

    asyncio.run(go())


@pytest.fixture
def governed(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> Iterator[LocalStack]:
    world = tmp_path / "topics"
    shutil.copytree(REPO_TOPICS, world)

    def start(stack: LocalStack) -> None:
        stack.start_fanout()
        for agency in ("finance", "aviation", "securities"):
            stack.start_subscriber(agency)

    # make_stack provisions topics, ACLs, and registry serial 1
    with started(make_stack(kafka_cluster, tmp_path / "home", unique_ns, world_dir=world), start) as stack:
        yield stack


def test_a_running_exchange_follows_the_registry_and_fails_closed_when_it_is_stale(governed: LocalStack) -> None:
    stack = governed
    company, rep = make_uscc(7101), make_ric(101)
    listing = entry_dict(entry_id="gov-1", subject=organization(company, reps=[legal_rep(rep)]))
    publish(stack, "court", [listing])
    listed = [("finance", company, "finance.procurement-ban"), ("aviation", rep, "aviation.no-air-tickets")]
    wait_for(
        "the listing applied",
        lambda: answers(stack, listed),
        until=lambda got: got == ["restricted"] * 2,
        timeout=45,
    )
    assert answer(stack, "securities", rep) == "clear"  # no MOU gives securities this program yet

    # The court rotates its key with no overlap: its old key ends now. Then a new MOU is published while
    # everything runs: the fan-out backfills securities with directives issued now, forwarding the listing
    # signed by the old key, which securities verifies at the record's own broker time.
    out = concord(stack, "keys", "rotate", "--agency", "court", "--overlap", "0s")
    assert "published registry serial 2" in out, out
    stack.use_world(world_with(stack, "topics-2", add_securities_mou))  # serial 3
    everyone_at(stack, 3)
    wait_for(
        "securities applying the new MOU",
        lambda: [answer(stack, "securities", rep, BOARD)],
        until=lambda got: got == ["restricted"],
        timeout=45,
    )
    board = [d for d in for_entry(directives(stack), "gov-1") if d.measure_id == BOARD]
    assert [(d.action, d.cause.value, d.registry_serial) for d in board] == [(Action.APPLY, "MOU_CHANGED", 3)]
    assert board[0].source is not None and board[0].source.appended_at is not None
    assert board[0].source.appended_at < board[0].issued_at

    # A revoked key: a record signed with it after the revocation is refused, however early its producer
    # stamps it (the broker stamps list records itself).
    market = Signer.from_pem("market", *_key_pem(stack, "market"))
    concord(stack, "keys", "revoke", "--agency", "market", "--key", market.key_id)  # serial 4
    everyone_at(stack, 4)
    stolen = ListEntryEvent.model_validate(
        entry_dict(
            entry_id="gov-stolen",
            program="market.food-safety-serious",
            event_id="market:gov-stolen:1",
            subject=organization(make_uscc(7102)),
        )
    )
    produce_backdated(stack, market, stolen, datetime.now(UTC) - timedelta(days=2))
    refused = wait_for(
        "the backdated record refused",
        lambda: [q for q in quarantined(stack) if q.key == b"gov-stolen"],
        timeout=45,
    )
    assert refused[0].reason == "KEY_REVOKED"

    # The judgment-defaulters MOU is terminated: its measures are lifted everywhere; securities' MOU stays.
    def securities_joined_and_judgment_defaulters_terminated(mous: Path) -> None:
        add_securities_mou(mous)
        terminate_judgment_defaulters(mous)

    stack.use_world(world_with(stack, "topics-3", securities_joined_and_judgment_defaulters_terminated))  # serial 5
    everyone_at(stack, 5)
    wait_for(
        "the terminated MOU lifted",
        lambda: answers(stack, listed),
        until=lambda got: got == ["clear"] * 2,
        timeout=45,
    )
    lifts = [d for d in for_entry(directives(stack), "gov-1") if d.action is Action.LIFT]
    assert {(d.subscriber, d.cause.value) for d in lifts} == {
        ("finance", "MOU_CHANGED"),
        ("aviation", "MOU_CHANGED"),
        ("rail", "MOU_CHANGED"),
    }
    assert answer(stack, "securities", rep, BOARD) == "restricted"

    # The registry grows older than its maximum age (a publication claiming a time long past stands for
    # a publisher that stopped republishing): the fan-out withholds APPLYs, subscribers answer unknown.
    stack.publish_registry(at=datetime.now(UTC) - timedelta(seconds=stack.registry_max_age + 3600))  # serial 6
    everyone_at(stack, 6)
    code, doc = health(service(stack, "fanout"))
    assert (code, doc["status"]) == (503, "degraded") and "withholding APPLYs" in doc["detail"]
    code, doc = health(service(stack, "subscriber-securities"))
    assert (code, doc["status"]) == (503, "degraded") and "answers are unknown" in doc["detail"]
    assert answer(stack, "securities", rep, BOARD) == "unknown"
    metrics = urllib.request.urlopen(f"{service(stack, 'fanout').url}/metrics", timeout=5).read().decode()  # noqa: S310 - a loopback http URL
    assert 'concord_registry_stale{component="fanout",principal="concord-fanout"} 1.0' in metrics
    rep2 = make_ric(102)
    second = entry_dict(
        entry_id="gov-2", event_id="court:gov-2:1", subject=organization(make_uscc(7103), reps=[legal_rep(rep2)])
    )
    ended = entry_dict(
        entry_id="gov-1",
        version=2,
        event_id="court:gov-1:2",
        event_type="DELISTED",
        subject=listing["subject"],
        delisting=delisting(),
    )
    publish(stack, "court", [second, ended])
    wait_for(
        "the delisting's LIFT while stale",
        lambda: for_entry(directives(stack), "gov-1"),
        until=lambda ds: any(d.measure_id == BOARD and d.action is Action.LIFT for d in ds),
        timeout=45,
    )
    assert for_entry(directives(stack), "gov-2") == []  # withheld

    # A fresh publication: the withheld APPLY goes out and the subscribers answer again.
    stack.publish_registry()  # serial 7
    everyone_at(stack, 7)
    wait_for(
        "the withheld APPLY issued and answers restored",
        lambda: [answer(stack, "securities", rep2, BOARD), answer(stack, "securities", rep, BOARD)],
        until=lambda got: got == ["restricted", "clear"],
        timeout=45,
    )
    assert health(service(stack, "fanout"))[0] == 200
    issued = for_entry(directives(stack), "gov-2")
    assert {(d.action, d.subscriber, d.registry_serial) for d in issued} == {(Action.APPLY, "securities", 7)}
    assert [s.name for s in stack.services if s.proc.poll() is not None] == []  # nothing restarted or died


def _key_pem(stack: LocalStack, agency: str) -> tuple[str, bytes]:
    """An agency's current key id and private key, as a thief would hold them."""
    from services.keystore import load_signer

    signer = load_signer(stack.home / "keys", agency)
    return signer.key_id, signer.private_pem()
