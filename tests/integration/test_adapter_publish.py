"""`concord publish` against the real broker: CSV through a mapping, idempotent
re-publishing, standard input published as it arrives, and a broker restart in the
middle of a publish costing neither a record nor a duplicate.

Each test owns its namespace (topics, ACLs) and home folder (keys, ledger) on the
session broker, built by ``make_stack``; no fan-out or subscriber is started.
The publisher runs as the real command in a subprocess, as an agency runs it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from services.localstack import LocalStack
from tests.conftest import REPO_ROOT, KafkaCluster
from tests.integration.conftest import make_stack
from tests.integration.support import EXAMPLES, concord, concord_env, event_ids, listings, read_topic
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


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
    assert seen == Counter(
        {
            "court:court-2026-000123:1": 1,
            "court:court-2026-000124:1": 1,
            "court:court-2026-000125:1": 1,
            "court:court-2026-000123:2": 1,
        }
    )

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
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "publish", "--agency", "court", "-"],
        env=concord_env(stack.home),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        for n, line in enumerate(lines, start=1):
            proc.stdin.write(line)
            proc.stdin.flush()
            # on the broker while standard input is still open

            def on_topic(n: int = n) -> bool:
                return len(read_topic(kafka_cluster, topic)) == n

            wait_for(f"record {n} on {topic}", on_topic, timeout=30)
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
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "publish", "--agency", "court", "-"],
            env=concord_env(stack.home),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            cwd=REPO_ROOT,
        )

    def write() -> None:
        assert proc.stdin is not None
        proc.stdin.writelines(lines[:before])
        proc.stdin.flush()
        restarting.wait(60)
        # the rest arrive while the broker stops, is down, and comes back
        for i in range(before, total, 50):
            proc.stdin.writelines(lines[i : i + 50])
            proc.stdin.flush()
            time.sleep(0.1)
        proc.stdin.close()

    def acked() -> int:
        if not ledger.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
                return int(db.execute("SELECT count(*) FROM published").fetchone()[0])
        except sqlite3.OperationalError:  # the file is there, its table not yet
            return 0

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_for("first records acknowledged", lambda: acked() >= before, timeout=60)
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
