"""What the fault tests share: load, proof that nothing was lost or applied twice, and stall figures.

Every fault test ends the same way: the audit (:func:`services.ops.audit.run_audit`)
is CLEAN against every agency's own store, the list topics hold each published
record exactly once, and no agency's receipts say it applied a directive twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from services.core.codec import default_registry
from services.core.disclosure import reveal, unwrap
from services.core.models import ListingCommitments, Receipt
from services.core.principals import ADMIN
from services.keystore import load_keyring
from services.localstack import LocalStack
from services.ops.audit import AuditReport, run_audit
from services.topic_metadata import read_to_end
from tests.integration.support import publish
from tests.unit.factories import (
    MARKET_PROGRAM,
    delisting,
    entry_dict,
    legal_rep,
    make_ric,
    make_uscc,
    organization,
    person,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def burst(n: int) -> list[dict[str, Any]]:
    """n listings (organisations with a legal representative, and persons), then
    amendments of every fifth and delistings of every third — in one entry order."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        subject = (
            organization(make_uscc(10_000 + i), reps=[legal_rep(make_ric(i % 1000))])
            if i % 2
            else person(make_ric(i % 1000, area="110101"))
        )
        out.append(entry_dict(entry_id=f"b-{i}", subject=subject))
    for i in range(0, n, 5):
        prev = out[i]
        out.append(
            entry_dict(
                entry_id=f"b-{i}", version=2, event_type="AMENDED", subject=prev["subject"], reason="Amended reason"
            )
        )
    for i in range(0, n, 3):
        version = 3 if i % 5 == 0 else 2
        out.append(
            entry_dict(
                entry_id=f"b-{i}",
                version=version,
                event_type="DELISTED",
                subject=out[i]["subject"],
                delisting=delisting(),
            )
        )
    return out


def publish_in_background(stack: LocalStack, records: list[dict[str, Any]], chunks: int = 6) -> threading.Thread:
    size = max(1, len(records) // chunks)

    def run() -> None:
        for i in range(0, len(records), size):
            publish(stack, "court", records[i : i + size])
            time.sleep(0.4)

    t = threading.Thread(target=run, name="burst", daemon=True)
    t.start()
    return t


def audit_stores(stack: LocalStack) -> AuditReport:
    stores = {a.agency_id: stack.home / "data" / f"{a.agency_id}.sqlite" for a in stack.world.implementers()}
    return asyncio.run(
        run_audit(
            access=stack.access(ADMIN),
            world=stack.world,
            namespace=stack.namespace,
            keyring=load_keyring(stack.home / "keys"),
            schemas=default_registry(),
            stores=stores,
        )
    )


def wait_clean(stack: LocalStack, expect_events: int, timeout: float = 180.0) -> AuditReport:
    """The audit of the topics and every store, once it is CLEAN over ``expect_events`` list records."""
    deadline = time.monotonic() + timeout
    while True:
        report = audit_stores(stack)
        if report.clean and report.events == expect_events:
            return report
        if time.monotonic() > deadline:
            raise AssertionError("\n".join(report.lines()[:60]))
        time.sleep(2)


def applied_twice(stack: LocalStack) -> dict[str, int]:
    """Directive ids some agency reported APPLIED (or LIFTED) more than once."""
    counts: Counter[str] = Counter()
    for r in receipts(stack):
        if r.status.value in ("APPLIED", "LIFTED"):
            counts[f"{r.agency}:{r.directive_id}"] += 1
    return {k: n for k, n in counts.items() if n > 1}


def receipts(stack: LocalStack) -> list[Receipt]:
    topics = [s.name for s in stack.world.topic_specs(stack.namespace) if s.kind == "receipts"]
    return [
        default_registry().decode_model(rec.value, Receipt)
        for _, rec in asyncio.run(read_to_end(stack.access(ADMIN), topics))
    ]


def list_records(stack: LocalStack) -> Counter[str]:
    """How many times each event id stands in the list topics (an idempotent producer writes each once)."""
    topics = [s.name for s in stack.world.topic_specs(stack.namespace) if s.kind == "lists"]
    counts: Counter[str] = Counter()
    for _, rec in asyncio.run(read_to_end(stack.access(ADMIN), topics)):
        counts[_event_id(rec.value)] += 1
    return counts


def _event_id(value: bytes) -> str:
    """The event id of a sealed list record (its commitments opened with every disclosure)."""
    schemas = default_registry()
    sealed = unwrap(value, schemas)
    commitments = schemas.decode_model(sealed.commitments, ListingCommitments)
    return reveal(commitments, sealed.disclosures).full_event().event_id


# --------------------------------------------------------------------------- load


def steady_records(agency: str, run: str, n: int) -> list[dict[str, Any]]:
    """``n`` records of ``agency``'s program: listings of organisations with a legal representative,
    and every fifth record the delisting of a listing made a little earlier (so LIFTs flow too)."""
    out: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    extra = {"program": MARKET_PROGRAM} if agency == "market" else {}
    for i in range(n):
        if i % 5 == 4 and len(listed) > 3:
            prev = listed.pop(0)
            rec = {
                **prev,
                "version": 2,
                "event_type": "DELISTED",
                "delisting": delisting(),
                "event_id": f"{agency}:{prev['entry_id']}:2",
            }
        else:
            subject = organization(make_uscc(20_000 + i), reps=[legal_rep(make_ric(i % 997, area="110102"))])
            entry_id = f"{run}-{agency}-{i}"
            rec = entry_dict(entry_id=entry_id, subject=subject, event_id=f"{agency}:{entry_id}:1", **extra)
            listed.append(rec)
        out.append(rec)
    return out


@dataclass
class StreamingPublisher:
    """``concord publish --agency A -``, the adapter fed a JSON line at a steady rate (records per second).

    The adapter is the real publisher: acks=all, idempotent, retrying a batch for up to two
    minutes while the cluster fails over; :meth:`finish` closes its input and waits for it.
    """

    stack: LocalStack
    agency: str
    records: list[dict[str, Any]]
    rate: float
    sent_at: dict[str, float] = field(default_factory=dict)  # entry id of a listing -> when it was handed over
    fed: int = 0  # records handed to the adapter so far
    proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StreamingPublisher:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
        env |= {"CONCORD_HOME": str(self.stack.home), "PYTHONUNBUFFERED": "1"}
        log = (self.stack.home / "logs" / f"publish-{self.agency}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "publish", "--agency", self.agency, "-"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            text=True,
            cwd=REPO_ROOT,
        )
        log.close()
        self._thread = threading.Thread(target=self._feed, name=f"publish-{self.agency}", daemon=True)
        self._thread.start()
        return self

    def _feed(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        stdin: IO[str] = self.proc.stdin
        start = time.monotonic()
        try:
            for i, rec in enumerate(self.records):
                if self._stop.is_set():
                    break
                time.sleep(max(0.0, start + i / self.rate - time.monotonic()))
                stdin.write(json.dumps(rec) + "\n")
                stdin.flush()
                self.fed += 1
                if rec["event_type"] == "LISTED":
                    self.sent_at[rec["entry_id"]] = time.time()
        except BrokenPipeError:
            pass  # the adapter has exited: finish() reports its status
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def finish(self, timeout: float = 150.0) -> int:
        """Stop feeding, wait until what was fed is published; return the adapter's exit status."""
        assert self._thread is not None and self.proc is not None
        self._stop.set()
        self._thread.join(timeout)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._thread is not None:
            self._thread.join(10)


def stored_twice(stack: LocalStack) -> dict[str, int]:
    """Directive ids some agency's own store recorded applying more than once (its history)."""
    out: dict[str, int] = {}
    for agency in stack.world.implementers():
        db = stack.home / "data" / f"{agency.agency_id}.sqlite"
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT directive_id, count(*) FROM history GROUP BY directive_id HAVING count(*) > 1"
            ).fetchall()
        finally:
            con.close()
        out |= {f"{agency.agency_id}:{d}": int(n) for d, n in rows}
    return out


# --------------------------------------------------------------------------- stall figures


def applications(stack: LocalStack) -> list[tuple[float, str, str]]:
    """``(applied_at, agency, entry_id)`` of every APPLY any subscriber stored, oldest first."""
    out: list[tuple[float, str, str]] = []
    for agency in stack.world.implementers():
        db = stack.home / "data" / f"{agency.agency_id}.sqlite"
        if not db.exists():
            continue
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT applied_at, entry_id FROM history WHERE action = 'APPLY'").fetchall()
        finally:
            con.close()
        out += [(float(at), agency.agency_id, str(entry)) for at, entry in rows]
    return sorted(out)


@dataclass(frozen=True)
class Stall:
    """How end-to-end traffic fared around a fault (times in seconds, wall clock)."""

    longest_gap_s: float  # longest time without any directive applied anywhere, while records kept coming
    gap_from: float
    max_latency_s: float  # slowest listing: handed to the publisher -> its first directive applied
    p50_latency_s: float

    def to_json(self) -> dict[str, float]:
        return {
            "longest_gap_s": round(self.longest_gap_s, 3),
            "max_latency_s": round(self.max_latency_s, 3),
            "p50_latency_s": round(self.p50_latency_s, 3),
            "gap_from_epoch_s": round(self.gap_from, 3),
        }


def stall_around(stack: LocalStack, publishers: list[StreamingPublisher], fault_at: float, load_until: float) -> Stall:
    """The longest stall of end-to-end traffic from just before ``fault_at`` to the end of the load."""
    applied = applications(stack)
    times = [t for t, _, _ in applied if fault_at - 1.0 <= t <= load_until]
    edges = [fault_at - 1.0, *times]
    gaps = [(b - a, a) for a, b in itertools.pairwise(edges)]
    if times and load_until > times[-1]:
        gaps.append((load_until - times[-1], times[-1]))
    longest, start = max(gaps, default=(load_until - fault_at, fault_at))
    first: dict[str, float] = {}
    for t, _, entry in applied:
        first.setdefault(entry, t)
    sent = {e: at for p in publishers for e, at in p.sent_at.items()}
    lat = sorted(first[e] - at for e, at in sent.items() if e in first)
    return Stall(longest, start, lat[-1] if lat else float("nan"), lat[len(lat) // 2] if lat else float("nan"))


def log_tails(stack: LocalStack, lines: int = 15) -> str:
    """The last lines of every service's log in the stack's home: what a failed fault test shows."""
    out = []
    for log in sorted((stack.home / "logs").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(out)


def report(tmp_path: Path, name: str, figures: dict[str, Any]) -> Path:
    """Write the test's figures to ``<tmp>/<name>.json`` and print them with the path."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True))
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}\nfigures written to {path}")
    return path
