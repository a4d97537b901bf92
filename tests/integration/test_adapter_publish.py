"""`concord publish` against the real broker: CSV through a mapping, idempotent
re-publishing, standard input published as it arrives, and a broker restart in the
middle of a publish costing neither a record nor a duplicate.

Each test owns its namespace (topics, ACLs) and home folder (keys, ledger) on the
session broker, built by ``make_stack``; no fan-out or subscriber is started.
The publisher runs as the real command in a subprocess, as an agency runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.core.codec import default_registry
from services.core.models import ListingCommitments, SealedListing
from services.core.signing import Domain, SignedHeaders
from services.keystore import load_keyring
from services.localstack import LocalStack
from services.topic_metadata import read_to_end
from tests.conftest import KafkaCluster
from tests.integration.conftest import make_stack
from tests.unit.factories import entry_dict, make_ric, person

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "deploy" / "examples"


def concord_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    env["CONCORD_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def concord(home: Path, *args: str, stdin: str | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=concord_env(home), input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_ROOT)


def read_topic(cluster: KafkaCluster, topic: str) -> list[Any]:
    """Every record of ``topic`` from the beginning to its current end, read as concord-admin."""
    records = asyncio.run(asyncio.wait_for(read_to_end(cluster.access("concord-admin"), [topic]), 60))
    return [r for _, r in records]


def event_ids(cluster: KafkaCluster, stack: LocalStack, agency: str = "court") -> Counter[str]:
    topic = stack.world.topic_name("lists", agency, namespace=stack.namespace)
    keyring = load_keyring(stack.home / "keys")
    registry = default_registry()
    seen: Counter[str] = Counter()
    for rec in read_topic(cluster, topic):
        # what arrives is sealed, its commitments signed by the agency, and reads as a list record
        sealed = registry.decode_model(rec.value, SealedListing)
        keyring.verify(Domain.LIST_RECORD, sealed.commitments, SignedHeaders.from_kafka(rec.headers),
                       expected_agency=agency, at=datetime.now(UTC))
        seen[registry.decode_model(sealed.commitments, ListingCommitments).event_id] += 1
    return seen


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.2)


def listings(n: int, run: str) -> list[str]:
    """``n`` valid court listings of distinct persons, as JSON lines."""
    out = []
    for i in range(n):
        ric = make_ric(i % 1000, birth=date(1950, 1, 1) + timedelta(days=i // 1000))
        out.append(json.dumps(entry_dict(entry_id=f"{run}-{i}", subject=person(ric))) + "\n")
    return out


@pytest.fixture
def stack(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> LocalStack:
    return make_stack(kafka_cluster, tmp_path / "home", unique_ns)


def test_csv_publish_is_idempotent(kafka_cluster: KafkaCluster, stack: LocalStack, tmp_path: Path) -> None:
    export = tmp_path / "court-export.csv"
    export.write_text((EXAMPLES / "court-export.csv").read_text(encoding="utf-8"), encoding="utf-8")
    mapping = str(EXAMPLES / "court-mapping.yaml")

    first = concord(stack.home, "publish", "--agency", "court", str(export), "--mapping", mapping)
    assert first.returncode == 0, first.stderr
    assert "court: published 4 to " in first.stderr
    second = concord(stack.home, "publish", "--agency", "court", str(export), "--mapping", mapping)
    assert second.returncode == 0, second.stderr
    assert "published 0 to " in second.stderr and "4 already published" in second.stderr

    seen = event_ids(kafka_cluster, stack)
    assert seen == Counter({"court:court-2026-000123:1": 1, "court:court-2026-000124:1": 1,
                            "court:court-2026-000125:1": 1, "court:court-2026-000123:2": 1})

    # The same event id with other content is refused, and nothing is sent.
    text = export.read_text(encoding="utf-8").replace("see decision", "see the amended decision")
    export.write_text(text, encoding="utf-8")
    third = concord(stack.home, "publish", "--agency", "court", str(export), "--mapping", mapping)
    assert third.returncode == 1
    assert f"{export}:3: event_id: 'court:court-2026-000124:1' was published at " in third.stderr
    assert len(read_topic(kafka_cluster, stack.world.topic_name("lists", "court", namespace=stack.namespace))) == 4
    rejects = [json.loads(x) for x in Path(f"{export}.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [3]


def test_stdin_is_published_as_lines_arrive(kafka_cluster: KafkaCluster, stack: LocalStack) -> None:
    lines = listings(2, "stream")
    topic = stack.world.topic_name("lists", "court", namespace=stack.namespace)
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "publish", "--agency", "court", "-"],
                            env=concord_env(stack.home), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        for n, line in enumerate(lines, start=1):
            proc.stdin.write(line)
            proc.stdin.flush()
            # on the broker while standard input is still open

            def on_topic(n: int = n) -> bool:
                return len(read_topic(kafka_cluster, topic)) == n

            wait_for(on_topic, 30, f"record {n} on {topic}")
        assert proc.poll() is None
        proc.stdin.close()
        proc.wait(60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdin.close()
        proc.stderr.close()
    assert proc.returncode == 0, err
    assert "court: published 2 to " in err


def test_publish_survives_a_broker_restart(kafka_cluster: KafkaCluster, stack: LocalStack, tmp_path: Path) -> None:
    broker = kafka_cluster.embedded
    if broker is None:
        pytest.skip("restarts only the embedded broker")
    total, before = 3000, 1000
    lines = listings(total, "restart")
    log = tmp_path / "publish.log"
    ledger = stack.home / "adapter" / "court.sqlite"
    restarting = threading.Event()

    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "publish", "--agency", "court", "-"],
                                env=concord_env(stack.home), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=err, text=True, cwd=REPO_ROOT)

    def write() -> None:
        assert proc.stdin is not None
        proc.stdin.writelines(lines[:before])
        proc.stdin.flush()
        restarting.wait(60)
        # the rest arrive while the broker stops, is down, and comes back
        for i in range(before, total, 50):
            proc.stdin.writelines(lines[i:i + 50])
            proc.stdin.flush()
            time.sleep(0.1)
        proc.stdin.close()

    def acked() -> int:
        if not ledger.exists():
            return 0
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM published").fetchone()[0])

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_for(lambda: acked() >= before, 60, "first records acknowledged")
        restarting.set()
        broker.restart()  # from this (the starting) thread: the broker is tied to it
        writer.join(60)
        proc.wait(180)
    finally:
        restarting.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        writer.join(10)
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
    output = log.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert f"court: published {total} to " in output

    seen = event_ids(kafka_cluster, stack)
    assert len(seen) == total
    assert set(seen.values()) == {1}, [e for e, n in seen.items() if n > 1][:10]
    assert acked() == total
