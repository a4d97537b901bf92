"""The fan-out holding a national list (not a test): memory, disk, latency, pauses, mass expiry, MOU change.

    make bench-scale                       (SCALE_N entries, default 1,000,000)
    .venv/bin/python bench/bench_scale.py [--entries 1000000] [--rate 1000] [--seconds 60] [--expiring 100000]

One run, on one embedded broker, one fan-out worker:

1. **Empty**: latency at ``--rate`` listings/s for ``--seconds`` on an exchange that holds nothing
   (the baseline the loaded figures are compared with).
2. **Fill**: ``--entries`` listings, signed in advance (cached under ``<home>/cache`` with the keys
   that signed them, so a second run skips it), produced straight to the list topics with Kafka's
   partitioner and routed by the worker: listings/s over the first and the last tenth (does the
   rate hold as state grows?), peak and settled resident memory, state bytes per entry on disk.
3. **Held**: latency at ``--rate`` again with every entry held, and the longest pause of the
   worker's loop over the window (its ``concord_fanout_longest_pause_seconds``).
4. **Mass expiry**: ``--expiring`` listings whose periods end in the same second; seconds from that
   second until every one is lifted, and the latency of live traffic at ``--rate`` meanwhile.
5. **MOU change**: the worker restarts on a world where the court's MOU gains a measure for customs
   (every court entry is backfilled); seconds until every entry is re-evaluated, per million entries,
   and the latency of live traffic meanwhile.

Latency here is from a list record's creation to its directive reaching a ``read_committed``
consumer of the directive topics: what a subscriber can read.  Writes the figures to a JSON
file (its path is the last line) under the keys ``fanout.rss_mb_at_1m_entries``,
``fanout.state_bytes_per_entry``, ``latency.p99_ms_1m_held``, ``latency.max_pause_ms``,
``expiry.lift_all_s``, ``reevaluation.s_per_million`` and more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench_exchange import ADMIN, PUBLISHERS, Child, Generator, committed, concord, end_offsets, pct
from results import write_headline

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.models import Directive, ListEntryEvent
from services.core.signing import Domain
from services.keystore import load_signer
from services.localstack import LocalStack, ensure_credentials, free_port, principals

REPO = Path(__file__).resolve().parents[1]

_T0 = time.monotonic()
SCHEMAS = default_registry()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.0f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- signed listings


@dataclass(frozen=True)
class Signed:
    agency: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def sign_lines(keys: Path, lines: dict[str, list[str]]) -> Iterator[Signed]:
    """The adapters' work, done once: validate, encode and batch-sign each agency's listings."""
    for agency, rows in lines.items():
        signer = load_signer(keys, agency)
        for i in range(0, len(rows), 512):
            events = [ListEntryEvent.model_validate_json(r) for r in rows[i : i + 512]]
            # Sealed as the adapter seals them: the signature covers the commitments, not the record.
            sealed = [seal_record(e, SCHEMAS) for e in events]
            heads = signer.sign_batch(Domain.LIST_RECORD, [s.commitments for s in sealed])
            for ev, seal, head in zip(events, sealed, heads, strict=True):
                yield Signed(agency, ev.entry_id.encode(), seal.value, head.as_kafka())


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def save(path: Path, records: Iterator[Signed], total: int) -> int:
    tmp = path.with_suffix(".tmp")
    n = 0
    with tmp.open("wb") as f:
        for r in records:
            f.write(
                _lp(r.agency.encode())
                + _lp(r.key)
                + _lp(r.value)
                + _lp(json.dumps([[k, v.hex()] for k, v in r.headers]).encode())
            )
            n += 1
            if n % 100_000 == 0:
                say(f"signed {n:,}/{total:,} listings")
    tmp.replace(path)
    return n


def load(path: Path) -> Iterator[Signed]:
    with path.open("rb") as f:
        while True:
            head = f.read(4)
            if not head:
                return
            parts = []
            size = struct.unpack(">I", head)[0]
            parts.append(f.read(size))
            for _ in range(3):
                size = struct.unpack(">I", f.read(4))[0]
                parts.append(f.read(size))
            headers = [(k, bytes.fromhex(v)) for k, v in json.loads(parts[3])]
            yield Signed(parts[0].decode(), parts[1], parts[2], headers)


# --------------------------------------------------------------------------- the exchange


@dataclass
class Scale:
    stack: LocalStack
    producer: Any = None
    worker: Child | None = None
    url: str = ""
    sent_at: dict[bytes, float] = field(default_factory=dict)

    @property
    def ns(self) -> str:
        return self.stack.namespace

    def topic(self, agency: str) -> str:
        return self.stack.world.topic_name("lists", agency, namespace=self.ns)

    def produce(
        self, records: Iterator[Signed], *, rate: float | None = None, stamp: bool = False, total: int | None = None
    ) -> int:
        from confluent_kafka import Producer

        if self.producer is None:
            self.producer = Producer(
                {
                    **self.stack.access(ADMIN).confluent_config(),
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 5 if rate else 20,
                    "batch.size": 1_000_000,
                    "partitioner": "murmur2_random",
                }
            )
        p = self.producer
        n = 0
        t0 = time.monotonic()
        for r in records:
            if rate:
                wait = t0 + n / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            while True:
                try:
                    p.produce(self.topic(r.agency), key=r.key, value=r.value, headers=r.headers)
                    break
                except BufferError:
                    p.poll(0.05)
            if stamp:
                self.sent_at[r.key] = time.time()
            n += 1
            if n % 2000 == 0:
                p.poll(0)
            if total and n % 200_000 == 0:
                say(f"produced {n:,}/{total:,}")
        p.flush(120)
        return n

    def start_worker(self, world_dir: Path | None = None) -> Child:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**self.stack._env(), "PYTHONPATH": str(REPO)}  # noqa: SLF001 - the environment the local exchange gives its services
        if world_dir is not None:
            env["CONCORD_WORLD_DIR"] = str(world_dir)
        self.worker = Child(
            "fanout",
            concord("fanout", "worker", "--name", "scale", "--web-port", str(port), "--loglevel", "WARNING"),
            env=env,
            log=self.stack.home / "logs" / "fanout.log",
            cwd=self.stack.home,
        )
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self.worker
            except httpx.HTTPError:
                pass
            if not self.worker.running() or time.monotonic() > deadline:
                raise SystemExit(f"the fan-out did not become healthy; see {self.worker.log}")
            time.sleep(0.5)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += s.value
        return total

    def lag(self) -> int:
        ends = end_offsets(self.stack, [self.topic(a) for a in PUBLISHERS])
        done = committed(self.stack, f"{self.ns}-fanout")
        return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())

    def wait_routed(self, timeout: float, progress: int = 0) -> None:
        deadline = time.monotonic() + timeout
        shown = time.monotonic()
        while (lag := self.lag()) > 0:
            assert self.worker is not None
            if not self.worker.running():
                raise SystemExit(f"the fan-out exited; see {self.worker.log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the fan-out did not finish in {timeout:.0f}s")
            if progress and time.monotonic() - shown > 15:
                shown = time.monotonic()
                say(f"  {progress - lag:,}/{progress:,} routed; fan-out RSS {self.worker.snapshot()[1]:,.0f} MB peak")
            time.sleep(0.5)

    def rss_mb(self) -> float:
        assert self.worker is not None
        for line in Path(f"/proc/{self.worker.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


class Probe:
    """A read_committed consumer of every directive topic, from their ends: when each directive
    becomes readable, by entry."""

    def __init__(self, scale: Scale) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.seen: list[tuple[float, bytes, str, str]] = []  # (received, entry id, action, cause)
        self._stop = threading.Event()
        self.c = Consumer(
            {
                **scale.stack.access(ADMIN).confluent_config(),
                "group.id": "bench-probe",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        topics = [s for s in scale.stack.world.topic_specs(scale.ns) if s.kind == "directives"]
        tps = []
        for spec in topics:
            for p in range(spec.partitions):
                _, high = self.c.get_watermark_offsets(TopicPartition(spec.name, p), timeout=10)
                tps.append(TopicPartition(spec.name, p, high))
        self.c.assign(tps)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self.c.consume(2000, 0.05):
                value = m.value()
                if m.error() is not None or value is None:
                    continue
                now = time.time()
                try:
                    sv, _ = SCHEMAS.split(value)
                    if sv.name != "directive":
                        continue
                    d = SCHEMAS.decode_model(value, Directive)
                except Exception:  # noqa: BLE001, S112 - a benchmark skips what it cannot read
                    continue
                self.seen.append((now, d.entry_id.encode(), d.action.value, d.cause.value))

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.c.close()


def latencies(scale: Scale, probe: Probe, since: float, until: float) -> list[float]:
    out = []
    for received, entry, action, _ in probe.seen:
        sent = scale.sent_at.get(entry)
        if sent is not None and since <= sent <= until and action == "APPLY":
            out.append(received - sent)
    return sorted(out)


def live(
    scale: Scale, gen: Generator, keys: Path, rate: float, seconds: float, probe: Probe, watch_pause: bool = False
) -> dict[str, Any]:
    """``rate`` fresh listings/s for ``seconds``; latency of their directives."""
    lines = gen.lines(int(rate * seconds))
    records = list(sign_lines(keys, lines))
    records.sort(key=lambda r: hash(r.key))  # agencies interleaved
    pauses: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(httpx.HTTPError):
                pauses.append(scale.metric("concord_fanout_longest_pause_seconds"))

    watcher = threading.Thread(target=watch, daemon=True)
    if watch_pause:
        watcher.start()
    t0 = time.time()
    scale.produce(iter(records), rate=rate, stamp=True)
    t1 = time.time()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = {e for _, e, a, _ in probe.seen if a == "APPLY"}
        if all(r.key in got for r in records[-50:]):
            break
        time.sleep(0.5)
    time.sleep(2.0)
    stop.set()
    lat = latencies(scale, probe, t0, t1)
    return {
        "rate": rate,
        "seconds": seconds,
        "listings": len(records),
        "directives": len(lat),
        "p50_ms": pct(lat, 0.5) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": (lat[-1] if lat else 0) * 1000,
        "max_pause_ms": max(pauses, default=float("nan")) * 1000,
    }


def expiring_people(n: int, end: datetime) -> list[str]:
    """``n`` court listings of people whose periods all end at ``end``."""
    from bench_subscriber import ric

    start = (end - timedelta(days=30)).isoformat().replace("+00:00", "Z")
    until = end.isoformat().replace("+00:00", "Z")
    today = datetime.now(UTC).date().isoformat()
    rows = []
    for i in range(n):
        entry_id = f"x{end:%H%M%S}-{i:07d}"
        rows.append(
            json.dumps(
                {
                    "event_id": f"court:{entry_id}:1",
                    "event_type": "LISTED",
                    "entry_id": entry_id,
                    "version": 1,
                    "program": "court.judgment-defaulters",
                    "list_kind": "SANCTION",
                    "subject": {
                        "kind": "PERSON",
                        "names": [{"value": f"Expiring {i}"}],
                        "identifiers": [{"scheme": "CN_RIC", "value": ric(5_000_000 + i)}],
                    },
                    "basis": {
                        "decision_no": "(2026) Jing 01 Zhi 9",
                        "issued_by": "Beijing No.1 Intermediate People's Court",
                        "decided_on": today,
                    },
                    "reason": "Expiring listing for the scale benchmark",
                    "listed_on": today,
                    "effective_from": start,
                    "effective_until": until,
                    "publication_until": until,
                }
            )
        )
    return rows


# --------------------------------------------------------------------------- the changed world


def world_with_customs_measure(src: Path, dst: Path) -> Path:
    """topics/ where the judgment-defaulters MOU also has customs review every export of a listed subject."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    path = dst / "mous" / "mou-judgment-defaulters.yaml"
    doc = yaml.safe_load(path.read_text())
    v = doc["versions"][-1]
    v["signatories"] = sorted({*v["signatories"], "customs"})
    v["measures"].append(
        {
            "measure_id": "customs.export-review",
            "kind": "PUNISH",
            "text": "Every export declaration of a listed subject is reviewed.",
            "implementing_agency": "customs",
            "legal_basis": "Customs Law, Art. 28",
            "applies_to": ["PERSON", "ORGANIZATION"],
        }
    )
    v["visible_fields"]["customs"] = ["kind", "identifiers"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return dst


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=int(os.environ.get("SCALE_N", "1000000")))
    ap.add_argument("--rate", type=float, default=1000.0, help="live listings/s during the latency windows")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of a latency window")
    ap.add_argument("--expiring", type=int, default=100_000, help="listings whose periods end in the same second")
    ap.add_argument("--home", type=Path, default=REPO / ".local" / "bench-scale")
    args = ap.parse_args(argv)
    home: Path = args.home.resolve()
    cache = home / "cache"
    for part in ("scale", "broker", "world"):
        shutil.rmtree(home / part, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "entries": args.entries,
        "rate": args.rate,
        "seconds": args.seconds,
        "started": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
    }
    from services.embedded.broker import EmbeddedKafka
    from services.embedded.libs import ensure_kafka_libs

    stack = LocalStack.at(home / "scale", namespace="scale")
    creds = ensure_credentials(home / "scale", principals(stack.world))
    broker = EmbeddedKafka(home / "broker", creds, libs_dir=ensure_kafka_libs(REPO), heap="1g", tie_to_parent=True)
    broker.start()
    scale = Scale(stack)
    probe: Probe | None = None
    try:
        stack.write_config(broker.bootstrap, broker.ca_file, brokers=1)
        if (cache / "keys").exists():
            shutil.copytree(cache / "keys", stack.home / "keys")
        stack.ensure_keys()
        shutil.copytree(stack.home / "keys", cache / "keys", dirs_exist_ok=True)
        stack.provision()
        keys = stack.home / "keys"
        say(f"broker {broker.bootstrap}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")

        fill = cache / f"listings-{args.entries}.bin"
        t = time.monotonic()
        if not fill.exists():
            say(f"signing {args.entries:,} listings once (cached in {fill})")
            gen = Generator(seed=11, prefix="s", amend=0.0, delist=0.0)
            save(fill, sign_lines(keys, gen.lines(args.entries)), args.entries)
        res["sign_s"] = time.monotonic() - t

        scale.start_worker()
        probe = Probe(scale)
        say(f"[empty] {args.rate:,.0f} listings/s for {args.seconds:g}s on an empty exchange")
        res["empty"] = live(
            scale,
            Generator(seed=12, prefix="e", amend=0.0, delist=0.0),
            keys,
            args.rate,
            min(args.seconds, 30.0),
            probe,
        )
        say(f"[empty] p50 {res['empty']['p50_ms']:.0f} ms, p99 {res['empty']['p99_ms']:.0f} ms")

        say(f"[fill] producing {args.entries:,} pre-signed listings")
        t = time.monotonic()
        scale.produce(load(fill), total=args.entries)
        res["produce_s"] = time.monotonic() - t
        directive_topics = [s.name for s in stack.world.topic_specs(scale.ns) if s.kind == "directives"]
        before = sum(end_offsets(stack, directive_topics).values())
        cpu0 = scale.worker.snapshot()[0] if scale.worker else 0.0
        t = time.monotonic()
        marks: list[tuple[float, int]] = []
        total = args.entries
        while (lag := scale.lag()) > 0:
            marks.append((time.monotonic(), total - lag))
            if time.monotonic() - t > 3600:
                raise SystemExit("the fan-out did not route the fill in an hour")
            if len(marks) % 30 == 0:
                say(f"  {total - lag:,}/{total:,} routed; RSS {scale.rss_mb():,.0f} MB")
            time.sleep(0.5)
        took = time.monotonic() - t
        assert scale.worker is not None
        cpu1, peak = scale.worker.snapshot()

        def rate_between(lo: float, hi: float) -> float:
            a = next(m for m in marks if m[1] >= lo * total)
            b = next((m for m in marks if m[1] >= hi * total), (time.monotonic(), total))
            return (b[1] - a[1]) / max(b[0] - a[0], 1e-9)

        res["fill"] = {
            "listings": total,
            "seconds": took,
            "rate": total / took,
            "rate_first_tenth": rate_between(0.0, 0.1) if marks else float("nan"),
            "rate_last_tenth": rate_between(0.9, 0.999) if marks else float("nan"),
            "cpu_us_per_listing": (cpu1 - cpu0) / total * 1e6,
            "peak_rss_mb": peak,
            "directives": sum(end_offsets(stack, directive_topics).values()) - before,
        }
        time.sleep(5.0)
        res["fill"]["rss_mb"] = scale.rss_mb()
        say(
            f"[fill] {total:,} listings routed in {took:.0f}s = {res['fill']['rate']:,.0f}/s (first tenth "
            f"{res['fill']['rate_first_tenth']:,.0f}/s, last {res['fill']['rate_last_tenth']:,.0f}/s); RSS "
            f"{res['fill']['rss_mb']:,.0f} MB (peak {peak:,.0f} MB)"
        )

        say(f"[held] {args.rate:,.0f} listings/s for {args.seconds:g}s with {total:,} entries held")
        res["held"] = live(
            scale,
            Generator(seed=13, prefix="h", amend=0.0, delist=0.0),
            keys,
            args.rate,
            args.seconds,
            probe,
            watch_pause=True,
        )
        say(
            f"[held] p50 {res['held']['p50_ms']:.0f} ms, p99 {res['held']['p99_ms']:.0f} ms, longest pause "
            f"{res['held']['max_pause_ms']:.0f} ms"
        )

        # Mass expiry: every one of these ends in the same second.
        n_exp = args.expiring
        margin = max(30.0, n_exp / 2000)
        end = (datetime.now(UTC) + timedelta(seconds=margin)).replace(microsecond=0)
        rows = expiring_people(n_exp, end)
        say(f"[expiry] {n_exp:,} listings whose periods all end at {end:%H:%M:%S}Z")
        scale.produce(sign_lines(keys, {"court": rows}))
        scale.wait_routed(600)
        lifted0 = scale.metric("concord_fanout_lifts_total", {"cause": "PERIOD_ENDED"})
        wait = (end - datetime.now(UTC)).total_seconds()
        if wait < 5:
            say(f"[expiry] routing took longer than the margin; the periods ended {-wait:.0f}s ago")
        live_result: dict[str, Any] = {}

        def traffic() -> None:
            live_result.update(
                live(
                    scale,
                    Generator(seed=15, prefix="y", amend=0.0, delist=0.0),
                    keys,
                    args.rate,
                    max(20.0, min(args.seconds, 60.0)),
                    probe,
                    watch_pause=True,
                )
            )

        time.sleep(max(0.0, wait - 5))
        runner = threading.Thread(target=traffic, daemon=True)
        runner.start()
        want = 2 * n_exp  # aviation and rail for every person
        while datetime.now(UTC) < end:
            time.sleep(0.05)
        t = time.monotonic()
        while scale.metric("concord_fanout_lifts_total", {"cause": "PERIOD_ENDED"}) - lifted0 < want:
            if time.monotonic() - t > 600:
                raise SystemExit("the expiring listings were not lifted in 10 minutes")
            time.sleep(0.2)
        res["expiry"] = {"listings": n_exp, "lifts": want, "lift_all_s": time.monotonic() - t}
        runner.join(300)
        res["expiry"]["live"] = live_result
        say(
            f"[expiry] all {want:,} LIFTs issued {res['expiry']['lift_all_s']:.1f}s after the second their periods "
            f"ended; live traffic meanwhile p99 {live_result.get('p99_ms', float('nan')):.0f} ms"
        )

        # MOU change: the worker restarts on the changed world and backfills every court entry.
        held = int(scale.metric("concord_fanout_entries"))
        world_dir = world_with_customs_measure(REPO / "topics", home / "world")
        scale.worker.stop()
        say(f"[mou] restarting the worker on a world where customs reviews every court listing ({held:,} entries)")
        t = time.monotonic()
        scale.start_worker(world_dir)
        live_result = {}
        runner = threading.Thread(target=traffic, daemon=True)
        runner.start()
        seen_sweep = False
        while True:
            sweeping = scale.metric("concord_fanout_reevaluating_partitions")
            seen_sweep = seen_sweep or sweeping > 0 or scale.metric("concord_fanout_reevaluated_total") > 0
            if seen_sweep and sweeping == 0:
                break
            if time.monotonic() - t > 3600:
                raise SystemExit("re-evaluation did not finish in an hour")
            time.sleep(0.5)
        took = time.monotonic() - t
        runner.join(300)
        done = scale.metric("concord_fanout_reevaluated_total")
        res["reevaluation"] = {
            "entries": held,
            "reevaluated": done,
            "seconds": took,
            "s_per_million": took / max(held, 1) * 1e6,
            "live": live_result,
        }
        say(
            f"[mou] {done:,.0f} entries re-evaluated in {took:.0f}s = {res['reevaluation']['s_per_million']:.0f}s per "
            f"million; live traffic meanwhile p99 {live_result.get('p99_ms', float('nan')):.0f} ms"
        )
    finally:
        if probe is not None:
            probe.stop()
        if scale.worker is not None:
            scale.worker.stop()
        broker.stop()
    state = home / "scale" / "fanout" / "scale"
    disk = sum(f.stat().st_size for f in state.rglob("*") if f.is_file()) if state.exists() else 0
    entries_held = res["reevaluation"]["entries"]
    res["state_bytes"] = disk
    figures = {
        "fanout.rss_mb_at_1m_entries": res["fill"]["rss_mb"] * 1_000_000 / max(args.entries, 1)
        if args.entries < 1_000_000
        else res["fill"]["rss_mb"],
        "fanout.peak_rss_mb": res["fill"]["peak_rss_mb"],
        "fanout.state_bytes_per_entry": disk / max(entries_held, 1),
        "fanout.fill_listings_per_s": res["fill"]["rate"],
        "fanout.rate_last_vs_first_tenth": res["fill"]["rate_last_tenth"] / res["fill"]["rate_first_tenth"],
        "latency.p99_ms_empty": res["empty"]["p99_ms"],
        "latency.p99_ms_1m_held": res["held"]["p99_ms"],
        "latency.p99_held_vs_empty": res["held"]["p99_ms"] / res["empty"]["p99_ms"],
        "latency.max_pause_ms": res["held"]["max_pause_ms"],
        "expiry.lift_all_s": res["expiry"]["lift_all_s"],
        "expiry.live_p99_ms": res["expiry"]["live"].get("p99_ms", float("nan")),
        "reevaluation.s_per_million": res["reevaluation"]["s_per_million"],
        "reevaluation.live_p99_ms": res["reevaluation"]["live"].get("p99_ms", float("nan")),
        "bench.seconds": time.monotonic() - _T0,
    }
    res.update(figures)
    print()
    print(f"Concord scale benchmark: {args.entries:,} entries, {time.monotonic() - _T0:.0f}s in all")
    for k, v in figures.items():
        print(f"  {k:40} {v:>12,.2f}")
    print("targets: rss <= 400 MB at 1M; p99 <= 250 ms at 1,000/s held; max pause <= 250 ms; 100k lifted <= 60 s")
    out = home / f"bench-scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(res, indent=1, default=str))
    write_headline("scale", figures, command=f"make bench-scale (SCALE_N={args.entries})", full=out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
