"""A corpus of hostile files through `concord validate`, `concord publish` and the drop
folder (`concord adapter run`) on the real broker: every poison line is refused with its
line number and a reason, no command prints a traceback, and a good file dropped after
each poison file is published.

The 1 GB line is written to the test's temporary folder in 1 MiB pieces, never held in
memory, and the readers skip it the same way (the adapter's peak memory is checked).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from services.localstack import LocalStack
from tests.conftest import REPO_ROOT, KafkaCluster
from tests.integration.conftest import make_stack
from tests.integration.support import concord, event_ids, inbox_adapter, listings
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

GIB = 1 << 30


def _one_gb_line(path: Path) -> None:
    piece = b"x" * (1 << 20)
    with path.open("wb") as out:
        out.write(b'{"event_id": "')
        for _ in range(GIB // len(piece)):
            out.write(piece)
        out.write(b'"}\n')


def _text(lines: list[str]) -> bytes:
    return "".join(lines).encode()


# name -> (how to write it, the line refused, what its reason says)
POISON: dict[str, tuple[Callable[[Path], object], int, str]] = {
    "nested.jsonl": (lambda p: p.write_bytes(b"[" * 100_000 + b"\n"), 1, "nested deeper than 200 levels"),
    "huge-line.jsonl": (_one_gb_line, 1, f"line is {GIB + 16:,} bytes, longer than the limit of 262,144"),
    "garbage.jsonl": (
        lambda p: p.write_bytes(b"\x80" + random.Random(17).randbytes(1 << 16).replace(b"\n", b" ") + b"\n"),
        1,
        "<record>: NUL byte at column",
    ),
    "not-utf8.jsonl": (lambda p: p.write_bytes(b'{"event_id": "caf\xe9"}\n'), 1, "not valid UTF-8: byte 0xe9"),
    "nul.jsonl": (lambda p: p.write_bytes(b'{"event_id": "a\x00b"}\n'), 1, "NUL byte at column 16"),
    "utf16.jsonl": (lambda p: p.write_bytes(b"\xff\xfe" + '{"a": 1}\n'.encode("utf-16-le")), 1, "the file is UTF-16"),
    "late-bom.jsonl": (
        lambda p: p.write_bytes(_text(listings(1, "bom")) + b"\xef\xbb\xbf{}\n"),
        2,
        "a byte order mark (U+FEFF) starts this line",
    ),
    "duplicate-key.jsonl": (lambda p: p.write_bytes(b'{"version": 1, "version": 2}\r\n'), 1, 'duplicate key "version"'),
    "number-for-text.jsonl": (
        lambda p: p.write_bytes(json.dumps({**json.loads(listings(1, "num")[0]), "entry_id": 7}).encode() + b"\n"),
        1,
        "entry_id: Input should be a valid string",
    ),
}


def _refusals(output: str, path: Path) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"{path}:")]


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output, output[-3000:]


@pytest.fixture
def stack(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> LocalStack:
    return make_stack(kafka_cluster, tmp_path / "home", unique_ns)


def test_hostile_files_through_validate_and_publish(
    kafka_cluster: KafkaCluster, stack: LocalStack, tmp_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    for i, (name, (write, line, reason)) in enumerate(POISON.items()):
        path = tmp_path / name
        write(path)
        for command in ("validate", "publish"):
            out = concord(stack.home, command, "--agency", "court", str(path), timeout=180)
            _no_traceback(out.stderr + out.stdout)
            assert out.returncode == 1, (command, name, out.stderr[-2000:])
            refused = _refusals(out.stderr, path)
            assert any(r.startswith(f"{path}:{line}: ") and reason in r for r in refused), (command, name, refused)
        # the good file after each poison file is published
        good.write_bytes(_text(listings(1, f"after-{i}")))
        out = concord(stack.home, "publish", "--agency", "court", str(good))
        assert out.returncode == 0, out.stderr[-2000:]
        path.unlink()
    assert len(event_ids(kafka_cluster, stack)) == len(POISON) + 1  # the good files and late-bom's good line


def test_hostile_files_through_the_drop_folder(kafka_cluster: KafkaCluster, stack: LocalStack, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log = tmp_path / "adapter.log"
    with inbox_adapter(stack.home, "court", inbox, log) as proc:
        for i, (name, (write, line, reason)) in enumerate(POISON.items()):
            write(tmp_path / f".{name}")
            (tmp_path / f".{name}").rename(inbox / name)
            good = f"good-{i}.jsonl"
            (tmp_path / f".{good}").write_bytes(_text(listings(1, f"inbox-after-{i}")))
            (tmp_path / f".{good}").rename(inbox / good)
            wait_for(f"{good} after {name}", (inbox / "done" / f"{good}.result.json").exists, timeout=180)
            res = json.loads((inbox / "done" / f"{name}.result.json").read_text())
            assert res["status"] == "done" and res["rejected"] >= 1, (name, res)
            rejects = [json.loads(x) for x in Path(res["rejects_path"]).read_text().splitlines()]
            assert any(r["line"] == line and any(reason in p for p in r["problems"]) for r in rejects), (name, rejects)
            assert json.loads((inbox / "done" / f"{good}.result.json").read_text())["accepted"] == 1
            (inbox / "done" / name).unlink()  # the 1 GB file is not kept twice
        # a link, a FIFO: refused whole, and the good file behind them still goes out
        (inbox / "a-link.jsonl").symlink_to(REPO_ROOT / "README.md")
        os.mkfifo(inbox / "b-fifo.jsonl")
        (tmp_path / ".z-good.jsonl").write_bytes(_text(listings(1, "inbox-last")))
        (tmp_path / ".z-good.jsonl").rename(inbox / "z-good.jsonl")
        wait_for(
            "the good file after a link and a FIFO",
            (inbox / "done" / "z-good.jsonl.result.json").exists,
            timeout=60,
        )
        for name, why in (("a-link.jsonl", "is a symbolic link"), ("b-fifo.jsonl", "is a FIFO")):
            res = json.loads((inbox / "failed" / f"{name}.result.json").read_text())
            assert res["status"] == "failed" and why in res["error"]
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak_kb = int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
        assert peak_kb < 300 * 1024, f"the adapter peaked at {peak_kb // 1024} MB: a line was held in memory"
    output = log.read_text()
    _no_traceback(output)
    assert proc.returncode == 0, output[-3000:]
    assert len(event_ids(kafka_cluster, stack)) == len(POISON) + 2  # goods, late-bom's good line, z-good
