"""The drop folder: a file counts only once it is renamed in, is published through
the ledger, and is moved aside with a result file saying what happened to it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TypedDict, Unpack

import pytest

from services.adapter.csv_mapping import load_mapping
from services.adapter.inbox import FileResult, Inbox, InboxRunner, open_dropped
from services.adapter.ledger import Ledger
from services.adapter.publish import Publisher
from services.adapter.sources import ReadLimits, read_jsonl
from services.core.codec import default_registry
from services.core.errors import ConfigError
from services.core.models import ListingCommitments, SealedListing
from tests.unit.adapter_fakes import TOPIC, FakeProducer, jsonl, publisher, records
from tests.unit.factories import REPO_ROOT, real_world

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


class RunnerOptions(TypedDict, total=False):
    poll: float
    say: Callable[[str], None]


def runner(box: Inbox, pub: Publisher, **kw: Unpack[RunnerOptions]) -> InboxRunner:
    return InboxRunner(
        box, publisher=pub, world=real_world(), mapping=load_mapping(EXAMPLES / "court-mapping.yaml"), **kw
    )


def _no_result(_dropped: Path | None) -> FileResult:
    raise AssertionError("a file replaced while it was read gets no result")


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
    rejects = [json.loads(x) for x in Path(result["rejects_path"]).read_text().splitlines()]  # noqa: ASYNC240 - a small file, after the run
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


# --------------------------------------------------------------------------- hostile drops


def failed_reason(box: Inbox, name: str) -> str:
    result = json.loads((box.failed / f"{name}.result.json").read_text())
    assert result["status"] == "failed"
    return str(result["error"])


async def test_links_fifos_and_oversized_files_go_to_failed_and_never_block_the_next(
    inbox: Inbox, ledger: Ledger, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text("".join(jsonl(records(1))))
    (inbox.root / "a-link.jsonl").symlink_to(secret)
    os.mkfifo(inbox.root / "b-fifo.jsonl")
    small = Inbox(inbox.root, ReadLimits(max_file_bytes=100))
    drop(small, "c-big.jsonl", "".join(jsonl(records(1))))
    drop(small, "d-good.jsonl", "")
    for i, name in enumerate(["a-link.jsonl", "b-fifo.jsonl", "c-big.jsonl", "d-good.jsonl"]):
        os.utime(inbox.root / name, (1_000_000 + i, 1_000_000 + i), follow_symlinks=False)
    producer = FakeProducer()
    stop = asyncio.Event()
    async with publisher(producer, ledger) as pub:
        task = asyncio.create_task(runner(small, pub, poll=0.02).run(stop))
        deadline = time.monotonic() + 5
        while not (small.done / "d-good.jsonl.result.json").exists():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert "is a symbolic link" in failed_reason(small, "a-link.jsonl")
    assert (small.failed / "a-link.jsonl").is_symlink()  # the link was moved, never followed
    assert "is a FIFO" in failed_reason(small, "b-fifo.jsonl")
    assert "more than the limit of 100 (--max-file-bytes)" in failed_reason(small, "c-big.jsonl")
    assert producer.sent == []  # nothing of the link's target, the FIFO or the big file was published
    assert set(os.listdir(small.root)) == {"done", "failed"}


async def test_a_file_is_read_from_the_descriptor_it_was_checked_on(inbox: Inbox, ledger: Ledger) -> None:
    path = drop(inbox, "export.jsonl", "".join(jsonl(records(2))))
    opened = open_dropped(path, inbox.limits)
    path.unlink()  # swapped for a link once it was checked: the open descriptor still reads the original
    path.symlink_to("/etc/passwd")
    with opened.file:
        rows = list(read_jsonl(opened.file))
    assert [r.raw["entry_id"] for r in rows if r.raw] == ["e-0", "e-1"]
    with pytest.raises(ConfigError, match="replaced while it was being read"):
        inbox.finish(path, failed=False, result=_no_result, rejected=[], identity=opened.identity)


async def test_a_file_growing_past_the_limit_while_read_fails_alone(inbox: Inbox, ledger: Ledger) -> None:
    text = "".join(jsonl(records(3)))
    box = Inbox(inbox.root, ReadLimits(max_file_bytes=len(text) + 10))
    path = drop(box, "export.jsonl", text)
    opened = open_dropped(path, box.limits)
    with path.open("a") as more:
        more.write("x" * 5000 + "\n")  # breaks the contract (rename when complete)
    with opened.file, pytest.raises(OSError, match="grew past the size limit"):
        list(read_jsonl(opened.file))


async def test_an_unexpected_failure_sends_the_file_to_failed(
    inbox: Inbox, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.adapter.inbox as inbox_module

    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError("reader fault")

    monkeypatch.setattr(inbox_module, "open_rows", broken)
    drop(inbox, "export.jsonl", "".join(jsonl(records(1))))
    async with publisher(FakeProducer(), ledger) as pub:
        res = await runner(inbox, pub).process(inbox.root / "export.jsonl")
    assert res.status == "failed"
    assert "unexpected error while reading it (RuntimeError: reader fault)" in failed_reason(inbox, "export.jsonl")


async def test_hostile_lines_in_a_dropped_file_are_refused_at_their_lines(inbox: Inbox, ledger: Ledger) -> None:
    good = "".join(jsonl(records(2)))
    (inbox.root / ".export.jsonl.part").write_bytes(
        b"[" * 100_000 + b"\n" + good.encode() + b'{"a": 1, "a": 2}\n\xff\xfe\n'
    )
    (inbox.root / ".export.jsonl.part").rename(inbox.root / "export.jsonl")
    producer = FakeProducer()
    async with publisher(producer, ledger) as pub:
        res = await runner(inbox, pub).process(inbox.root / "export.jsonl")
    assert (res.status, res.accepted, res.rejected) == ("done", 2, 3)
    rejects = [json.loads(line) for line in (inbox.done / "export.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [1, 4, 5]
    assert "nested deeper than 200 levels" in rejects[0]["problems"][0]
    assert "duplicate key" in rejects[1]["problems"][0]
    assert "not valid UTF-8" in rejects[2]["problems"][0]


async def test_list_records_are_keyed_by_their_entry_id(inbox: Inbox, ledger: Ledger) -> None:
    recs = records(5)
    drop(inbox, "export.jsonl", "".join(jsonl(recs)))
    producer = FakeProducer()
    async with publisher(producer, ledger) as pub:
        await runner(inbox, pub).process(inbox.root / "export.jsonl")
    reg = default_registry()
    sent = {
        reg.decode_model(reg.decode_model(m["value"], SealedListing).commitments, ListingCommitments).entry_id: m["key"]
        for m in producer.sent
    }
    assert sent == {r["entry_id"]: r["entry_id"].encode() for r in recs}
