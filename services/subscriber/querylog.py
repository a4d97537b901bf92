"""The query log: who asked about whom, when, with which scope, and what they were told.

Every identifier a client asks about is written as one row: the time, the client's
name and scopes, the route, the scheme and measure asked, the answer
(``restricted``, ``clear``, ``unknown`` or ``invalid``) and the measures named in it,
and an HMAC-SHA256 of the normalised identifier under the agency's own key
(``query-log.key``, 32 random bytes, mode 0600).  The log never holds an identifier
in clear: ``concord subscriber queries --id ID`` normalises ID the way a check does,
computes the same HMAC with the same key and lists the rows that carry it.  Whoever
has the log but not the key can count queries, not tell whom they were about.  An
``/v1/entries`` lookup is logged the same way with the HMAC of the entry id.

It is append-only: SQLite triggers refuse every UPDATE, and every DELETE of a row
younger than the retention (``--query-log-retention``, kept in the log itself), which
the log purges once an hour and at start.

Writes are batched: a check appends a tuple to a queue (no I/O on the event loop);
a thread of the log's own writes what has queued every ``flush_every`` seconds in
one transaction.  A crash loses at most that last fraction of a second of queries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.core.errors import ConfigError
from services.files import create_private

__all__ = ["QueryLog", "QueryRow", "ensure_key"]

KEY_BYTES = 32
DEFAULT_RETENTION_S = 180 * 86400.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    at REAL NOT NULL, client TEXT NOT NULL, scope TEXT NOT NULL, route TEXT NOT NULL, subject BLOB NOT NULL,
    scheme TEXT, measure TEXT, answer TEXT NOT NULL, measures TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS queries_subject ON queries(subject, at);
CREATE INDEX IF NOT EXISTS queries_at ON queries(at);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS queries_no_update BEFORE UPDATE ON queries
BEGIN SELECT RAISE(ABORT, 'the query log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS queries_keep_retention BEFORE DELETE ON queries
WHEN old.at > unixepoch('now') - (SELECT CAST(v AS REAL) FROM meta WHERE k = 'retention_s')
BEGIN SELECT RAISE(ABORT, 'query log rows are kept for their retention'); END;
"""

_INSERT = "INSERT INTO queries VALUES (?,?,?,?,?,?,?,?,?)"


def ensure_key(path: Path) -> bytes:
    """The agency's query-log key, created (0600) if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path, secrets.token_bytes(KEY_BYTES))
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise ConfigError(f"the query-log key must hold at least {KEY_BYTES} bytes", file=path)
    return key


@dataclass(frozen=True)
class QueryRow:
    at: float
    client: str
    scope: str
    route: str
    scheme: str | None
    measure: str | None
    answer: str
    measures: tuple[str, ...]


class QueryLog:
    def __init__(self, path: Path, key: bytes, *, retention_s: float | None = None, flush_every: float = 0.25) -> None:
        """``retention_s`` sets the retention (kept in the log); None keeps the log's own."""
        self.path = path
        self._key = key
        self.flush_every = flush_every
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        if retention_s is not None:
            self._db.execute(
                "INSERT INTO meta VALUES ('retention_s', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                (str(float(retention_s)),),
            )
        else:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('retention_s', ?)", (str(DEFAULT_RETENTION_S),))
        row = self._db.execute("SELECT v FROM meta WHERE k = 'retention_s'").fetchone()
        self.retention_s = float(row[0]) if row else DEFAULT_RETENTION_S
        self._lock = threading.Lock()
        self._queue: deque[tuple[object, ...]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._purged_at = 0.0
        self.written = 0

    # --- writing ----------------------------------------------------------------

    def subject(self, normalised: str) -> bytes:
        """The keyed hash a normalised identifier (or entry id) is logged under."""
        return hmac.digest(self._key, normalised.encode("utf-8", "surrogatepass"), hashlib.sha256)

    def record(
        self,
        at: float,
        client: str,
        scope: str,
        route: str,
        subject: bytes,
        scheme: str | None,
        measure: str | None,
        answer: str,
        measures: str = "",
    ) -> None:
        """Queue one row (``measures``: the measure ids answered, comma-separated)."""
        self._queue.append((at, client, scope, route, subject, scheme, measure, answer, measures))

    def start(self) -> None:
        """Write from a thread of its own until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="concord-query-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every):
            self.flush()
            if time.time() - self._purged_at > 3600:
                self.purge()
        self.flush()

    def flush(self) -> int:
        """Write what has queued, in one transaction; return how many rows."""
        queue = self._queue
        rows = []
        while queue:
            rows.append(queue.popleft())
        if not rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self.written += len(rows)
        return len(rows)

    def purge(self, now: float | None = None) -> int:
        """Delete the rows older than the retention; return how many."""
        cutoff = (time.time() if now is None else now) - self.retention_s
        with self._lock:
            cur = self._db.execute("DELETE FROM queries WHERE at < ?", (cutoff,))
        self._purged_at = time.time()
        return cur.rowcount

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()
        self._db.close()

    # --- reading ----------------------------------------------------------------

    def about(self, normalised: Iterable[str]) -> list[QueryRow]:
        """Every logged query about any of these normalised values, oldest first."""
        subjects = [self.subject(v) for v in dict.fromkeys(normalised)]
        if not subjects:
            return []
        marks = ",".join("?" * len(subjects))
        with self._lock:
            rows = self._db.execute(
                f"SELECT at, client, scope, route, scheme, measure, answer, measures FROM queries "  # noqa: S608 - placeholders only
                f"WHERE subject IN ({marks}) ORDER BY at, rowid",
                subjects,
            ).fetchall()
        return [
            QueryRow(at, client, scope, route, scheme, measure, answer, tuple(m for m in measures.split(",") if m))
            for at, client, scope, route, scheme, measure, answer, measures in rows
        ]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM queries").fetchone()[0])
