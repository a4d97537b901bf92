"""A drop folder: files renamed into it are published, then moved aside with a result.

The contract with the agency's system is the usual one for drop folders: write the
file under a name the inbox ignores — starting with ``.`` or ending in ``.part`` or
``.tmp`` — and rename it into its final name when it is complete.  A rename within
one file system is atomic, so the inbox never sees half a file.

For each file, oldest first::

    DIR/export.jsonl              published through the ledger, then moved to
    DIR/done/export.jsonl         (a name already in done/ gets a timestamp)
    DIR/done/export.jsonl.rejects.jsonl     the refused rows, if any
    DIR/done/export.jsonl.result.json       written last: {accepted, rejected,
                                            already_published, rejects_path, published_at, ...}

``accepted`` counts records newly published by this file, ``already_published``
those the ledger already held (a file dropped twice publishes nothing new), and
``rejected`` the refused rows.  A file that cannot be read at all (a CSV without a
mapping, a header lacking mapped columns) goes to ``DIR/failed/`` with a result
whose ``error`` says why.  When Kafka cannot be reached the file stays where it is
and is tried again; the ledger makes the retry safe.

Which files are CSV is decided by name (``.csv``, read through ``--mapping``);
anything else is JSON Lines.  The folder is polled (every 0.5 s by default): no
inotify dependency, and it works on network file systems.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.adapter.csv_source import CsvMapping
from services.adapter.jobs import Source, open_rows, resolve_source
from services.adapter.publish import Publisher, Report, RowProblem, publish_rows, write_rejects
from services.adapter.sources import is_csv
from services.core.errors import BrokerUnavailable, ConfigError
from services.core.world import World

IGNORED_PREFIXES = (".",)
IGNORED_SUFFIXES = (".part", ".tmp")


@dataclass(frozen=True)
class FileResult:
    file: str
    status: str  # "done" or "failed"
    accepted: int
    rejected: int
    already_published: int
    rejects_path: str | None
    published_at: str
    agency: str
    topic: str
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


class Inbox:
    """The folder and its ``done/`` and ``failed/`` subfolders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done = root / "done"
        self.failed = root / "failed"

    def prepare(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"inbox {self.root} is not a folder")
        self.done.mkdir(exist_ok=True)
        self.failed.mkdir(exist_ok=True)

    @staticmethod
    def wanted(name: str) -> bool:
        return not name.startswith(IGNORED_PREFIXES) and not name.endswith(IGNORED_SUFFIXES)

    def ready(self) -> list[Path]:
        """Complete files waiting, oldest first."""
        found = []
        with os.scandir(self.root) as it:
            for e in it:
                if self.wanted(e.name) and e.is_file(follow_symlinks=False):
                    try:
                        found.append((e.stat().st_mtime, e.name, Path(e.path)))
                    except FileNotFoundError:
                        continue  # taken away between listing and stat
        return [p for _, _, p in sorted(found)]

    def destination(self, folder: Path, name: str) -> Path:
        target = folder / name
        if not target.exists() and not (folder / f"{name}.result.json").exists():
            return target
        stem, dot, ext = name.partition(".")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        n = 0
        while True:
            candidate = f"{stem}.{stamp}{f'-{n}' if n else ''}{dot}{ext}"
            if not (folder / candidate).exists() and not (folder / f"{candidate}.result.json").exists():
                return folder / candidate
            n += 1

    def finish(self, path: Path, *, failed: bool, result: Callable[[Path | None], FileResult],
               rejected: list[RowProblem]) -> tuple[Path, FileResult]:
        """Move ``path`` aside with its rejects and, last, its result file."""
        folder = self.failed if failed else self.done
        target = self.destination(folder, path.name)
        rejects = None
        if rejected:
            rejects = folder / f"{target.name}.rejects.jsonl"
            write_rejects(rejects, rejected)
        path.replace(target)
        res = result(rejects)
        out = folder / f"{target.name}.result.json"
        tmp = folder / f".{target.name}.result.json.tmp"
        tmp.write_text(res.to_json(), encoding="utf-8")
        tmp.replace(out)
        return out, res


class InboxRunner:
    """Publishes every file that appears in an inbox until ``stop`` is set."""

    def __init__(self, inbox: Inbox, *, publisher: Publisher, world: World, mapping: CsvMapping | None,
                 say: Callable[[str], None] = lambda _m: None, poll: float = 0.5, retry_after: float = 5.0) -> None:
        self.inbox = inbox
        self.publisher = publisher
        self.world = world
        self.mapping = mapping
        self.say = say
        self.poll = poll
        self.retry_after = retry_after
        self.results: list[FileResult] = []

    async def run(self, stop: asyncio.Event) -> None:
        self.inbox.prepare()
        agency = self.publisher.agency
        self.say(f"[{agency}] watching {self.inbox.root} (finished files in done/, unreadable ones in failed/)")
        while not stop.is_set():
            wait = self.poll
            for path in self.inbox.ready():
                if stop.is_set():
                    break
                if not path.exists():
                    continue  # taken away again before its turn
                try:
                    await self.process(path)
                except BrokerUnavailable as exc:
                    self.say(f"[{agency}] {path.name}: {exc}; trying again in {self.retry_after:.0f}s")
                    await self.publisher.settle()
                    wait = self.retry_after
                    break
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                pass
        self.say(f"[{agency}] inbox stopped")

    async def process(self, path: Path) -> FileResult:
        """Publish one file and move it aside; BrokerUnavailable leaves it in place."""
        pub = self.publisher
        name = path.name
        report = Report(file=name)
        error = None
        try:
            src: Source = resolve_source(str(path), self.mapping if is_csv(name) else None)
            with open_rows(src) as rows:
                await publish_rows(rows, publisher=pub, world=self.world, report=report, say=self.say)
        except (ConfigError, OSError, UnicodeError) as exc:
            await pub.flush()
            error = str(exc)

        def result(rejects: Path | None) -> FileResult:
            return FileResult(file=name, status="failed" if error else "done", accepted=report.published,
                              rejected=len(report.rejected), already_published=report.already_published,
                              rejects_path=str(rejects) if rejects else None,
                              published_at=datetime.now(UTC).isoformat(timespec="seconds"),
                              agency=pub.agency, topic=pub.topic, error=error)

        out, res = self.inbox.finish(path, failed=error is not None, result=result, rejected=report.rejected)
        self.results.append(res)
        if error:
            self.say(f"[{pub.agency}] {name}: could not be read: {error} -> {out}")
        else:
            self.say(f"[{pub.agency}] {name}: {res.accepted} published, {res.already_published} already published, "
                     f"{res.rejected} rejected -> {out}")
        return res
