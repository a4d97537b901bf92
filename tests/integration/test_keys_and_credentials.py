"""Keys and passwords change under a running exchange, and nobody notices but the auditor.

The fan-out, the aviation subscriber and the court's drop-folder adapter run on the signed
registry while the court keeps dropping listings. Meanwhile the court, the fan-out and
aviation each get a new signing key (``concord keys rotate``), and the fan-out, aviation and
the court a new SCRAM password (``concord credentials rotate``). Every listing must reach
aviation, nothing may be refused anywhere, the new keys must be the ones in use at the end,
the old passwords must no longer open a connection, the audit must come out clean as
``concord-audit`` — and at no moment may a password appear on a process's command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from services.core.principals import ADMIN, FANOUT
from services.core.signing import SignedHeaders
from services.core.world import TopicKind
from services.credentials import read_password
from services.governance.credentials import set_scram_password
from services.localstack import LocalStack
from services.topic_metadata import read_to_end
from tests.conftest import KafkaCluster
from tests.integration.conftest import make_stack, started
from tests.integration.support import quarantined
from tests.support import wait_for
from tests.unit.factories import entry_dict, make_ric, person

pytestmark = pytest.mark.integration

LISTINGS = 14  # at least this many listings, dropped 0.6 s apart
AFTER_ROTATION = 3  # and at least this many once every key and password has rotated
MAX_LISTINGS = 200
ROTATED_KEYS = ("court", FANOUT, "aviation")
ROTATED_PASSWORDS = (FANOUT, "aviation", "court")


def concord(stack: LocalStack, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    env["CONCORD_HOME"] = str(stack.home)
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def command_lines() -> dict[int, str]:
    """Every process's command line, as ``ps`` shows it to anyone on the machine."""
    out: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
    return out


def secrets_of(stack: LocalStack, cluster: KafkaCluster) -> set[str]:
    found = {
        read_password(stack.credentials_dir, p.name.removesuffix(".json")) for p in stack.credentials_dir.glob("*.json")
    }
    if cluster.embedded is not None:
        found.add(json.loads((cluster.embedded.workdir / "state.json").read_text())["broker_password"])
    return found


def drop(inbox: Path, n: int) -> None:
    """One listing dropped the way the adapter wants it: written aside, then renamed in."""
    line = json.dumps(entry_dict(entry_id=f"rot-{n}", subject=person(make_ric(300 + n), name=f"Person {n}")))
    part = inbox / f".rot-{n}.jsonl"
    part.write_text(line + "\n")
    part.rename(inbox / f"rot-{n}.jsonl")


def metric(stack: LocalStack, target: str, name: str) -> float:
    text = urllib.request.urlopen(f"http://{stack.scrape_targets()[target]}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def key_ids(stack: LocalStack, kind: TopicKind, agency: str) -> list[str]:
    topic = stack.world.topic_name(kind, agency, namespace=stack.namespace)
    records = sorted(
        (rec for _, rec in asyncio.run(read_to_end(stack.access(ADMIN), [topic]))),
        key=lambda rec: (rec.timestamp, rec.partition, rec.offset),  # the broker's append time: oldest first
    )
    out = []
    for rec in records:
        signed = SignedHeaders.from_kafka(rec.headers)
        if signed is not None:
            out.append(signed.key_id)
    return out


def can_log_in(stack: LocalStack, principal: str, password: str) -> bool:
    admin = AdminClient(
        {**stack.access(principal).with_password(password).confluent_config(), "reconnect.backoff.max.ms": 200}
    )
    try:
        admin.list_topics(timeout=8)
    except KafkaException:
        return False
    return True


@pytest.fixture
def running(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> Iterator[LocalStack]:
    def start(stack: LocalStack) -> None:
        stack.start_fanout()
        stack.start_subscriber("aviation")
        stack.start_subscriber("rail")  # the court's persons reach both: the audit wants both receipts
        stack.start_adapter("court")

    try:
        with started(make_stack(kafka_cluster, tmp_path / "home", unique_ns), start) as stack:
            yield stack
    finally:
        # SCRAM users belong to the whole cluster, which later tests share: give back their passwords.
        admin_access = kafka_cluster.access(ADMIN)
        admin = AdminClient(admin_access.confluent_config())
        for principal in ROTATED_PASSWORDS:
            set_scram_password(admin, admin_access, principal, kafka_cluster.passwords[principal])


def test_keys_and_passwords_rotate_while_everything_keeps_working(
    running: LocalStack, kafka_cluster: KafkaCluster
) -> None:
    stack = running
    inbox = stack.home / "inbox" / "court"
    old_keys = {a: key_ids_now(stack, a) for a in ROTATED_KEYS}
    old_passwords = {p: read_password(stack.credentials_dir, p) for p in ROTATED_PASSWORDS}
    seen_secrets = secrets_of(stack, kafka_cluster)
    leaked: list[str] = []

    rotated = threading.Event()
    dropped: list[int] = []

    def feed() -> None:
        # Listings keep coming through the rotations and for a few more after them, so that every
        # rotated signer signs with its new key before the end, however long the rotations take.
        after = 0
        for n in range(MAX_LISTINGS):
            if n >= LISTINGS and after >= AFTER_ROTATION:
                break
            if rotated.is_set():
                after += 1
            drop(inbox, n)
            dropped.append(n)
            time.sleep(0.6)

    def watch_ps(stop: threading.Event) -> None:
        while not stop.is_set():
            for pid, line in command_lines().items():
                leaked.extend(f"pid {pid}" for s in seen_secrets if s in line)
            stop.wait(0.2)

    stop = threading.Event()
    ps = threading.Thread(target=watch_ps, args=(stop,), daemon=True)
    ps.start()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(1.5)
        for agency in ROTATED_KEYS:
            assert "published registry serial" in concord(stack, "keys", "rotate", "--agency", agency)
        for principal in ROTATED_PASSWORDS:
            assert "new SCRAM password in force" in concord(stack, "credentials", "rotate", "--principal", principal)
            seen_secrets.add(read_password(stack.credentials_dir, principal))
        rotated.set()
        feeder.join(timeout=120)
        assert not feeder.is_alive()
        people = [make_ric(300 + n) for n in dropped]

        def answers() -> list[str]:
            with stack.check_client("aviation") as client:
                return [client.check(p, allow_unknown=True).status for p in people]

        wait_for(
            "every listing applied by aviation",
            answers,
            until=lambda got: got == ["restricted"] * len(people),
            timeout=90,
        )
    finally:
        stop.set()
        ps.join(timeout=5)
    assert leaked == []  # no password, old or new, on any command line while all of this ran

    done = [json.loads(p.read_text()) for p in (inbox / "done").glob("*.result.json")]
    assert sorted(r["accepted"] for r in done) == [1] * len(people)
    assert quarantined(stack) == []
    assert metric(stack, "subscriber-aviation", "concord_subscriber_rejected_total") == 0
    assert metric(stack, "fanout", "concord_fanout_receipts_refused_total") == 0
    wait_for(
        "aviation's receipts for every listing",
        lambda: [metric(stack, "fanout", 'concord_fanout_receipts_total{status="APPLIED"}')],
        until=lambda got: got[0] >= len(people),
        timeout=45,
    )
    # Each rotated signer ended on its new key, and what it signed before still verified.
    signed_topics: tuple[tuple[str, TopicKind, str], ...] = (
        ("court", "lists", "court"),
        (FANOUT, "directives", "aviation"),
        ("aviation", "receipts", "aviation"),
    )
    for agency, kind, owner in signed_topics:
        used = key_ids(stack, kind, owner)
        assert used[-1] not in old_keys[agency] and set(old_keys[agency]) & set(used), (agency, used)
    for principal, old in old_passwords.items():
        assert not can_log_in(stack, principal, old)
        assert can_log_in(stack, principal, read_password(stack.credentials_dir, principal))
    assert [s.name for s in stack.services if s.proc.poll() is not None] == []
    assert "CLEAN" in concord(stack, "audit")  # as concord-audit, which reads and writes nothing


def key_ids_now(stack: LocalStack, agency: str) -> list[str]:
    from services.keystore import load_keyring

    return [k.key_id for k in load_keyring(stack.home / "keys").public_keys() if k.agency == agency]
