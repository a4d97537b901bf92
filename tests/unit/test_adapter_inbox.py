"""The drop folder: a file counts only once it is renamed in, is published through
the ledger, and is moved aside with a result file saying what happened to it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from services.adapter.csv_source import load_mapping
from services.adapter.inbox import Inbox, InboxRunner
from services.adapter.ledger import Ledger
from services.adapter.publish import Publisher
from tests.unit.factories import REPO_ROOT, real_world
from tests.unit.test_adapter_ledger import TOPIC, FakeProducer, jsonl, publisher, records

pytestmark = pytest.mark.unit

EXAMPLES = REPO_ROOT / "deploy" / "examples"


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    box = Inbox(tmp_path / "inbox")
    box.root.mkdir()
    box.prepare()
    return box


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "court.sqlite", topic=TOPIC) as led:
        yield led


def drop(box: Inbox, name: str, text: str) -> Path:
    """Write the way the inbox expects: under a hidden name, then rename into place."""
    tmp = box.root / f".{name}.part"
    tmp.write_text(text, encoding="utf-8")
    return tmp.replace(box.root / name)


def runner(box: Inbox, pub: Publisher, **kw: object) -> InboxRunner:
    return InboxRunner(box, publisher=pub, world=real_world(), mapping=load_mapping(EXAMPLES / "court-mapping.yaml"),
                       **kw)  # type: ignore[arg-type]


def test_only_renamed_complete_files_are_seen(inbox: Inbox) -> None:
    for name in (".export.jsonl", "export.jsonl.part", "export.jsonl.tmp"):
        (inbox.root / name).write_text("{}\n")
    assert inbox.ready() == []
    (inbox.root / "export.jsonl.part").rename(inbox.root / "export.jsonl")
    assert [p.name for p in inbox.ready()] == ["export.jsonl"]


def test_oldest_file_first(inbox: Inbox) -> None:
    b = drop(inbox, "b.jsonl", "")
    a = drop(inbox, "a.jsonl", "")
    os.utime(b, (time.time() - 60, time.time() - 60))
    assert inbox.ready() == [b, a]


async def test_file_is_published_and_moved_aside_with_its_result(inbox: Inbox, ledger: Ledger) -> None:
    good = records(3)
    text = "".join(jsonl(good)) + '{"event_id": "broken"\n' + json.dumps({**good[0], "basis": None}) + "\n"
    drop(inbox, "export.jsonl", text)
    producer = FakeProducer()
    async with publisher(producer, ledger) as pub:
        res = await runner(inbox, pub).process(inbox.root / "export.jsonl")

    assert not (inbox.root / "export.jsonl").exists()
    assert (inbox.done / "export.jsonl").read_text(encoding="utf-8") == text
    result = json.loads((inbox.done / "export.jsonl.result.json").read_text())
    assert result["status"] == "done"
    assert (result["accepted"], result["rejected"], result["already_published"]) == (3, 2, 0)
    assert result["rejects_path"] == str(inbox.done / "export.jsonl.rejects.jsonl")
    assert result["error"] is None
    assert datetime.fromisoformat(result["published_at"]).utcoffset() is not None
    assert res.accepted == 3 and len(producer.sent) == 3
    rejects = [json.loads(x) for x in Path(result["rejects_path"]).read_text().splitlines()]
    assert [r["line"] for r in rejects] == [4, 5]
    assert rejects[0]["problems"][0].startswith("<record>: malformed JSON")
    assert rejects[1]["problems"] == ["basis: a sanction needs a legal basis (decision_no and issued_by)"]
    assert inbox.ready() == []  # nothing the inbox wrote is taken for a new file


async def test_a_file_dropped_twice_publishes_nothing_new(inbox: Inbox, ledger: Ledger) -> None:
    text = "".join(jsonl(records(4)))
    producer = FakeProducer()
    async with publisher(producer, ledger) as pub:
        run = runner(inbox, pub)
        drop(inbox, "export.jsonl", text)
        await run.process(inbox.root / "export.jsonl")
        drop(inbox, "export.jsonl", text)
        second = await run.process(inbox.root / "export.jsonl")
    assert (second.accepted, second.already_published, second.rejected) == (0, 4, 0)
    assert second.rejects_path is None
    assert len(producer.sent) == 4
    done = sorted(p.name for p in inbox.done.iterdir())
    assert len([n for n in done if n.endswith(".result.json")]) == 2  # the second copy got its own name
    assert "export.jsonl" in done


async def test_csv_is_read_through_the_mapping(inbox: Inbox, ledger: Ledger) -> None:
    drop(inbox, "court-export.csv", (EXAMPLES / "court-export.csv").read_text(encoding="utf-8"))
    async with publisher(FakeProducer(), ledger) as pub:
        res = await runner(inbox, pub).process(inbox.root / "court-export.csv")
    assert (res.status, res.accepted, res.rejected) == ("done", 4, 0)


async def test_unreadable_file_goes_to_failed_with_the_reason(inbox: Inbox, ledger: Ledger) -> None:
    drop(inbox, "export.csv", "a,b\n1,2\n")
    async with publisher(FakeProducer(), ledger) as pub:
        run = InboxRunner(inbox, publisher=pub, world=real_world(), mapping=None)
        res = await run.process(inbox.root / "export.csv")
    assert res.status == "failed"
    assert (inbox.failed / "export.csv").exists()
    result = json.loads((inbox.failed / "export.csv.result.json").read_text())
    assert "is a CSV file: pass --mapping" in result["error"]
    assert result["accepted"] == 0


async def test_runner_publishes_what_appears_until_stopped(inbox: Inbox, ledger: Ledger) -> None:
    producer = FakeProducer()
    stop = asyncio.Event()
    said: list[str] = []
    async with publisher(producer, ledger) as pub:
        task = asyncio.create_task(runner(inbox, pub, poll=0.02, say=said.append).run(stop))
        (inbox.root / "late.jsonl.part").write_text("".join(jsonl(records(2))))
        await asyncio.sleep(0.1)
        assert producer.sent == []  # still being written: not touched
        (inbox.root / "late.jsonl.part").rename(inbox.root / "late.jsonl")
        deadline = time.monotonic() + 5
        while not (inbox.done / "late.jsonl.result.json").exists():
            assert time.monotonic() < deadline, said
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert len(producer.sent) == 2
    assert said[-1] == "[court] inbox stopped"
