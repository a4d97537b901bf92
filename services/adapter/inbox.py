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
``rejected`` the refused rows (each with its line and reason, as ``concord validate``
prints them).  A file that cannot be read at all goes to ``DIR/failed/`` with its
sidecar ``name.result.json`` whose ``error`` says why: a symbolic link, a FIFO or
anything else that is not a regular file, a file larger than ``max_file_bytes``
(:class:`~services.adapter.sources.ReadLimits`, 8 GiB by default), one the adapter
may not read, a CSV without a mapping, a header lacking mapped columns.  No file
holds back the files behind it: whatever goes wrong with one (short of Kafka being
unreachable) sends it to ``failed/``, and one that cannot even be moved there is
left alone and reported once.  When Kafka cannot be reached the file stays where it
is and is tried again; the ledger makes the retry safe.

Each file is opened once, without following symbolic links (``O_NOFOLLOW``, and
``O_NONBLOCK`` so that a FIFO cannot hang the open), and checked on the open
descriptor (``fstat``: a regular file, within the size limit); it is read from
that descriptor only, never opened again by name, and reading stops if it grows
past the limit meanwhile.  Lines are read in bounded pieces (see
:mod:`services.adapter.sources`), so no line, however long, is held in memory.

Which files are CSV is decided by name (``.csv``, read through ``--mapping``);
anything else is JSON Lines.  The folder is polled (every 0.5 s by default): no
inotify dependency, and it works on network file systems.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from services.adapter.csv_mapping import CsvMapping
from services.adapter.jobs import Source, open_rows, resolve_source
from services.adapter.publish import Publisher, Report, RowProblem, publish_rows, write_rejects
from services.adapter.sources import DEFAULT_LIMITS, ReadLimits, is_csv
from services.core.errors import BrokerUnavailable, ConfigError
from services.core.world import World

log = logging.getLogger(__name__)

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


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class _Capped(io.RawIOBase):
    """A descriptor read up to ``cap`` bytes: a file that grows past it while being read
    fails with EFBIG instead of being read on."""

    def __init__(self, fd: int, cap: int) -> None:
        self._fd = fd
        self._left = cap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # RawIOBase's buffer protocol
        data = os.read(self._fd, len(buffer))
        if len(data) > self._left:
            raise OSError(errno.EFBIG, "the file grew past the size limit while it was being read")
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


@dataclass(frozen=True)
class Opened:
    """A dropped file, opened and checked; ``identity`` is its (device, inode)."""

    file: IO[bytes]
    identity: tuple[int, int]


def _unfit(st: os.stat_result, limits: ReadLimits) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        return f"is {kind}: the inbox publishes only regular files"
    if st.st_size > limits.max_file_bytes:
        return (
            f"is {st.st_size:,} bytes, more than the limit of {limits.max_file_bytes:,} (--max-file-bytes): "
            "split the export"
        )
    return None


def open_dropped(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> Opened:
    """Open ``path`` once, without following a symbolic link, and check it on the descriptor:
    a regular file of at most ``limits.max_file_bytes``.  ConfigError says why not."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                "is a symbolic link: the inbox publishes only regular files renamed into it, "
                "never what a link points to"
            ) from None
        raise ConfigError(f"cannot be opened: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        problem = _unfit(st, limits)
        if problem is None:
            os.set_blocking(fd, True)
            handle = io.BufferedReader(_Capped(fd, limits.max_file_bytes), buffer_size=1 << 16)
    except BaseException:
        os.close(fd)
        raise
    if problem is not None:
        os.close(fd)
        raise ConfigError(problem)
    return Opened(handle, (st.st_dev, st.st_ino))


class Inbox:
    """The folder and its ``done/`` and ``failed/`` subfolders."""

    def __init__(self, root: Path, limits: ReadLimits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.limits = limits
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
        """Complete files waiting, oldest first: every entry but folders (a link, a FIFO
        and the like are listed, to be refused and moved to ``failed/``)."""
        found = []
        with os.scandir(self.root) as it:
            for e in it:
                if not self.wanted(e.name) or e.name in ("done", "failed"):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        continue
                    found.append((e.stat(follow_symlinks=False).st_mtime, e.name, Path(e.path)))
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

    def finish(
        self,
        path: Path,
        *,
        failed: bool,
        result: Callable[[Path | None], FileResult],
        rejected: list[RowProblem],
        identity: tuple[int, int] | None = None,
    ) -> tuple[Path, FileResult]:
        """Move ``path`` aside with its rejects and, last, its result file.  With ``identity``,
        only if the name still holds the file that was read (ConfigError otherwise)."""
        folder = self.failed if failed else self.done
        if identity is not None:
            st = path.lstat()
            if (st.st_dev, st.st_ino) != identity:
                raise ConfigError(
                    f"{path.name} was replaced while it was being read; the new file is left for its own turn"
                )
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

    def __init__(
        self,
        inbox: Inbox,
        *,
        publisher: Publisher,
        world: World,
        mapping: CsvMapping | None,
        say: Callable[[str], None] = lambda _m: None,
        poll: float = 0.5,
        retry_after: float = 5.0,
        gate: Callable[[], str | None] | None = None,
    ) -> None:
        self.inbox = inbox
        # Asked before each look at the folder: a reason not to publish now (a stale registry), or None.
        self.gate = gate
        self.holding: str | None = None
        self.publisher = publisher
        self.world = world
        self.mapping = mapping
        self.say = say
        self.poll = poll
        self.retry_after = retry_after
        self.results: list[FileResult] = []
        self._stuck: set[tuple[str, int, int]] = set()  # files that could not even be moved aside

    async def run(self, stop: asyncio.Event) -> None:
        self.inbox.prepare()
        agency = self.publisher.agency
        self.say(f"[{agency}] watching {self.inbox.root} (finished files in done/, unreadable ones in failed/)")
        while not stop.is_set():
            wait = self.poll
            holding = self.gate() if self.gate is not None else None
            if holding != self.holding:
                self.say(
                    f"[{agency}] not publishing (files wait in the inbox): {holding}"
                    if holding
                    else f"[{agency}] publishing again"
                )
                self.holding = holding
            for path in [] if holding else self.inbox.ready():
                if stop.is_set():
                    break
                mark = self._mark(path)
                if mark is None or mark in self._stuck:
                    continue  # taken away again before its turn, or known to be stuck
                try:
                    await self.process(path)
                except BrokerUnavailable as exc:
                    self.say(f"[{agency}] {path.name}: {exc}; trying again in {self.retry_after:.0f}s")
                    await self.publisher.settle()
                    wait = self.retry_after
                    break
                except Exception as exc:  # one file must never stop the files behind it
                    self._stuck.add(mark)
                    log.warning("inbox file %s could not be moved aside", path, exc_info=True)
                    self.say(
                        f"[{agency}] {path.name}: could not be moved aside ({exc}); left in place and "
                        "skipped until it changes"
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        self.say(f"[{agency}] inbox stopped")

    @staticmethod
    def _mark(path: Path) -> tuple[str, int, int] | None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        return path.name, st.st_ino, st.st_mtime_ns

    async def process(self, path: Path) -> FileResult:
        """Publish one file and move it aside; BrokerUnavailable leaves it in place.

        Anything else that goes wrong with the file sends it to ``failed/`` with the reason.
        """
        pub = self.publisher
        name = path.name
        report = Report(file=name)
        error = None
        identity = None
        try:
            opened = open_dropped(path, self.inbox.limits)
        except ConfigError as exc:
            error = f"{name} {exc}"
        else:
            identity = opened.identity
            with opened.file:
                error = await self._publish(opened.file, name, report)

        def result(rejects: Path | None) -> FileResult:
            return FileResult(
                file=name,
                status="failed" if error else "done",
                accepted=report.published,
                rejected=len(report.rejected),
                already_published=report.already_published,
                rejects_path=str(rejects) if rejects else None,
                published_at=datetime.now(UTC).isoformat(timespec="seconds"),
                agency=pub.agency,
                topic=pub.topic,
                error=error,
            )

        out, res = self.inbox.finish(
            path, failed=error is not None, result=result, rejected=report.rejected, identity=identity
        )
        self.results.append(res)
        if error:
            self.say(f"[{pub.agency}] {name}: could not be read: {error} -> {out}")
        else:
            self.say(
                f"[{pub.agency}] {name}: {res.accepted} published, {res.already_published} already published, "
                f"{res.rejected} rejected -> {out}"
            )
        return res

    async def _publish(self, handle: IO[bytes], name: str, report: Report) -> str | None:
        """Publish the rows of an opened file; the reason it could not be read, or None."""
        pub = self.publisher
        try:
            src: Source = resolve_source(name, self.mapping if is_csv(name) else None, self.inbox.limits, handle=handle)
            with open_rows(src) as rows:
                await publish_rows(rows, publisher=pub, world=self.world, report=report, say=self.say)
        except BrokerUnavailable:
            raise
        except (ConfigError, OSError, UnicodeError) as exc:
            await pub.flush()
            return str(exc)
        except Exception as exc:  # a file that breaks the reader fails alone
            log.exception("inbox file %s", name)
            await pub.flush()
            return f"unexpected error while reading it ({type(exc).__name__}: {exc})"
        return None
