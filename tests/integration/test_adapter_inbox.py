"""`concord adapter run` on the real broker: files renamed into the drop folder are
published once, whatever is dropped again is not published again, and SIGTERM
stops the command cleanly."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from services.localstack import LocalStack
from tests.conftest import KafkaCluster
from tests.integration.conftest import make_stack
from tests.integration.support import EXAMPLES, event_ids, inbox_adapter, listings
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def drop(inbox: Path, name: str, text: str) -> None:
    part = inbox / f"{name}.part"
    part.write_text(text, encoding="utf-8")
    part.rename(inbox / name)


def result(inbox: Path, name: str, timeout: float = 60) -> dict[str, Any]:
    path = inbox / "done" / f"{name}.result.json"
    wait_for(f"result of {name}", path.exists, timeout=timeout)
    got: dict[str, Any] = json.loads(path.read_text())
    return got


def test_inbox_publishes_each_dropped_file_once(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> None:
    stack: LocalStack = make_stack(kafka_cluster, tmp_path / "home", unique_ns)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log = tmp_path / "adapter.log"
    with inbox_adapter(stack.home, "court", inbox, log, "--mapping", str(EXAMPLES / "court-mapping.yaml")) as proc:
        lines = listings(5, "inbox")
        drop(inbox, "monday.jsonl", "".join(lines) + "not json\n")
        first = result(inbox, "monday.jsonl")
        assert (first["status"], first["accepted"], first["rejected"], first["already_published"]) == ("done", 5, 1, 0)
        assert Path(first["rejects_path"]).exists()

        drop(inbox, "court-export.csv", (EXAMPLES / "court-export.csv").read_text(encoding="utf-8"))
        csv_result = result(inbox, "court-export.csv")
        assert (csv_result["accepted"], csv_result["rejected"]) == (4, 0)

        # the same records again, under another name and with one new record
        drop(inbox, "monday-again.jsonl", "".join(lines) + listings(6, "inbox")[5])
        again = result(inbox, "monday-again.jsonl")
        assert (again["accepted"], again["rejected"], again["already_published"]) == (1, 0, 5)
    output = log.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "[court] inbox stopped" in output
    assert sorted(p.name for p in inbox.iterdir()) == ["done", "failed"]

    seen = event_ids(kafka_cluster, stack)
    assert len(seen) == 6 + 4 and set(seen.values()) == {1}
    assert Counter(e.split(":")[1].split("-")[0] for e in seen) == Counter({"inbox": 6, "court": 4})
