"""The implementing agency's directive store.

SQLite (WAL) is the durable truth; an in-memory index answers checks.  One SQLite
transaction per applied batch holds three things together:

* the latest directive per key (applied only when its ``seq`` is newer — replays,
  duplicates and reordering are harmless),
* the Kafka offset it came from (the store, not the consumer group, remembers
  where to resume, so a crash between "applied" and "committed" cannot apply a
  measure twice), and
* the receipt to send (a transactional outbox: a receipt is sent at least once,
  even if the process dies right after applying).

Validity windows are enforced when a check is answered, never by the arrival of
a LIFT: an expired restriction stops answering "restricted" on its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.core.identifiers import normalize_identifier
from services.core.models import Action, Directive, MeasureKind, Receipt, ReceiptStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS directives (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL, directive_id TEXT NOT NULL, action TEXT NOT NULL,
    measure_id TEXT NOT NULL, measure_kind TEXT NOT NULL, mou_id TEXT NOT NULL, mou_version INTEGER NOT NULL,
    origin_agency TEXT NOT NULL, entry_id TEXT NOT NULL, entry_version INTEGER NOT NULL,
    valid_from REAL NOT NULL, valid_until REAL, target TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    directive_id TEXT PRIMARY KEY, key TEXT NOT NULL, origin_agency TEXT NOT NULL, entry_id TEXT NOT NULL,
    seq INTEGER NOT NULL, action TEXT NOT NULL, cause TEXT NOT NULL, measure_id TEXT NOT NULL,
    mou_id TEXT NOT NULL, mou_version INTEGER NOT NULL, entry_version INTEGER NOT NULL,
    issued_at REAL NOT NULL, applied_at REAL NOT NULL, status TEXT NOT NULL, reason TEXT,
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_entry ON history(entry_id);
CREATE TABLE IF NOT EXISTS offsets (topic TEXT, partition INTEGER, offset INTEGER, PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS outbox (
    n INTEGER PRIMARY KEY AUTOINCREMENT, receipt TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejected (
    directive_id TEXT PRIMARY KEY, reason TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Restriction:
    """One APPLY in force for some identifier, as the check answers it."""

    key: str
    scheme: str
    measure_id: str
    kind: str
    mou_id: str
    entry_id: str
    origin_agency: str
    valid_from: float
    valid_until: float | None

    def in_force(self, at: float) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)

    def as_json(self) -> dict[str, object]:
        return {
            "measure_id": self.measure_id,
            "kind": self.kind,
            "mou_id": self.mou_id,
            "entry_id": self.entry_id,
            "origin_agency": self.origin_agency,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until) if self.valid_until is not None else None,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Incoming:
    """A verified directive and where it was read."""

    directive: Directive
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Rejected:
    """A directive refused on intake: only the refusal is recorded, and a REJECTED receipt sent."""

    directive_id: str
    reason: str
    topic: str
    partition: int
    offset: int


class DirectiveStore:
    def __init__(self, path: Path, agency: str) -> None:
        self.path = path
        self.agency = agency
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._index: dict[str, list[Restriction]] = {}
        self._by_key: dict[str, list[str]] = {}
        self._load_index()

    def close(self) -> None:
        self._db.close()

    # --- the index --------------------------------------------------------------

    def _load_index(self) -> None:
        self._index.clear()
        self._by_key.clear()
        rows = self._db.execute(
            "SELECT key, measure_id, measure_kind, mou_id, entry_id, origin_agency, valid_from, valid_until, target "
            "FROM directives WHERE action = 'APPLY'"
        )
        for key, measure, kind, mou, entry, origin, vf, vu, target in rows:
            self._index_put(key, measure, kind, mou, entry, origin, vf, vu, json.loads(target)["identifiers"])

    def _index_put(self, key: str, measure: str, kind: str, mou: str, entry: str, origin: str,
                   vf: float, vu: float | None, identifiers: Sequence[dict[str, str]]) -> None:
        self._index_drop(key)
        ids = []
        for ident in identifiers:
            value = normalize_identifier(ident["scheme"], ident["value"])
            r = Restriction(key, ident["scheme"], measure, kind, mou, entry, origin, vf, vu)
            self._index.setdefault(value, []).append(r)
            ids.append(value)
        self._by_key[key] = ids

    def _index_drop(self, key: str) -> None:
        for value in self._by_key.pop(key, ()):
            rows = [r for r in self._index.get(value, ()) if r.key != key]
            if rows:
                self._index[value] = rows
            else:
                self._index.pop(value, None)

    def check(self, value: str, *, scheme: str | None = None, measure: str | None = None,
              at: float) -> list[Restriction]:
        """Restrictions in force at ``at`` for one identifier value."""
        norm = normalize_identifier(scheme or "", value) if scheme else value.strip().upper()
        found = self._index.get(norm)
        if not found and not scheme:
            found = self._index.get(value.strip())
        if not found:
            return []
        return [
            r for r in found
            if r.in_force(at) and (scheme is None or r.scheme == scheme) and (measure is None or r.measure_id == measure)
        ]

    def active_count(self) -> int:
        return len(self._by_key)

    # --- applying ---------------------------------------------------------------

    def positions(self) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self._db.execute("SELECT topic, partition, offset FROM offsets")}

    def apply(self, batch: Iterable[Incoming | Rejected], now: datetime) -> list[Receipt]:
        """Apply a batch in one transaction; return the receipts it queued."""
        receipts: list[Receipt] = []
        index_ops: list[tuple[str, Directive | None]] = []
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for item in batch:
                    rc = self._apply_one(cur, item, now, index_ops)
                    if rc is not None:
                        receipts.append(rc)
                        cur.execute("INSERT INTO outbox (receipt) VALUES (?)", (rc.model_dump_json(),))
                    cur.execute(
                        "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT(topic, partition) DO UPDATE SET "
                        "offset = excluded.offset WHERE excluded.offset > offsets.offset",
                        (item.topic, item.partition, item.offset),
                    )
                cur.execute("INSERT INTO meta VALUES ('last_applied_at', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                            (now.isoformat(),))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            for key, d in index_ops:
                if d is None:
                    self._index_drop(key)
                else:
                    self._index_put(key, d.measure_id, d.measure_kind.value, d.mou_id, d.entry_id,
                                    d.origin_agency, d.valid_from.timestamp(),
                                    d.valid_until.timestamp() if d.valid_until else None,
                                    [i.model_dump() for i in d.target.identifiers])
        return receipts

    def _apply_one(self, cur: sqlite3.Cursor, item: Incoming | Rejected, now: datetime,
                   index_ops: list[tuple[str, Directive | None]]) -> Receipt | None:
        ts = now.timestamp()
        if isinstance(item, Rejected):
            # Only the refusal is kept (never the directive): a redelivered one is refused once.
            cur.execute("INSERT OR IGNORE INTO rejected VALUES (?,?,?,?,?,?)",
                        (item.directive_id, item.reason, item.topic, item.partition, item.offset, ts))
            if cur.rowcount == 0:
                return None
            return Receipt(directive_id=item.directive_id, agency=self.agency, status=ReceiptStatus.REJECTED,
                           reason=item.reason, recorded_at=now)
        d = item.directive
        key = d.key
        held = cur.execute("SELECT seq FROM directives WHERE key = ?", (key,)).fetchone()
        if held is not None and held[0] >= d.seq:
            return None  # already hold this or something newer: nothing to do, nothing to report
        status = ReceiptStatus.APPLIED if d.action is Action.APPLY else ReceiptStatus.LIFTED
        cur.execute(
            "INSERT INTO directives VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
            "seq=excluded.seq, directive_id=excluded.directive_id, action=excluded.action, "
            "measure_kind=excluded.measure_kind, mou_id=excluded.mou_id, mou_version=excluded.mou_version, "
            "entry_version=excluded.entry_version, valid_from=excluded.valid_from, "
            "valid_until=excluded.valid_until, target=excluded.target",
            (key, d.seq, d.directive_id, d.action.value, d.measure_id, d.measure_kind.value, d.mou_id,
             d.mou_version, d.origin_agency, d.entry_id, d.entry_version, d.valid_from.timestamp(),
             d.valid_until.timestamp() if d.valid_until else None, d.target.model_dump_json()),
        )
        cur.execute(
            "INSERT OR IGNORE INTO history VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (d.directive_id, key, d.origin_agency, d.entry_id, d.seq, d.action.value, d.cause.value, d.measure_id,
             d.mou_id, d.mou_version, d.entry_version, d.issued_at.timestamp(), ts, status.value, None,
             item.topic, item.partition, item.offset),
        )
        index_ops.append((key, d if d.action is Action.APPLY else None))
        return Receipt(directive_id=d.directive_id, agency=self.agency, status=status, directive_key=key,
                       seq=d.seq, recorded_at=now)

    # --- receipts outbox --------------------------------------------------------

    def pending_receipts(self, limit: int = 500) -> list[tuple[int, Receipt]]:
        with self._lock:
            rows = self._db.execute("SELECT n, receipt FROM outbox WHERE sent = 0 ORDER BY n LIMIT ?", (limit,))
            return [(n, Receipt.model_validate_json(r)) for n, r in rows.fetchall()]

    def mark_sent(self, ns: Sequence[int]) -> None:
        if not ns:
            return
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE n = ?", [(n,) for n in ns])

    # --- reading ----------------------------------------------------------------

    def history(self, entry_id: str) -> list[dict[str, object]]:
        origin, _, bare = entry_id.rpartition("/")
        q = ("SELECT directive_id, key, origin_agency, entry_id, seq, action, cause, measure_id, mou_id, "
             "mou_version, entry_version, issued_at, applied_at, status, topic, partition, offset FROM history "
             "WHERE entry_id = ?" + (" AND origin_agency = ?" if origin else "") + " ORDER BY applied_at, seq")
        args = (bare, origin) if origin else (bare,)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        cols = ("directive_id", "key", "origin_agency", "entry_id", "seq", "action", "cause", "measure_id",
                "mou_id", "mou_version", "entry_version", "issued_at", "applied_at", "status", "topic",
                "partition", "offset")
        out = []
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            rec["issued_at"] = _iso(float(rec["issued_at"]))  # type: ignore[arg-type]
            rec["applied_at"] = _iso(float(rec["applied_at"]))  # type: ignore[arg-type]
            out.append(rec)
        return out

    def last_applied_at(self) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k = 'last_applied_at'").fetchone()
        return row[0] if row else None


def punitive(restrictions: Iterable[Restriction]) -> bool:
    return any(r.kind == MeasureKind.PUNISH.value for r in restrictions)
