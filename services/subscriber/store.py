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

Checks are answered from :class:`~services.subscriber.index.CheckIndex`, rebuilt
from the ``directives`` table when the store opens (each row keeps its target's
normalised identifiers in ``idents`` so that no JSON is parsed to rebuild it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.core.identifiers import normalize_identifier
from services.core.models import Action, Directive, MeasureKind, Receipt, ReceiptStatus
from services.core.reasons import Reason
from services.subscriber.index import CheckIndex, Restriction, iso

__all__ = ["DirectiveStore", "Incoming", "Passed", "Rejected", "Restriction", "Tombstone", "punitive"]

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS directives (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL, directive_id TEXT NOT NULL, action TEXT NOT NULL,
    measure_id TEXT NOT NULL, measure_kind TEXT NOT NULL, mou_id TEXT NOT NULL, mou_version INTEGER NOT NULL,
    origin_agency TEXT NOT NULL, entry_id TEXT NOT NULL, entry_version INTEGER NOT NULL,
    valid_from REAL NOT NULL, valid_until REAL, target TEXT NOT NULL, idents TEXT NOT NULL DEFAULT '',
    topic_key TEXT, changed_at REAL
);
CREATE TABLE IF NOT EXISTS history (
    directive_id TEXT NOT NULL, key TEXT NOT NULL, origin_agency TEXT NOT NULL, entry_id TEXT NOT NULL,
    seq INTEGER NOT NULL, action TEXT NOT NULL, cause TEXT NOT NULL, measure_id TEXT NOT NULL,
    mou_id TEXT NOT NULL, mou_version INTEGER NOT NULL, entry_version INTEGER NOT NULL,
    issued_at REAL NOT NULL, applied_at REAL NOT NULL, status TEXT NOT NULL, reason TEXT,
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_entry ON history(entry_id);
CREATE INDEX IF NOT EXISTS history_key ON history(key);
CREATE TABLE IF NOT EXISTS offsets (topic TEXT, partition INTEGER, offset INTEGER, PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS outbox (
    n INTEGER PRIMARY KEY AUTOINCREMENT, receipt TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0, entry_id TEXT
);
CREATE TABLE IF NOT EXISTS rejected (
    directive_id TEXT PRIMARY KEY, reason TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, rejected_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""

_INSERT = (
    "INSERT INTO directives (rowid, key, seq, directive_id, action, measure_id, measure_kind, mou_id, "
    "mou_version, origin_agency, entry_id, entry_version, valid_from, valid_until, target, idents, topic_key, "
    "changed_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_UPDATE = (
    "UPDATE directives SET seq=?, directive_id=?, action=?, measure_kind=?, mou_id=?, mou_version=?, "
    "entry_version=?, valid_from=?, valid_until=?, target=?, idents=?, topic_key=?, changed_at=? WHERE rowid=?"
)
_HISTORY = "INSERT OR IGNORE INTO history VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


def encode_idents(identifiers: Iterable[tuple[str, str]]) -> str:
    """``scheme<TAB>normalised value`` per line: what the index is keyed by."""
    return "\n".join(f"{scheme}\t{normalize_identifier(scheme, value)}" for scheme, value in identifiers)


def decode_idents(text: str) -> list[tuple[str, str]]:
    if not text:
        return []
    return [(scheme, value) for scheme, _, value in (line.partition("\t") for line in text.split("\n"))]


@dataclass(frozen=True)
class Incoming:
    """A verified directive, where it was read, and its topic key (a pseudonym of its directive key,
    which names the subject: receipts are keyed by it)."""

    directive: Directive
    topic: str
    partition: int
    offset: int
    topic_key: str | None = None


@dataclass(frozen=True)
class Tombstone:
    """The fan-out's tombstone for a directive key whose entry ended long enough ago: the lifted
    directive and its history leave the store (an APPLY held under that key is never dropped)."""

    topic_key: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Rejected:
    """A directive refused on intake: only the refusal is recorded, and a REJECTED receipt sent.

    ``entry_id`` is the entry the refused directive names, when it can be read: its receipt goes
    to that entry's receipts partition."""

    directive_id: str
    reason: str
    topic: str
    partition: int
    offset: int
    entry_id: str | None = None


@dataclass(frozen=True)
class Passed:
    """A record that is no directive (a heartbeat): it only moves the stored position past it."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Pending:
    """A receipt waiting in the outbox, with the entry that chooses its receipts partition."""

    n: int
    receipt: Receipt
    entry_id: str | None


class DirectiveStore:
    def __init__(self, path: Path, agency: str) -> None:
        self.path = path
        self.agency = agency
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()
        self._next_rowid = int(self._db.execute("SELECT coalesce(max(rowid), 0) + 1 FROM directives").fetchone()[0])
        self._index = CheckIndex()
        self._load_index()
        self.regressions = 0  # directives refused for an older entry version than held
        self.purged = 0  # lifted directives dropped (retention, or the fan-out's tombstone)

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        self._db.executescript(SCHEMA)
        if version < SCHEMA_VERSION:
            cols = {row[1] for row in self._db.execute("PRAGMA table_info(directives)")}
            if "idents" not in cols:  # a store written before identifiers had their own column
                self._db.execute("ALTER TABLE directives ADD COLUMN idents TEXT NOT NULL DEFAULT ''")
            if "topic_key" not in cols:  # a store written before directive topics were keyed by pseudonyms
                self._db.execute("ALTER TABLE directives ADD COLUMN topic_key TEXT")
                self._db.execute("ALTER TABLE directives ADD COLUMN changed_at REAL")
            if "entry_id" not in {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}:
                self._db.execute("ALTER TABLE outbox ADD COLUMN entry_id TEXT")
            rows = self._db.execute("SELECT rowid, target FROM directives WHERE idents = ''").fetchall()
            self._db.execute("BEGIN IMMEDIATE")
            for rowid, target in rows:
                idents = encode_idents((i["scheme"], i["value"]) for i in json.loads(target)["identifiers"])
                self._db.execute("UPDATE directives SET idents = ? WHERE rowid = ?", (idents, rowid))
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")

    # --- the index --------------------------------------------------------------

    def _load_index(self) -> None:
        rows = self._db.execute(
            "SELECT rowid, measure_id, measure_kind, mou_id, entry_id, origin_agency, valid_from, valid_until, idents "
            "FROM directives WHERE action = 'APPLY'"
        )
        put = self._index.put
        for rowid, measure, kind, mou, entry, origin, vf, vu, idents in rows:
            put(
                rowid,
                measure_id=measure,
                kind=kind,
                mou_id=mou,
                origin_agency=origin,
                entry_id=entry,
                valid_from=vf,
                valid_until=vu,
                identifiers=decode_idents(idents),
            )

    def check(
        self, value: str, *, scheme: str | None = None, measure: str | None = None, at: float
    ) -> list[Restriction]:
        """Restrictions in force at ``at`` for one identifier value."""
        return self._index.check(value, scheme=scheme, measure=measure, at=at)

    @property
    def index(self) -> CheckIndex:
        return self._index

    def active_count(self) -> int:
        return self._index.directives

    # --- applying ---------------------------------------------------------------

    def positions(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return {(t, p): o for t, p, o in self._db.execute("SELECT topic, partition, offset FROM offsets")}

    def apply(self, batch: Iterable[Incoming | Rejected | Passed | Tombstone], now: datetime) -> list[Receipt]:
        """Apply a batch in one transaction; return the receipts it queued.

        The rows held for the batch's keys are read in one query and every write is one
        ``executemany`` per table (new rows get their row ids from the store, so that the
        index can be keyed by them without a round trip per row): a bootstrap writes a
        million directives, and per-row statements were a quarter of its time.
        """
        ts = now.timestamp()
        items = list(batch)
        receipts: list[Receipt] = []
        entries: list[str | None] = []
        ops: list[tuple[int, str | Directive, list[tuple[str, str]]]] = []
        positions: dict[tuple[str, int], int] = {}
        inserts: list[tuple[object, ...]] = []
        updates: list[tuple[object, ...]] = []
        history: list[tuple[object, ...]] = []
        tombstones: list[str] = []
        with self._lock:
            next_rowid = self._next_rowid
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                held = self._held(cur, [i.directive.key for i in items if isinstance(i, Incoming)])
                for item in items:
                    tp = (item.topic, item.partition)
                    if positions.get(tp, -1) < item.offset:
                        positions[tp] = item.offset
                    if isinstance(item, Passed):
                        continue
                    if isinstance(item, Tombstone):
                        tombstones.append(item.topic_key)  # after the batch's writes: a LIFT in it counts
                        continue
                    if isinstance(item, Rejected):
                        # Only the refusal is kept (never the directive): a redelivered one is refused once.
                        cur.execute(
                            "INSERT OR IGNORE INTO rejected VALUES (?,?,?,?,?,?)",
                            (item.directive_id, item.reason, item.topic, item.partition, item.offset, ts),
                        )
                        if cur.rowcount:
                            receipts.append(
                                Receipt(
                                    directive_id=item.directive_id,
                                    agency=self.agency,
                                    status=ReceiptStatus.REJECTED,
                                    reason=item.reason,
                                    recorded_at=now,
                                )
                            )
                            entries.append(item.entry_id)
                        continue
                    d = item.directive
                    key = d.key
                    row = held.get(key)
                    if row is not None and row[1] >= d.seq:
                        continue  # already hold this or something newer: nothing to do, nothing to report
                    if row is not None and row[4] > d.entry_version:
                        # Entry versions never go backwards for a key, whatever the sequence number says.
                        reason = (
                            f"{Reason.VERSION_REGRESSION}: {d.measure_id} on {d.entry_id} is held at "
                            f"version {row[4]}; this directive is for version {d.entry_version}"
                        )
                        cur.execute(
                            "INSERT OR IGNORE INTO rejected VALUES (?,?,?,?,?,?)",
                            (d.directive_id, reason, item.topic, item.partition, item.offset, ts),
                        )
                        if cur.rowcount:
                            receipts.append(
                                Receipt(
                                    directive_id=d.directive_id,
                                    agency=self.agency,
                                    status=ReceiptStatus.REJECTED,
                                    reason=reason,
                                    directive_key=item.topic_key,
                                    recorded_at=now,
                                )
                            )
                            entries.append(d.entry_id)
                        self.regressions += 1
                        continue
                    apply = d.action is Action.APPLY
                    identifiers = [(i.scheme, normalize_identifier(i.scheme, i.value)) for i in d.target.identifiers]
                    idents = "\n".join(f"{sc}\t{v}" for sc, v in identifiers)
                    vf = d.valid_from.timestamp()
                    vu = d.valid_until.timestamp() if d.valid_until else None
                    target = d.target.model_dump_json()
                    if row is None:
                        rowid = next_rowid
                        next_rowid += 1
                        inserts.append(
                            (
                                rowid,
                                key,
                                d.seq,
                                d.directive_id,
                                d.action.value,
                                d.measure_id,
                                d.measure_kind.value,
                                d.mou_id,
                                d.mou_version,
                                d.origin_agency,
                                d.entry_id,
                                d.entry_version,
                                vf,
                                vu,
                                target,
                                idents,
                                item.topic_key,
                                ts,
                            )
                        )
                        held[key] = [rowid, d.seq, d.action.value, idents, d.entry_version]
                    else:
                        rowid = row[0]
                        updates.append(
                            (
                                d.seq,
                                d.directive_id,
                                d.action.value,
                                d.measure_kind.value,
                                d.mou_id,
                                d.mou_version,
                                d.entry_version,
                                vf,
                                vu,
                                target,
                                idents,
                                item.topic_key,
                                ts,
                                rowid,
                            )
                        )
                        if row[2] == Action.APPLY.value:
                            ops.append((rowid, row[3], []))
                        row[1:] = [d.seq, d.action.value, idents, d.entry_version]
                    status = ReceiptStatus.APPLIED if apply else ReceiptStatus.LIFTED
                    history.append(
                        (
                            d.directive_id,
                            key,
                            d.origin_agency,
                            d.entry_id,
                            d.seq,
                            d.action.value,
                            d.cause.value,
                            d.measure_id,
                            d.mou_id,
                            d.mou_version,
                            d.entry_version,
                            d.issued_at.timestamp(),
                            ts,
                            status.value,
                            None,
                            item.topic,
                            item.partition,
                            item.offset,
                        )
                    )
                    if apply:
                        ops.append((rowid, d, identifiers))
                    # Built from a verified directive: every field is already of its type.
                    receipts.append(
                        Receipt.model_construct(
                            directive_id=d.directive_id,
                            agency=self.agency,
                            status=status,
                            reason=None,
                            directive_key=item.topic_key,
                            seq=d.seq,
                            recorded_at=now,
                        )
                    )
                    entries.append(d.entry_id)
                if inserts:
                    cur.executemany(_INSERT, inserts)
                if updates:
                    cur.executemany(_UPDATE, updates)
                if history:
                    cur.executemany(_HISTORY, history)
                for topic_key in tombstones:
                    self._forget(cur, "topic_key = ?", (topic_key,))
                if receipts:
                    cur.executemany(
                        "INSERT INTO outbox (receipt, entry_id) VALUES (?, ?)",
                        [(rc.model_dump_json(), e) for rc, e in zip(receipts, entries, strict=True)],
                    )
                cur.executemany(
                    "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT(topic, partition) DO UPDATE SET "
                    "offset = excluded.offset WHERE excluded.offset > offsets.offset",
                    [(t, p, o) for (t, p), o in positions.items()],
                )
                cur.execute(
                    "INSERT INTO meta VALUES ('last_applied_at', ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                    (now.isoformat(),),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self._next_rowid = next_rowid
            # The index follows only what was committed, in the order it was applied.
            for rowid, what, identifiers in ops:
                if not isinstance(what, Directive):
                    self._index.drop(rowid, (v for _, v in decode_idents(what)))
                    continue
                d = what
                self._index.put(
                    rowid,
                    measure_id=d.measure_id,
                    kind=d.measure_kind.value,
                    mou_id=d.mou_id,
                    origin_agency=d.origin_agency,
                    entry_id=d.entry_id,
                    valid_from=d.valid_from.timestamp(),
                    valid_until=d.valid_until.timestamp() if d.valid_until else None,
                    identifiers=identifiers,
                )
        return receipts

    def _forget(self, cur: sqlite3.Cursor, where: str, args: tuple[Any, ...]) -> int:
        """Delete the lifted directives matching ``where`` and their history (never an APPLY)."""
        rows = cur.execute(f"SELECT key FROM directives WHERE action = 'LIFT' AND {where}", args).fetchall()  # noqa: S608 - fixed clauses; values bound
        for (key,) in rows:
            cur.execute("DELETE FROM history WHERE key = ?", (key,))
            cur.execute("DELETE FROM directives WHERE key = ? AND action = 'LIFT'", (key,))
        self.purged += len(rows)
        return len(rows)

    def purge(self, now: datetime, lifted_days: float) -> int:
        """Drop lifted directives, and their history, lifted longer than ``lifted_days`` ago."""
        cutoff = now.timestamp() - lifted_days * 86_400
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                n = self._forget(cur, "coalesce(changed_at, 0) <= ?", (cutoff,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return n

    @staticmethod
    def _held(cur: sqlite3.Cursor, keys: list[str]) -> dict[str, list[Any]]:
        """``key -> [rowid, seq, action, idents, entry_version]`` of the rows held for these keys."""
        held: dict[str, list[Any]] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 900):
            chunk = unique[i : i + 900]
            marks = ",".join("?" * len(chunk))
            for key, rowid, seq, action, idents, version in cur.execute(
                f"SELECT key, rowid, seq, action, idents, entry_version FROM directives WHERE key IN ({marks})",  # noqa: S608 - placeholders only
                chunk,
            ):
                held[key] = [rowid, seq, action, idents, version]
        return held

    # --- receipts outbox --------------------------------------------------------

    def pending_receipts(self, limit: int = 500) -> list[Pending]:
        with self._lock:
            rows = self._db.execute(
                "SELECT n, receipt, entry_id FROM outbox WHERE sent = 0 ORDER BY n LIMIT ?", (limit,)
            )
            return [Pending(n, Receipt.model_validate_json(r), e) for n, r, e in rows.fetchall()]

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def mark_sent(self, ns: Sequence[int]) -> None:
        if not ns:
            return
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE n = ?", [(n,) for n in ns])

    # --- reading ----------------------------------------------------------------

    def history(self, entry_id: str) -> list[dict[str, object]]:
        """The directives applied for an entry, oldest first; ``origin/entry`` narrows to one origin."""
        origin, _, bare = entry_id.rpartition("/")
        q = (
            "SELECT directive_id, key, origin_agency, entry_id, seq, action, cause, measure_id, mou_id, "  # noqa: S608 - a fixed clause; values bound
            "mou_version, entry_version, issued_at, applied_at, status, topic, partition, offset FROM history "
            "WHERE entry_id = ?" + (" AND origin_agency = ?" if origin else "") + " ORDER BY applied_at, seq"
        )
        args = (bare, origin) if origin else (bare,)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        cols = (
            "directive_id",
            "key",
            "origin_agency",
            "entry_id",
            "seq",
            "action",
            "cause",
            "measure_id",
            "mou_id",
            "mou_version",
            "entry_version",
            "issued_at",
            "applied_at",
            "status",
            "topic",
            "partition",
            "offset",
        )
        out = []
        for row in rows:
            rec = dict(zip(cols, row, strict=True))
            rec["issued_at"] = iso(float(rec["issued_at"]))
            rec["applied_at"] = iso(float(rec["applied_at"]))
            out.append(rec)
        return out

    def last_applied_at(self) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k = 'last_applied_at'").fetchone()
        return row[0] if row else None


def punitive(restrictions: Iterable[Restriction]) -> bool:
    return any(r.kind == MeasureKind.PUNISH.value for r in restrictions)
