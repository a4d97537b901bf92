"""The fan-out's state: one RocksDB per partition on local disk, backed by a changelog topic.

State partition ``p`` holds every entry whose list records arrive on partition ``p``
of the (co-partitioned) list topics.  Its keys:

    e/<origin>/<entry_id>                  the entry's :class:`~services.core.routing.EntryState` (JSON)
    d/<deadline ms, 8 bytes>/<entry key>   the expiry index: the earliest end of an APPLY the entry holds
    x/<purge ms, 8 bytes>/<entry key>      ended entries (nothing applied), by when their data must go
    o/<directive id>                       a directive still without a receipt -> its ``t/`` key
    t/<subscriber>\\0<mou>\\0<stage>\\0<issued ms, 8 bytes><directive id>
                                           the same, ordered by age within (subscriber, MOU, stage)
    m/<name>                               small partition facts: counters, the re-evaluation sweep

Writes go to an overlay while a Kafka transaction is open and reads see them.  The
engine produces every changed key to the partition's changelog inside that
transaction; once it commits, :meth:`PartitionStore.apply` writes the overlay to
RocksDB in one write batch, with the changelog offset reached.  A crash before that
leaves RocksDB behind its changelog, never ahead: :meth:`PartitionStore.restore`
replays the changelog from the offset RocksDB last recorded, so a store whose folder
was deleted is rebuilt whole, and one that was merely stopped catches up on the tail.

The changelog is compacted: it keeps the latest value of every key, which is all a
restore needs; a tombstone (``None``) deletes.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

log = logging.getLogger("concord.fanout.store")

ENTRY = b"e/"
DEADLINE = b"d/"
PURGE = b"x/"  # x/<purge ms, 8 bytes>/<entry key>: an ended entry, dropped then
BY_AGE = b"t/"
META = b"m/"
# Kept in RocksDB only, never in the changelog: how far into the changelog this copy is.
_LOCAL_OFFSET = b"\x00local/changelog-offset"
_SEP = b"\x00"

STAGE_RECEIPT = "receipt"  # a directive issued, its receipt not yet in
STAGE_TIME_LIFT = "time-lift"  # a LIFT for a period that ended, its receipt not yet in


def ms(value: float) -> bytes:
    """A time in milliseconds as 8 big-endian bytes, so that keys sort by time."""
    return struct.pack(">Q", max(0, int(value)))


def entry_key(table_key: str) -> bytes:
    return ENTRY + table_key.encode()


def deadline_key(deadline_ms: float, table_key: str) -> bytes:
    return DEADLINE + ms(deadline_ms) + b"/" + table_key.encode()


def purge_key(purge_ms: float, table_key: str) -> bytes:
    return PURGE + ms(purge_ms) + b"/" + table_key.encode()


OUTSTANDING = b"o/"


def split_deadline_key(key: bytes) -> tuple[int, str]:
    (when,) = struct.unpack(">Q", key[2:10])
    return when, key[11:].decode()


def age_key(subscriber: str, mou: str, stage: str, issued_ms: float, directive_id: str) -> bytes:
    parts = (subscriber.encode(), mou.encode(), stage.encode(), ms(issued_ms) + directive_id.encode())
    return BY_AGE + _SEP.join(parts)


def age_prefix(subscriber: str, mou: str, stage: str) -> bytes:
    return BY_AGE + _SEP.join((subscriber.encode(), mou.encode(), stage.encode())) + _SEP


def split_age_key(key: bytes) -> tuple[str, str, str, int, str]:
    subscriber, mou, stage, rest = key[len(BY_AGE) :].split(_SEP, 3)
    (issued,) = struct.unpack(">Q", rest[:8])
    return subscriber.decode(), mou.decode(), stage.decode(), issued, rest[8:].decode()


def _options(cache_mb: int) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    # Small memtables: the changelog, not the write-ahead log, is what a crash is recovered from,
    # and memory is what a million entries must not take.
    opts.set_write_buffer_size(8 * 1024 * 1024)
    opts.set_max_write_buffer_number(2)
    opts.set_max_open_files(256)
    if cache_mb:
        from rocksdict import BlockBasedOptions, Cache

        table = BlockBasedOptions()
        table.set_block_cache(Cache(cache_mb * 1024 * 1024))
        opts.set_block_based_table_factory(table)
    return opts


@dataclass
class Counters:
    """What the gauges of one partition show, kept as state so that nothing counts by walking it."""

    entries: int = 0
    deadlines: int = 0
    outstanding: dict[str, int] | None = None  # "subscriber\0mou\0stage" -> count

    def to_json(self) -> bytes:
        return json.dumps(
            {"entries": self.entries, "deadlines": self.deadlines, "outstanding": self.outstanding or {}},
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | None) -> Counters:
        if not raw:
            return cls(outstanding={})
        d = json.loads(raw)
        return cls(entries=int(d["entries"]), deadlines=int(d["deadlines"]), outstanding=dict(d["outstanding"]))


_COUNTERS = META + b"counters"


class PartitionStore:
    """One state partition: RocksDB under ``path`` plus the overlay of the open transaction."""

    def __init__(self, path: Path, partition: int, *, cache_mb: int = 16) -> None:
        self.path = path
        self.partition = partition
        path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path), _options(cache_mb))
        self._overlay: dict[bytes, bytes | None] = {}
        self.counters = Counters.from_json(self._db.get(_COUNTERS))
        self._counters_dirty = False

    # --- reads and writes ---------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        if key in self._overlay:
            return self._overlay[key]
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._overlay[key] = value

    def delete(self, key: bytes) -> None:
        self._overlay[key] = None

    def scan(
        self, prefix: bytes, *, start: bytes | None = None, stop: bytes | None = None, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Committed keys with ``prefix`` in order, from ``start`` (inclusive) to ``stop`` (exclusive),
        minus those the open transaction deleted or changed (they are seen again once it commits)."""
        n = 0
        for key, value in self._db.items(from_key=start or prefix):
            assert isinstance(key, bytes)  # noqa: S101 - the store is opened in raw mode: keys are bytes
            if not key.startswith(prefix) or (stop is not None and key >= stop):
                return
            if key in self._overlay:
                continue
            yield key, value
            n += 1
            if limit is not None and n >= limit:
                return

    def first(self, prefix: bytes) -> bytes | None:
        for key, _ in self.scan(prefix, limit=1):
            return key
        return None

    # --- counters -----------------------------------------------------------------

    def count(self, *, entries: int = 0, deadlines: int = 0, outstanding: str | None = None, by: int = 0) -> None:
        c = self.counters
        c.entries += entries
        c.deadlines += deadlines
        if outstanding is not None:
            out = c.outstanding if c.outstanding is not None else {}
            left = out.get(outstanding, 0) + by
            if left > 0:
                out[outstanding] = left
            else:
                out.pop(outstanding, None)
            c.outstanding = out
        self._counters_dirty = True

    # --- transactions ---------------------------------------------------------------

    def changes(self) -> dict[bytes, bytes | None]:
        """Every key the open transaction changed (``None``: deleted), counters included."""
        if self._counters_dirty:
            self._overlay[_COUNTERS] = self.counters.to_json()
            self._counters_dirty = False
        return self._overlay

    def apply(self, changelog_offset: int | None) -> None:
        """The transaction committed: make its changes durable here too."""
        changes = self.changes()
        if not changes and changelog_offset is None:
            return
        wb = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        if changelog_offset is not None:
            wb.put(_LOCAL_OFFSET, struct.pack(">q", changelog_offset))
        self._db.write(wb)
        self._overlay = {}

    def discard(self) -> None:
        """The transaction aborted: forget its changes, and the counters with them."""
        self._overlay = {}
        self.counters = Counters.from_json(self._db.get(_COUNTERS))
        self._counters_dirty = False

    # --- restore --------------------------------------------------------------------

    def changelog_offset(self) -> int:
        """The last changelog offset this copy holds (-1: none)."""
        raw = self._db.get(_LOCAL_OFFSET)
        return int(struct.unpack(">q", raw)[0]) if raw else -1

    def restore_batch(self, records: list[tuple[bytes, bytes | None, int]]) -> None:
        """Changelog records (key, value or tombstone, offset) read back, written as they were."""
        if not records:
            return
        wb = WriteBatch(raw_mode=True)
        for key, value, _ in records:
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        wb.put(_LOCAL_OFFSET, struct.pack(">q", records[-1][2]))
        self._db.write(wb)

    def reload_counters(self) -> None:
        self.counters = Counters.from_json(self._db.get(_COUNTERS))

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def close(self) -> None:
        self._db.close()

    @staticmethod
    def wipe(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
