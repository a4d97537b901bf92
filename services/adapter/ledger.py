"""What this adapter has already published: event id -> digest, per list topic.

Why a ledger, and not only Kafka's idempotent producer: the idempotent producer
removes the duplicates its own retries could cause, by producer id and sequence
number — within one producer session.  A file dropped into the inbox twice, a
publish run again after a crash, or yesterday's export re-sent with today's, comes
from a new session with a new producer id, and Kafka takes every record again.
Looking the event ids up on the topic instead would mean reading the whole
append-only evidential log on every publish, and publishers may not read it at all
(only the fan-out may: see ``services/core/access.py``).  So the adapter keeps its
own small record, local to the agency's side.

Rules, by ``event_id``:

* not in the ledger: publish it, and record it once the broker has acknowledged it
  (``acks=all``) — never before, so a record the broker never took is tried again;
* in the ledger with the same digest: skip it ("already published");
* in the ledger with another digest: refuse the row.  An event id names one
  statement of the publisher for ever; a change is a new version with a new id.

The digest is the SHA-256 of the canonical record bytes — the Avro single-object
encoding of the validated record, the bytes the signature covers (``concord-digest``
on the topic), so the ledger can be checked against the topic.  Formatting that
validation normalises away (key order, spaces around values) does not change it.

What is left: a crash between the broker's acknowledgement and the ledger's commit
publishes those few records again on the next run.  That is harmless downstream —
the fan-out applies by version and digest, so the same record twice is a no-op — and
it is the one direction in which an error is acceptable: records are never lost.
SQLite in WAL mode with ``synchronous=NORMAL`` survives a process crash; after a
power loss the last commits may be gone, with the same harmless consequence.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.home import Home

SCHEMA = """
CREATE TABLE IF NOT EXISTS published (
    topic        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    digest       BLOB NOT NULL,
    partition    INTEGER,
    offset       INTEGER,
    published_at TEXT NOT NULL,
    PRIMARY KEY (topic, event_id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Published:
    event_id: str
    digest: bytes
    partition: int | None
    offset: int | None
    published_at: str


@dataclass(frozen=True)
class Acked:
    """A record the broker acknowledged, ready to be recorded."""

    event_id: str
    digest: bytes
    partition: int | None
    offset: int | None


def default_ledger_path(home: Path, agency: str) -> Path:
    return Home(home).adapter_ledger(agency)


class Ledger:
    """One agency's ledger file; ``topic`` scopes it to the list topic being published to."""

    def __init__(self, path: Path, *, topic: str) -> None:
        self.path = path
        self.topic = topic
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, event_id: str) -> Published | None:
        row = self._db.execute(
            "SELECT event_id, digest, partition, offset, published_at FROM published WHERE topic = ? AND event_id = ?",
            (self.topic, event_id),
        ).fetchone()
        return Published(row[0], bytes(row[1]), row[2], row[3], row[4]) if row else None

    def record(self, acked: Iterable[Acked], at: datetime | None = None) -> int:
        """Record acknowledged records in one transaction; an id already there keeps its first entry."""
        when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
        rows = [(self.topic, a.event_id, a.digest, a.partition, a.offset, when) for a in acked]
        if not rows:
            return 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR IGNORE INTO published VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return len(rows)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM published WHERE topic = ?", (self.topic,)).fetchone()[0])
