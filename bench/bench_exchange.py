"""The whole exchange under load, beside what the broker and the CPU allow (not a test).

    make bench                     (BENCH_N listings, default 200,000)
    .venv/bin/python bench/bench_exchange.py [--n 200000] [--rate 5000] [--seconds 15] [--profile DIR]

One run, on one broker, measures:

1. **Signatures**, in this process: sign and verify per record, one at a time and in
   Merkle-root batches of 512 (verified with an empty root cache).
2. **Kafka's own producer** (``org.apache.kafka.tools.ProducerPerformance`` from the
   broker's jars, SASL_SSL as concord-admin, acks=all): N records of the average list
   record's size plus its headers.  What the broker and its TLS listener take.
3. **Latency at rate** on an empty exchange (batch signatures, everything running):
   min(``--rate``, ``--start-rate``) listings/s, halved until the exchange keeps up, for
   ``--seconds`` each, through three streaming
   ``concord publish -`` processes.  End-to-end latency = the subscriber's
   ``applied_at`` (its history table) minus the timestamp of the list record the
   directive carries.  It fell behind when the last directive was applied more than
   2 s after the last listing was published.
4. For each signature kind — ``batch`` (Merkle roots, the default) with N listings and
   ``single`` (one Ed25519 signature per record) with ``--other-n`` (N/4) — in a
   namespace of its own:

   * **publish**: synthetic valid listings of the demo programs (with amendments and
     delistings) in three JSON Lines files, published by three ``concord publish``
     processes (court, market, tax) at once;
   * **passthrough** (first kind only): a plain aiokafka consumer-producer copying the
     same list records, bytes and headers, to another topic, no decoding or
     verification — what a Python Kafka hop costs;
   * **fan-out**: one ``concord fanout worker`` alone on the backlog: listings per
     second between its first and last directive (and over its first N/4, for a
     like-for-like comparison with the other kind);
   * **subscribers**: aviation, rail and finance (``concord subscriber run``) then catch
     up on their directives: directives applied per second each;
   * (batch only) latency at the rate of step 3 again, with the N entries held.

It prints each figure beside the baselines as a ratio, CPU seconds (``wait4``) and peak
resident memory (``VmHWM``) of every process, writes all figures to a JSON file, draws
latency over time (PNG), and prints the JSON file's path as its last line.

The broker is an EmbeddedKafka under ``<home>/broker`` (``--home``, default
``.local/bench-exchange``, emptied at start).  With ``CONCORD_BOOTSTRAP`` set the
bench uses that cluster instead (SASL_SSL, SCRAM-SHA-512): ``CONCORD_CA_FILE`` names
its CA and ``--credentials FILE`` holds the passwords of concord-admin,
concord-fanout and every agency of topics/ (a JSON object by principal); its
namespaces are ``bench<time>b``, ``...s`` and ``...l``.

``--profile DIR`` runs the fan-out and the subscribers under pyinstrument (text, json
or html with ``--profile-format``) and writes one profile per process into DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_subscriber import ric, uscc
from results import write_headline

from services.core.codec import default_registry
from services.core.models import ListingCommitments, SealedListing
from services.credentials import read_password
from services.kafka_access import KafkaAccess
from services.localstack import LocalStack, ensure_credentials, free_port, principals

REPO = Path(__file__).resolve().parents[1]

SUBSCRIBERS = ("aviation", "rail", "finance")
PUBLISHERS = ("court", "market", "tax")
MIX = {"court": 0.7, "market": 0.2, "tax": 0.1}
ADMIN = "concord-admin"
COURT_BASIS = {"decision_no": "(2026) Jing 01 Zhi 1", "issued_by": "Beijing No.1 Intermediate People's Court"}
PROFILE_FORMAT = "txt"
MARKET_BASIS = {"decision_no": "Shi Jian Chu [2026] 1", "issued_by": "Beijing Municipal Market Regulation"}


_T0 = time.monotonic()


def say_plain(msg: str) -> None:
    print(msg, flush=True)


def say(msg: str, stamp: bool = True) -> None:
    """A line of the report; progress lines carry the seconds since the start."""
    print(f"[{time.monotonic() - _T0:5.0f}s] {msg}" if stamp and msg else msg, flush=True)


# --------------------------------------------------------------------------- synthetic listings


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Generator:
    """Valid listings of the demo programs: new entries, amendments and delistings of earlier ones."""

    seed: int
    prefix: str
    amend: float = 0.10
    delist: float = 0.05
    _n: int = 0
    _live: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {a: [] for a in PUBLISHERS})

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        now = datetime.now(UTC).replace(microsecond=0)
        self.start, self.until = _iso(now - timedelta(days=1)), _iso(now + timedelta(days=3650))
        self.day = (now - timedelta(days=2)).date().isoformat()
        self.today = now.date().isoformat()

    def _new(self, agency: str) -> dict[str, Any]:
        self._n += 1
        n = self._n + self.seed * 1_000_000  # identifiers stay valid (birth dates before today) up to ~2.5M
        entry_id = f"{self.prefix}-{agency}-{self._n:08d}"
        rep = {
            "role": "LEGAL_REPRESENTATIVE",
            "kind": "PERSON",
            "names": [{"value": f"Rep {n}"}],
            "identifiers": [{"scheme": "CN_RIC", "value": ric(2 * n + 1)}],
        }
        org = {
            "kind": "ORGANIZATION",
            "names": [{"value": f"Example Trading {n} Co., Ltd."}],
            "identifiers": [{"scheme": "CN_USCC", "value": uscc(n)}],
        }
        if agency == "court" and self.rng.random() < 0.5:
            subject: dict[str, Any] = {
                "kind": "PERSON",
                "names": [{"value": f"Person {n}"}],
                "identifiers": [{"scheme": "CN_RIC", "value": ric(2 * n)}],
            }
        elif agency == "tax":
            subject = org
        else:
            subject = {**org, "related_parties": [rep]}
        rec: dict[str, Any] = {
            "event_id": f"{agency}:{entry_id}:1",
            "event_type": "LISTED",
            "entry_id": entry_id,
            "version": 1,
            "program": {
                "court": "court.judgment-defaulters",
                "market": "market.food-safety-serious",
                "tax": "tax.a-grade-taxpayers",
            }[agency],
            "list_kind": "INCENTIVE" if agency == "tax" else "SANCTION",
            "subject": subject,
            "reason": "Synthetic listing for the exchange benchmark",
            "listed_on": self.today,
            "effective_from": self.start,
            "effective_until": self.until,
        }
        if agency != "tax":
            rec["basis"] = {**(COURT_BASIS if agency == "court" else MARKET_BASIS), "decided_on": self.day}
        self._live[agency].append(rec)
        return rec

    def next(self, agency: str) -> dict[str, Any]:
        live = self._live[agency]
        r = self.rng.random()
        if len(live) > 100 and r < self.amend + self.delist:
            prev = live.pop(self.rng.randrange(len(live) - 50))  # not one of the very latest
            version = prev["version"] + 1
            rec = {**prev, "version": version, "event_id": f"{agency}:{prev['entry_id']}:{version}"}
            if r < self.amend:
                rec["event_type"] = "AMENDED"
                rec["reason"] = f"Amended (version {version})"
                live.append(rec)
            else:
                rec["event_type"] = "DELISTED"
                rec["delisting"] = {"reason": "PERFORMED", "decided_on": self.today}
            return rec
        return self._new(agency)

    def lines(self, n: int) -> dict[str, list[str]]:
        """``n`` records, shared between the publishing agencies by :data:`MIX`, as JSON Lines."""
        out: dict[str, list[str]] = {a: [] for a in PUBLISHERS}
        agencies = list(MIX)
        weights = [MIX[a] for a in agencies]
        for agency in self.rng.choices(agencies, weights, k=n):
            out[agency].append(json.dumps(self.next(agency)) + "\n")
        return out


# --------------------------------------------------------------------------- processes and their cost


@dataclass
class Usage:
    name: str
    cpu_s: float
    peak_mb: float
    wall_s: float


def _proc_usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS (VmHWM, MB) of a running process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / tick
        hwm = 0.0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        return float("nan"), float("nan")
    return cpu, hwm


class Child:
    """A process of the exchange (or a baseline): started here, its cost read when it ends."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        log: Path,
        stdin: Any = None,
        profile: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.profile = profile
        if profile is not None:
            fmt = {".txt": "text", ".json": "json", ".html": "html"}.get(profile.suffix, "text")
            argv = [sys.executable, "-m", "pyinstrument", "-r", fmt, "-o", str(profile), *argv[1:]]
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=stdin, start_new_session=True, cwd=cwd
        )
        self.log = log
        self.usage: Usage | None = None
        self.peak_mb = 0.0

    def running(self) -> bool:
        """Alive and not a zombie (never reaped here: :meth:`wait` reaps, to read the kernel's figures)."""
        try:
            state = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return self.usage is None and state != "Z"

    def snapshot(self) -> tuple[float, float]:
        cpu, hwm = _proc_usage(self.proc.pid)
        if not math.isnan(hwm):
            self.peak_mb = max(self.peak_mb, hwm)
        return cpu, hwm

    def poll_exit(self) -> Usage | None:
        """The process's cost if it has exited (CPU from the kernel, wait4), else None after sampling its
        memory: the kernel's ru_maxrss of a child counts its parent's memory at fork, so it is not used."""
        if self.usage is not None:
            return self.usage
        self.snapshot()
        pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
        if not pid:
            return None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._log.close()
        self.usage = Usage(self.name, ru.ru_utime + ru.ru_stime, self.peak_mb, time.monotonic() - self.started)
        return self.usage

    def wait(self, timeout: float | None = None) -> Usage:
        """Wait for the process to exit by itself."""
        return wait_all([self], timeout)[0]

    def stop(self, grace: float = 30.0) -> Usage:
        if self.usage is not None:
            return self.usage
        self.snapshot()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT if self.profile else signal.SIGTERM)
        try:
            return self.wait(grace)
        except TimeoutError:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.wait(10)


def wait_all(children: list[Child], timeout: float | None = None) -> list[Usage]:
    """Wait for every child to exit, sampling the memory of all of them meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done = [c.poll_exit() for c in children]
        if all(u is not None for u in done):
            return [u for u in done if u is not None]
        if deadline is not None and time.monotonic() > deadline:
            late = [c.name for c, u in zip(children, done, strict=True) if u is None]
            raise TimeoutError(f"{', '.join(late)} still running after {timeout}s")
        time.sleep(0.05)


def concord(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


# --------------------------------------------------------------------------- Kafka helpers


def admin(stack: LocalStack) -> Any:
    from services.governance.admin import admin_client

    return admin_client(stack.access(ADMIN))


def end_offsets(stack: LocalStack, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    quiet = logging.getLogger("bench.rdkafka")
    quiet.setLevel(logging.CRITICAL)
    c = Consumer(
        {**stack.access(ADMIN).confluent_config(), "group.id": "bench-probe", "enable.auto.commit": False}, logger=quiet
    )
    try:
        md = c.list_topics(timeout=10)
        out = {}
        for t in topics:
            for p in md.topics[t].partitions:
                out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
        return out
    finally:
        c.close()


def committed(stack: LocalStack, group: str) -> dict[tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions

    adm = admin(stack)
    res = adm.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions or ()}


async def _read(
    access: KafkaAccess, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int], keep: Any
) -> list[Any]:
    """Every record of the given partitions from ``starts`` up to ``ends``, passed through ``keep``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(
        **access.aiokafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024,
        isolation_level="read_committed",
    )
    await c.start()
    out: list[Any] = []
    try:
        tps = [TopicPartition(t, p) for (t, p) in ends if ends[(t, p)] > starts.get((t, p), 0)]
        if not tps:
            return out
        c.assign(tps)
        for tp in tps:
            c.seek(tp, starts.get((tp.topic, tp.partition), 0))
        todo = set(tps)
        while todo:
            for tp, recs in (await c.getmany(timeout_ms=1000, max_records=5000)).items():
                out.extend(keep(r) for r in recs if r.offset < ends[(tp.topic, tp.partition)])
                if await c.position(tp) >= ends[(tp.topic, tp.partition)]:
                    todo.discard(tp)
    finally:
        await c.stop()
    return out


def read(
    stack: LocalStack, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int], keep: Any
) -> list[Any]:
    return asyncio.run(_read(stack.access(ADMIN), starts, ends, keep))


# --------------------------------------------------------------------------- the exchange


@dataclass
class Exchange:
    stack: LocalStack
    mode: str
    profile_dir: Path | None
    children: dict[str, Child] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    cas: dict[str, Path] = field(default_factory=dict)

    @property
    def ns(self) -> str:
        return self.stack.namespace

    def topics(self, kind: str) -> list[str]:
        return [s.name for s in self.stack.world.topic_specs(self.ns) if s.kind == kind]

    def spawn(self, name: str, argv: list[str], stdin: Any = None, profiled: bool = False) -> Child:
        prof = self.profile_dir / f"{self.mode}-{name}.{PROFILE_FORMAT}" if profiled and self.profile_dir else None
        env = {**self.stack._env(), "PYTHONPATH": str(REPO)}  # noqa: SLF001 - the environment the local exchange gives its services
        child = Child(
            name,
            argv,
            env=env,
            log=self.stack.home / "logs" / f"{name}.log",
            stdin=stdin,
            profile=prof,
            cwd=self.stack.home,
        )
        self.children[name] = child
        return child

    def start_fanout(self, name: str = "fanout") -> Child:
        port = free_port()
        self.urls[name] = f"http://127.0.0.1:{port}"
        return self.spawn(
            name,
            concord(
                "fanout",
                "worker",
                "--name",
                name,
                "--web-port",
                str(port),
                "--loglevel",
                "WARNING",
                "--signatures",
                self.mode,
            ),
            profiled=True,
        )

    def start_subscriber(self, agency: str) -> Child:
        port = free_port()
        self.urls[agency] = f"https://127.0.0.1:{port}"
        self.cas[agency] = self.stack.subscriber_home(agency).ca  # its check API is TLS with the agency's CA
        return self.spawn(
            f"subscriber-{agency}",
            concord(
                "subscriber",
                "run",
                "--agency",
                agency,
                "--port",
                str(port),
                "--db",
                str(self.db(agency)),
                "--progress-threshold",
                str(10**9),
            ),
            profiled=True,
        )

    def db(self, agency: str) -> Path:
        return self.stack.home / "data" / f"{agency}.sqlite"

    def lag(self) -> int:
        ends = end_offsets(self.stack, self.topics("lists"))
        done = committed(self.stack, f"{self.ns}-fanout")
        return sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())

    def wait_fanout_done(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.lag() > 0:
            for name, child in self.children.items():
                if name.startswith("fanout") and not child.running():
                    raise SystemExit(f"the fan-out exited; see {child.log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the fan-out did not finish in {timeout:.0f}s; see {self.children['fanout'].log}")
            time.sleep(0.5)

    def wait_subscribers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ends = end_offsets(
            self.stack, [self.stack.world.topic_name("directives", a, namespace=self.ns) for a in SUBSCRIBERS]
        )
        want = {a: sum(v for (t, _), v in ends.items() if t.endswith(f".directives.{a}")) for a in SUBSCRIBERS}
        while True:
            behind = [a for a in SUBSCRIBERS if self.applied_offsets(a) < want[a]]
            if not behind:
                return
            for a in behind:
                if not self.children[f"subscriber-{a}"].running():
                    raise SystemExit(f"subscriber {a} exited; see {self.children[f'subscriber-{a}'].log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"subscribers {behind} did not catch up in {timeout:.0f}s")
            time.sleep(0.5)

    def applied_offsets(self, agency: str) -> int:
        """How many records of its directive topic the store has consumed (next offsets, summed)."""
        import sqlite3

        try:
            with sqlite3.connect(f"file:{self.db(agency)}?mode=ro", uri=True, timeout=5) as db:
                return int(db.execute("SELECT COALESCE(SUM(offset + 1), 0) FROM offsets").fetchone()[0])
        except sqlite3.Error:
            return 0

    def history(self, agency: str, since: float = 0.0) -> list[tuple[str, str, int, float]]:
        import sqlite3

        with sqlite3.connect(f"file:{self.db(agency)}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(
                "SELECT origin_agency, entry_id, entry_version, applied_at FROM history WHERE applied_at >= ?", (since,)
            ).fetchall()

    def stop_all(self) -> dict[str, Usage]:
        out = {}
        for name, child in list(self.children.items()):
            out[name] = child.stop()
        return out


def publish_files(ex: Exchange, files: dict[str, Path]) -> tuple[float, dict[str, Usage]]:
    """The three adapters at once; seconds from start until the last exited."""
    t0 = time.monotonic()
    kids = [
        ex.spawn(f"publish-{a}", concord("publish", "--agency", a, str(f), "--signatures", ex.mode))
        for a, f in files.items()
    ]
    usages = {u.name: u for u in wait_all(kids, 1800)}
    for k in kids:
        if k.proc.returncode != 0:
            raise SystemExit(f"{k.name} failed ({k.proc.returncode}); see {k.log}")
    return time.monotonic() - t0, usages


def stamps(stack: LocalStack, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]) -> list[float]:
    """Timestamps (seconds) of the records between the offsets, sorted."""
    return sorted(t / 1000 for t in read(stack, starts, ends, lambda r: r.timestamp))


def span(
    stack: LocalStack, starts: dict[tuple[str, int], int], ends: dict[tuple[str, int], int]
) -> tuple[int, float, float]:
    """(records, first timestamp, last timestamp) of the records between the offsets, in seconds."""
    ts = stamps(stack, starts, ends)
    if not ts:
        return 0, float("nan"), float("nan")
    return len(ts), ts[0], ts[-1]


# --------------------------------------------------------------------------- baselines


def producer_perf(stack: LocalStack, kafka_libs: Path, n: int, size: int, home: Path) -> dict[str, Any]:
    """Kafka's own ProducerPerformance, SASL_SSL as concord-admin, acks=all, into a fresh topic."""
    from confluent_kafka.admin import NewTopic

    from services.embedded.libs import classpath

    topic = f"{stack.namespace}.perf"
    adm = admin(stack)  # held: a collected client fails its futures
    for f in adm.create_topics([NewTopic(topic, 3, 1)]).values():
        f.result()
    cfg = json.loads((stack.home / "concord.json").read_text())
    pw = read_password(stack.credentials_dir, ADMIN)
    props = home / "perf-client.properties"
    lines = [
        f"bootstrap.servers={cfg['bootstrap']}",
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        (
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{pw}";'
        ),
    ]
    if cfg.get("ca_file"):
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={cfg['ca_file']}"]
    fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    java = shutil.which("java") or "java"
    argv = [
        java,
        "-Xmx512m",
        "-cp",
        classpath(kafka_libs),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(n),
        "--record-size",
        str(size),
        "--throughput",
        "-1",
        "--producer.config",
        str(props),
        "--producer-props",
        "acks=all",
        "linger.ms=10",
        "batch.size=262144",
    ]
    log = home / "logs" / "producer-perf.log"
    child = Child("kafka-producer-perf", argv, env=dict(os.environ), log=log)
    usage = child.wait(900)
    last = [ln for ln in log.read_text().splitlines() if "records sent" in ln]
    if child.proc.returncode != 0 or not last:
        raise SystemExit(f"ProducerPerformance failed; see {log}")
    # "200000 records sent, 95238.1 records/sec (57.14 MB/sec), 245.1 ms avg latency, ... 99th, ..."
    parts = last[-1].split(",")
    rate = float(parts[1].split()[0])
    p99 = next((float(p.split()[0]) for p in parts if "99th" in p and "99.9th" not in p), float("nan"))
    return {
        "records": n,
        "record_bytes": size,
        "rate": rate,
        "p99_ms": p99,
        "line": last[-1].strip(),
        "usage": usage.__dict__,
    }


PASSTHROUGH = r"""
import asyncio, json, sys, time
from pathlib import Path
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from services.credentials import read_password
from services.kafka_access import KafkaAccess

async def main(cfg):
    access = KafkaAccess(bootstrap=cfg["bootstrap"], ca_file=Path(cfg["ca"]) if cfg["ca"] else None
                         ).as_principal(cfg["user"], read_password(Path(cfg["credentials"]), cfg["user"]))
    c = AIOKafkaConsumer(**access.aiokafka_kwargs(), group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", max_poll_records=2000)
    p = AIOKafkaProducer(**access.aiokafka_kwargs(), acks="all", enable_idempotence=True, linger_ms=10,
                         max_batch_size=256 * 1024)
    await c.start(); await p.start()
    tps = [TopicPartition(t, int(q)) for t, q in (k.rsplit(":", 1) for k in cfg["ends"])]
    ends = {TopicPartition(t, int(q)): v for (t, q), v in ((k.rsplit(":", 1), v) for k, v in cfg["ends"].items())}
    c.assign(tps)
    await c.seek_to_beginning(*tps)
    n, t0, pending = 0, None, []
    todo = set(tp for tp in tps if ends[tp] > 0)
    while todo:
        for tp, recs in (await c.getmany(timeout_ms=1000, max_records=2000)).items():
            if t0 is None:
                t0 = time.monotonic()
            for r in recs:
                pending.append(await p.send(cfg["out"], value=r.value, key=r.key, headers=list(r.headers)))
                n += 1
            if await c.position(tp) >= ends[tp]:
                todo.discard(tp)
        if len(pending) > 20000:
            await asyncio.gather(*pending); pending = []
    await asyncio.gather(*pending)
    took = time.monotonic() - (t0 or time.monotonic())
    await c.stop(); await p.stop()
    print(json.dumps({"records": n, "seconds": took, "rate": n / max(took, 1e-9)}))

asyncio.run(main(json.loads(sys.argv[1])))
"""


def passthrough(ex: Exchange) -> dict[str, Any]:
    from confluent_kafka.admin import NewTopic

    stack = ex.stack
    out = f"{ex.ns}.passthrough"
    adm = admin(stack)
    for f in adm.create_topics([NewTopic(out, 3, 1)]).values():
        f.result()
    ends = end_offsets(stack, ex.topics("lists"))
    cfg = json.loads((stack.home / "concord.json").read_text())
    arg = json.dumps(
        {
            "bootstrap": cfg["bootstrap"],
            "ca": cfg.get("ca_file"),
            "user": ADMIN,
            # The child reads the password from the principal's credentials file: never from argv.
            "credentials": str(stack.credentials_dir),
            "out": out,
            "ends": {f"{t}:{p}": v for (t, p), v in ends.items()},
        }
    )
    child = Child(
        "passthrough",
        [sys.executable, "-c", PASSTHROUGH, arg],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        log=stack.home / "logs" / "passthrough.log",
    )
    usage = child.wait(900)
    lines = [ln for ln in child.log.read_text().splitlines() if ln.startswith("{")]
    if child.proc.returncode != 0 or not lines:
        raise SystemExit(f"passthrough failed; see {child.log}")
    return {**json.loads(lines[-1]), "usage": usage.__dict__}


def _floor_args(ex: Exchange, tag: str, records: int) -> dict[str, Any]:
    from confluent_kafka.admin import NewTopic

    stack = ex.stack
    out, changelog = f"{ex.ns}.{tag}-out", f"{ex.ns}.{tag}-changelog"
    adm = admin(stack)
    specs = [NewTopic(out, 3, 1), NewTopic(changelog, 3, 1, config={"cleanup.policy": "compact"})]
    for f in adm.create_topics(specs).values():
        f.result()
    cfg = json.loads((stack.home / "concord.json").read_text())
    return {
        "bootstrap": cfg["bootstrap"],
        "ca": cfg.get("ca_file"),
        "user": ADMIN,
        "credentials": str(stack.credentials_dir),
        "topics": ex.topics("lists"),
        "out": out,
        "changelog": changelog,
        "group": f"{ex.ns}-{tag}",
        "state": str(stack.home / tag),
        "records": records,
    }


def engine_floor(ex: Exchange, records: int) -> dict[str, Any]:
    """The fan-out's engine doing nothing but a RocksDB get and set per record, exactly once."""
    arg = json.dumps(_floor_args(ex, "floor", records))
    child = Child(
        "engine-floor",
        [sys.executable, str(REPO / "bench" / "engine_floor.py"), arg],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        log=ex.stack.home / "logs" / "engine-floor.log",
    )
    usage = child.wait(900)
    lines = [ln for ln in child.log.read_text().splitlines() if ln.startswith("{")]
    if child.proc.returncode != 0 or not lines:
        raise SystemExit(f"engine floor failed; see {child.log}")
    return {**json.loads(lines[-1]), "usage": usage.__dict__}


def quix_floor(ex: Exchange, records: int, python: Path) -> dict[str, Any]:
    """quix-streams doing the same nothing, for the record of why the fan-out does not run on it."""
    arg = json.dumps(_floor_args(ex, "quix", records))
    child = Child(
        "quix-floor",
        [str(python), str(REPO / "bench" / "quix_floor.py"), arg],
        env=dict(os.environ),
        log=ex.stack.home / "logs" / "quix-floor.log",
    )
    usage = child.wait(900)
    lines = [ln for ln in child.log.read_text().splitlines() if ln.startswith("{")]
    if child.proc.returncode != 0 or not lines:
        raise SystemExit(f"quix-streams floor failed; see {child.log}")
    return {**json.loads(lines[-1]), "usage": usage.__dict__}


def two_workers(ex: Exchange, files: dict[str, Path]) -> dict[str, Any]:
    """The same listings through two fan-out workers of a namespace of their own."""
    publish_files(ex, files)
    lists = ex.topics("lists")
    ends = end_offsets(ex.stack, lists)
    count = sum(ends.values())
    directive_topics = ex.topics("directives")
    before = end_offsets(ex.stack, directive_topics)
    workers = [ex.start_fanout("fanout-a"), ex.start_fanout("fanout-b")]
    t0 = time.monotonic()
    ex.wait_fanout_done(1800)
    after = end_offsets(ex.stack, directive_topics)
    ds = stamps(ex.stack, before, after)
    cpu = sum(w.snapshot()[0] for w in workers)
    ex.stop_all()
    return {
        "listings": count,
        "directives": len(ds),
        "seconds": ds[-1] - ds[0],
        "rate": count / max(ds[-1] - ds[0], 1e-9),
        "wall_s": time.monotonic() - t0,
        "cpu_s": cpu,
    }


# --------------------------------------------------------------------------- latency at rate


def paced(ex: Exchange, gen: Generator, rate: float, seconds: float) -> dict[str, Any]:
    """``rate`` listings/s for ``seconds`` through streaming adapters; end-to-end latency per directive."""
    n = int(rate * seconds)
    lines = gen.lines(n)
    lists = ex.topics("lists")
    starts = end_offsets(ex.stack, lists)
    t_start = time.time()
    kids = {
        a: ex.spawn(
            f"paced-publish-{a}-{int(rate)}",
            concord("publish", "--agency", a, "-", "--signatures", ex.mode),
            stdin=subprocess.PIPE,
        )
        for a in PUBLISHERS
    }
    time.sleep(2.0)  # let the adapters start and connect before the clock starts
    t0 = time.monotonic()
    order = [(i / MIX[a] / rate, a, line) for a in PUBLISHERS for i, line in enumerate(lines[a])]
    order.sort(key=lambda x: x[0])
    pipes = {a: stdin for a in PUBLISHERS if (stdin := kids[a].proc.stdin) is not None}
    i = 0
    while i < len(order):
        now = time.monotonic() - t0
        chunk: dict[str, list[str]] = {}
        while i < len(order) and order[i][0] <= now:
            chunk.setdefault(order[i][1], []).append(order[i][2])
            i += 1
        for a, ls in chunk.items():
            pipes[a].write("".join(ls).encode())
            pipes[a].flush()
        if i % 500 == 0:
            for k in kids.values():
                k.snapshot()
        time.sleep(0.005)
    sent_in = time.monotonic() - t0
    for a in PUBLISHERS:
        pipes[a].close()
    usages = {u.name: u for u in wait_all(list(kids.values()), 600)}
    ex.wait_fanout_done(600)
    ex.wait_subscribers(600)
    ends = end_offsets(ex.stack, lists)
    agency_of = {s.name: s.agency for s in ex.stack.world.topic_specs(ex.ns) if s.kind == "lists" and s.agency}
    schemas = default_registry()

    def keep(r: Any) -> tuple[tuple[str, str, int], float]:
        # A list record is sealed: what names its entry is in the commitments the publisher signed.
        signed = schemas.decode_model(schemas.decode_model(r.value, SealedListing).commitments, ListingCommitments)
        return (agency_of[r.topic], signed.entry_id, signed.version), r.timestamp / 1000

    published = dict(read(ex.stack, starts, ends, keep))
    first_pub, last_pub = min(published.values()), max(published.values())
    samples: list[tuple[float, float, str]] = []
    for agency in SUBSCRIBERS:
        for origin, entry_id, version, applied_at in ex.history(agency, since=t_start):
            ts = published.get((origin, entry_id, version))
            if ts is not None:
                samples.append((ts, applied_at - ts, agency))
    samples.sort()
    lat = sorted(s[1] for s in samples)
    last_applied = max(ts + d for ts, d, _ in samples) if samples else float("nan")
    tail = [d for ts, d, _ in samples if ts >= last_pub - seconds * 0.2]
    return {
        "target_rate": rate,
        "seconds": seconds,
        "listings": len(published),
        "writing_seconds": sent_in,
        "achieved_rate": len(published) / max(last_pub - first_pub, 1e-9),
        "directives": len(samples),
        "p50_ms": pct(lat, 0.5) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": (lat[-1] if lat else float("nan")) * 1000,
        "p99_last_fifth_ms": pct(sorted(tail), 0.99) * 1000,
        "drained_after_s": last_applied - last_pub,
        "kept_up": bool(samples) and last_applied - last_pub <= 2.0,
        "samples": [(round(ts - first_pub, 4), round(d * 1000, 2), a) for ts, d, a in samples],
        "publishers": {k: v.__dict__ for k, v in usages.items()},
    }


def settle(ex: Exchange, idle: float = 0.25, timeout: float = 60.0) -> None:
    """Wait until the fan-out has worked off what followed the catch-up (the subscribers' receipts,
    each a signature to verify): below ``idle`` of a core for two seconds running."""
    fan = ex.children["fanout"]
    deadline = time.monotonic() + timeout
    quiet = 0
    last, _ = fan.snapshot()
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(1.0)
        cpu, _ = fan.snapshot()
        quiet = quiet + 1 if cpu - last < idle else 0
        last = cpu


def say_run(mode: str, run: dict[str, Any]) -> None:
    say(
        f"[{mode}]   {run['listings']:,} listings at {run['achieved_rate']:,.0f}/s -> {run['directives']:,} "
        f"directives applied: p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms (last fifth "
        f"{run['p99_last_fifth_ms']:.0f} ms), drained {run['drained_after_s']:.1f}s after the last listing"
    )


def latency_fresh(ex: Exchange, gen: Generator, asked: float, start: float, seconds: float) -> dict[str, Any]:
    """Latency at rate on an exchange that holds nothing yet: ``asked`` listings/s if it keeps up at ``start``
    or more, else the highest of ``start``, ``start``/2, ... that it keeps up with."""
    import httpx

    ex.start_fanout()
    for a in SUBSCRIBERS:
        ex.start_subscriber(a)
    deadline = time.monotonic() + 120
    for name, url in ex.urls.items():
        while True:
            try:
                verify = ssl.create_default_context(cafile=str(ex.cas[name])) if name in ex.cas else True
                if httpx.get(f"{url}/healthz", timeout=2, verify=verify).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} not healthy in 120s; see {ex.stack.home / 'logs'}")
            time.sleep(0.3)
    runs = []
    rate = min(asked, start)
    while True:
        say(f"[latency] {rate:,.0f} listings/s for {seconds:g}s on an empty exchange, everything running")
        run = paced(ex, gen, rate, seconds)
        run["table"] = "empty at start"
        say_run("latency", run)
        runs.append(run)
        if run["kept_up"] or rate <= 50:
            break
        rate = round(rate / 2, -1)
    usage = ex.stop_all()
    return {"runs": runs, "processes": {k: v.__dict__ for k, v in usage.items()}}


def signature_costs(lines: list[str], seconds: float = 1.0) -> dict[str, float]:
    """Microseconds per record of signing and verifying, one record at a time or in batches of 512,
    on this thread (best of three), for records of this run."""
    from services.core.models import ListEntryEvent
    from services.core.signing import Domain, Keyring, PublicKey, Signer

    reg = default_registry()
    records = [reg.encode_model(ListEntryEvent.model_validate_json(ln)) for ln in lines[:512]]
    signer = Signer.generate("court", "bench")
    at = datetime.now(UTC)
    ring = Keyring([PublicKey("court", "bench", signer.public_bytes(), at - timedelta(days=1))])
    single = [signer.sign(Domain.LIST_RECORD, r) for r in records]
    batch = signer.sign_batch(Domain.LIST_RECORD, records)

    def per_record(fn: Any) -> float:
        best = float("inf")
        for _ in range(3):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / 3:
                fn()
                n += len(records)
            best = min(best, (time.perf_counter() - t0) / n * 1e6)
        return best

    def verify(heads: list[Any]) -> None:
        fresh = Keyring([PublicKey("court", "bench", signer.public_bytes(), at - timedelta(days=1))])
        for r, h in zip(records, heads, strict=True):
            fresh.verify(Domain.LIST_RECORD, r, h, expected_agency="court", at=at)

    assert ring.verify(Domain.LIST_RECORD, records[0], batch[0], expected_agency="court", at=at)
    return {
        "sign_single_us": per_record(lambda: [signer.sign(Domain.LIST_RECORD, r) for r in records]),
        "sign_batch_us": per_record(lambda: signer.sign_batch(Domain.LIST_RECORD, records)),
        "verify_single_us": per_record(lambda: verify(single)),
        "verify_batch_us": per_record(lambda: verify(batch)),
        "batch_size": len(records),
    }


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def chart(path: Path, runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 4 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        colours = {"aviation": "tab:blue", "rail": "tab:green", "finance": "tab:orange"}
        for agency in SUBSCRIBERS:
            pts = [(t, ms) for t, ms, a in run["samples"] if a == agency]
            if pts:
                ax.scatter(
                    [p[0] for p in pts], [p[1] for p in pts], s=1, alpha=0.3, color=colours[agency], label=agency
                )
        per_s: dict[int, list[float]] = {}
        for t, ms, _ in run["samples"]:
            per_s.setdefault(int(t), []).append(ms)
        secs = sorted(per_s)
        ax.plot(secs, [pct(sorted(per_s[s]), 0.99) for s in secs], color="black", lw=1.5, label="p99 per second")
        ax.plot(secs, [pct(sorted(per_s[s]), 0.5) for s in secs], color="grey", lw=1.5, label="p50 per second")
        ax.axhline(250, color="red", ls="--", lw=1, label="250 ms target")
        ax.set_yscale("log")
        ax.set_xlabel("seconds since the first listing of the run (publish time)")
        ax.set_ylabel("end-to-end latency, ms")
        ax.set_title(
            f"{run['target_rate']:,.0f} listings/s asked, {run['achieved_rate']:,.0f}/s published: "
            f"p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms"
        )
        ax.legend(loc="upper left", markerscale=8, fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- one signature kind


def run_mode(
    ex: Exchange,
    lines: dict[str, list[str]],
    n: int,
    *,
    with_passthrough: bool,
    paced_args: tuple[Generator, float, float] | None,
    compare_n: int = 0,
    quix_python: Path | None = None,
    two: Exchange | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = {"mode": ex.mode, "namespace": ex.ns, "n": n}
    files = {}
    for a in PUBLISHERS:
        f = ex.stack.home / f"{a}.jsonl"
        f.write_text("".join(lines[a]))
        files[a] = f
    lists = ex.topics("lists")
    say(
        f"[{ex.mode}] publishing {n:,} listings with three adapters "
        f"({', '.join(f'{a} {len(lines[a]):,}' for a in PUBLISHERS)})"
    )
    wall, pub_usage = publish_files(ex, files)
    ends = end_offsets(ex.stack, lists)
    count, first, last = span(ex.stack, {}, ends)
    res["publish"] = {
        "records": count,
        "wall_s": wall,
        "rate": count / max(last - first, 1e-9),
        "rate_wall": count / wall,
        "usage": {k: v.__dict__ for k, v in pub_usage.items()},
    }
    say(
        f"[{ex.mode}] published {count:,} in {wall:.1f}s wall: {res['publish']['rate']:,.0f}/s between first and "
        f"last record ({res['publish']['rate_wall']:,.0f}/s including process start)"
    )
    if with_passthrough:
        res["passthrough"] = passthrough(ex)
        say(
            f"[{ex.mode}] baseline: aiokafka passthrough {res['passthrough']['records']:,} records "
            f"in {res['passthrough']['seconds']:.1f}s = {res['passthrough']['rate']:,.0f}/s"
        )
        res["engine_floor"] = engine_floor(ex, count)
        say(
            f"[{ex.mode}] baseline: the fan-out's engine doing nothing (RocksDB get + set per record, exactly "
            f"once) {res['engine_floor']['records']:,} records in {res['engine_floor']['seconds']:.1f}s = "
            f"{res['engine_floor']['rate']:,.0f}/s"
        )
        if quix_python is not None:
            res["quix_floor"] = quix_floor(ex, count, quix_python)
            say(
                f"[{ex.mode}] baseline: quix-streams doing the same nothing {res['quix_floor']['records']:,} "
                f"records in {res['quix_floor']['seconds']:.1f}s = {res['quix_floor']['rate']:,.0f}/s"
            )

    directive_topics = ex.topics("directives")
    before = end_offsets(ex.stack, directive_topics)
    fan = ex.start_fanout()
    t0 = time.monotonic()
    ex.wait_fanout_done(1800)
    fan_cpu, fan_hwm = fan.snapshot()
    after = end_offsets(ex.stack, directive_topics)
    ds = stamps(ex.stack, before, after)
    directives, d_first, d_last = len(ds), ds[0], ds[-1]
    res["fanout"] = {
        "listings": count,
        "directives": directives,
        "seconds": d_last - d_first,
        "rate": count / max(d_last - d_first, 1e-9),
        "wall_s": time.monotonic() - t0,
        "cpu_s": fan_cpu,
        "peak_mb": fan_hwm,
        "cpu_us_per_listing": fan_cpu / count * 1e6,
    }
    if compare_n and compare_n < count:  # the same number of listings as the other kind, from an empty table
        t_k = ds[min(len(ds) - 1, len(ds) * compare_n // count)]
        res["fanout"]["first"] = {"listings": compare_n, "rate": compare_n / max(t_k - d_first, 1e-9)}
    say(
        f"[{ex.mode}] fan-out: {count:,} listings -> {directives:,} directives in {d_last - d_first:.1f}s = "
        f"{res['fanout']['rate']:,.0f} listings/s ({fan_cpu:.1f} CPU s, {res['fanout']['cpu_us_per_listing']:.0f} "
        f"us/listing, peak {fan_hwm:.0f} MB)"
        + (f"; the first {compare_n:,} at {res['fanout']['first']['rate']:,.0f}/s" if "first" in res["fanout"] else "")
    )

    for a in SUBSCRIBERS:
        ex.start_subscriber(a)
    t1 = time.time()
    ex.wait_subscribers(1800)
    subs = {}
    for a in SUBSCRIBERS:
        rows = ex.history(a)
        applied = [r[3] for r in rows]
        cpu, hwm = ex.children[f"subscriber-{a}"].snapshot()
        took = max(applied) - min(applied) if applied else float("nan")
        subs[a] = {
            "directives": len(rows),
            "seconds": took,
            "rate": len(rows) / max(took, 1e-9),
            "since_start_s": (max(applied) - t1) if applied else float("nan"),
            "cpu_s": cpu,
            "peak_mb": hwm,
            "cpu_us_per_directive": cpu / max(1, len(rows)) * 1e6,
        }
        say(
            f"[{ex.mode}] subscriber {a}: {len(rows):,} directives applied in {took:.1f}s = "
            f"{subs[a]['rate']:,.0f}/s ({cpu:.1f} CPU s, {subs[a]['cpu_us_per_directive']:.0f} us/directive, "
            f"peak {hwm:.0f} MB)"
        )
    res["subscribers"] = subs

    if paced_args is not None:
        gen, rate, seconds = paced_args
        settle(ex)
        say(
            f"[{ex.mode}] latency at rate with {count:,} entries held: {rate:,.0f} listings/s for {seconds:g}s, "
            f"everything running"
        )
        run = paced(ex, gen, rate, seconds)
        run["table"] = f"{count:,} entries held"
        say_run(ex.mode, run)
        res["paced"] = [run]

    usage = ex.stop_all()
    res["processes"] = {k: v.__dict__ for k, v in usage.items()}
    if two is not None:
        say(f"[{ex.mode}] the same {n:,} listings through two fan-out workers (a namespace of their own)")
        res["two_workers"] = two_workers(two, files)
        say(f"[{ex.mode}] two fan-out workers: {res['two_workers']['rate']:,.0f} listings/s")
    return res


# --------------------------------------------------------------------------- driver


def setup(
    home: Path, ns: str, world_creds: dict[str, str], bootstrap: str, ca: Path | None, brokers: int | None
) -> LocalStack:
    mode_home = home / ns
    mode_home.mkdir(parents=True, exist_ok=True)
    stack = LocalStack.at(mode_home, namespace=ns)
    stack.write_config(bootstrap, ca, brokers=brokers)
    stack.write_credentials(world_creds)
    stack.ensure_keys()
    stack.provision()
    return stack


def table(res: dict[str, Any]) -> list[str]:
    out = []
    perf = res["baselines"]["kafka_producer_perf"]["rate"]
    modes = res["modes"]
    batch = modes.get("batch", {})
    thru = batch.get("passthrough", {}).get("rate", float("nan"))
    out.append(f"{'':44} {'per second':>12} {'vs Kafka perf':>14} {'vs passthrough':>15}")
    out.append(f"{'Kafka ProducerPerformance (records)':44} {perf:>12,.0f} {1.0:>13.2f}x")
    out.append(f"{'aiokafka passthrough (records)':44} {thru:>12,.0f} {thru / perf:>13.2f}x {1.0:>14.2f}x")
    for mode, m in modes.items():
        p, f, n = m["publish"]["rate"], m["fanout"]["rate"], m["n"]
        out.append(f"{f'publish, 3 adapters ({mode}, {n:,})':44} {p:>12,.0f} {p / perf:>13.2f}x {p / thru:>14.2f}x")
        out.append(f"{f'fan-out listings ({mode}, {n:,})':44} {f:>12,.0f} {f / perf:>13.2f}x {f / thru:>14.2f}x")
        if "first" in m["fanout"]:
            k, r = m["fanout"]["first"]["listings"], m["fanout"]["first"]["rate"]
            out.append(f"{f'  of which the first {k:,}':44} {r:>12,.0f} {r / perf:>13.2f}x {r / thru:>14.2f}x")
        for a, s in m["subscribers"].items():
            out.append(
                f"{f'subscriber {a} directives ({mode})':44} {s['rate']:>12,.0f} {s['rate'] / perf:>13.2f}x "
                f"{s['rate'] / thru:>14.2f}x"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--n",
        type=int,
        default=int(os.environ.get("BENCH_N", "200000")),
        help="listings of the batch kind (default $BENCH_N, else 200,000)",
    )
    ap.add_argument("--rate", type=float, default=1000.0, help="listings/s asked of the latency run (default 1000)")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of a latency run (default 15)")
    ap.add_argument(
        "--quix-python",
        type=Path,
        help="an interpreter with quix-streams installed, for its floor beside the engine's "
        "(make bench makes .local/venv-quix)",
    )
    ap.add_argument(
        "--start-rate",
        type=float,
        default=1000.0,
        help="the latency run runs at min(--rate, this), halving until the exchange keeps up (default 1000)",
    )
    ap.add_argument("--modes", default="batch,single", help="signature kinds to run (default batch,single)")
    ap.add_argument(
        "--other-n", type=int, help="listings for the second kind (default N/4: its rates, not its scale, are compared)"
    )
    ap.add_argument(
        "--home",
        type=Path,
        default=REPO / ".local" / "bench-exchange",
        help="working folder, emptied at start (default .local/bench-exchange)",
    )
    ap.add_argument("--profile", type=Path, help="write pyinstrument profiles of the fan-out and subscribers here")
    ap.add_argument("--profile-format", choices=("txt", "json", "html"), default="txt")
    ap.add_argument(
        "--credentials",
        type=Path,
        help="with CONCORD_BOOTSTRAP: JSON file of SCRAM passwords by "
        "principal (concord-admin, concord-fanout, every agency)",
    )
    args = ap.parse_args(argv)
    if args.other_n is None:
        args.other_n = max(1000, args.n // 4)
    started = time.monotonic()
    home: Path = args.home.resolve()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        global PROFILE_FORMAT  # noqa: PLW0603 - one setting for the whole run, read where profiles are written
        PROFILE_FORMAT = args.profile_format
    world = LocalStack.at(home).world
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    external = os.environ.get("CONCORD_BOOTSTRAP")
    broker = None
    from services.embedded.libs import ensure_kafka_libs

    libs = ensure_kafka_libs(REPO)
    if external:
        if args.credentials is None:
            raise SystemExit("with CONCORD_BOOTSTRAP, pass --credentials FILE (passwords by principal)")
        creds = json.loads(args.credentials.read_text())
        bootstrap, ca = external, (Path(os.environ["CONCORD_CA_FILE"]) if os.environ.get("CONCORD_CA_FILE") else None)
        prefix = f"bench{stamp[9:15]}"
    else:
        from services.embedded.broker import EmbeddedKafka

        creds = ensure_credentials(home, principals(world))
        broker = EmbeddedKafka(home / "broker", creds, libs_dir=libs, heap="1g", tie_to_parent=True)
        broker.start()
        bootstrap, ca = broker.bootstrap, broker.ca_file
        prefix = "bench"
    say(
        f"exchange benchmark: {args.n:,} listings (the second signature kind {args.other_n:,}); "
        f"{os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; Kafka {bootstrap} ({'external' if external else 'embedded'}); home {home}"
    )
    results: dict[str, Any] = {"n": args.n, "started": stamp, "cpus": os.cpu_count(), "modes": {}, "baselines": {}}
    try:
        modes = [m for m in args.modes.split(",") if m]
        size = None if external else 1
        stacks = {m: setup(home, f"{prefix}{m[0]}", creds, bootstrap, ca, size) for m in modes}
        latency_stack = setup(home, f"{prefix}l", creds, bootstrap, ca, size) if "batch" in modes else None
        two_stack = setup(home, f"{prefix}w", creds, bootstrap, ca, size) if "batch" in modes else None
        gen = Generator(seed=1, prefix=f"b{stamp[9:15]}")
        lines = gen.lines(args.n)
        from services.core.models import ListEntryEvent

        sample = lines["court"][:2000]
        size = (
            sum(len(default_registry().encode_model(ListEntryEvent.model_validate_json(ln))) for ln in sample)
            // len(sample)
            + 450
        )  # and about as much again as the signature headers hold
        results["signature_costs"] = sig = signature_costs(lines["court"])
        say(
            f"signatures, us per record (one core; batches of {sig['batch_size']}, verified with an empty root "
            f"cache): sign {sig['sign_single_us']:.1f} single / {sig['sign_batch_us']:.1f} batch, verify "
            f"{sig['verify_single_us']:.1f} single / {sig['verify_batch_us']:.1f} batch"
        )
        first = stacks[modes[0]]
        say(f"baseline: Kafka ProducerPerformance, {args.n:,} records of {size} bytes, acks=all, SASL_SSL")
        results["baselines"]["kafka_producer_perf"] = producer_perf(first, libs, args.n, size, home)
        say(f"  {results['baselines']['kafka_producer_perf']['line']}")
        paced_rate = args.rate
        if latency_stack is not None:
            ex = Exchange(latency_stack, "batch", None)
            try:
                results["latency"] = latency_fresh(
                    ex, Generator(seed=4, prefix=f"l{stamp[9:15]}"), args.rate, args.start_rate, args.seconds
                )
            finally:
                ex.stop_all()
            paced_rate = results["latency"]["runs"][-1]["target_rate"]
        for mode in modes:
            ex = Exchange(stacks[mode], mode, args.profile)
            n = args.n
            mode_lines = lines
            if mode != modes[0] and args.other_n < args.n:  # a rate needs fewer listings than the full run
                n = args.other_n
                mode_lines = Generator(seed=3, prefix=f"s{stamp[9:15]}").lines(n)
            try:
                results["modes"][mode] = run_mode(
                    ex,
                    mode_lines,
                    n,
                    with_passthrough=mode == modes[0],
                    paced_args=(Generator(seed=2, prefix=f"p{stamp[9:15]}"), paced_rate, args.seconds)
                    if mode == "batch"
                    else None,
                    compare_n=args.other_n if mode == modes[0] else 0,
                    quix_python=args.quix_python if mode == modes[0] else None,
                    two=Exchange(two_stack, "batch", None) if mode == "batch" and two_stack else None,
                )
            finally:
                ex.stop_all()
        if "passthrough" in results["modes"].get(modes[0], {}):
            results["baselines"]["aiokafka_passthrough"] = results["modes"][modes[0]].pop("passthrough")
            results["modes"][modes[0]]["passthrough"] = results["baselines"]["aiokafka_passthrough"]
        if broker is not None:
            cpu, hwm = _proc_usage(broker.pid) if broker.pid else (float("nan"), float("nan"))
            results["baselines"]["broker_process"] = {"cpu_s": cpu, "peak_mb": hwm}
    finally:
        if broker is not None:
            broker.stop()
    results["seconds"] = time.monotonic() - started
    results.update(figures(results))
    print_report(results)
    png = home / f"latency-{stamp}.png"
    runs = results.get("latency", {}).get("runs", []) + results["modes"].get("batch", {}).get("paced", [])
    if runs:
        chart(png, runs)
        results["chart"] = str(png)
        for run in runs:
            run["samples_kept"] = len(run["samples"])
            run["samples"] = run["samples"][:: max(1, len(run["samples"]) // 20000)]
    out = home / f"bench-exchange-{stamp}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    write_headline("exchange", figures(results), command=f"make bench (BENCH_N={args.n})", full=out)
    if runs:
        say_plain(f"latency chart: {png}")
    say_plain(str(out))
    return 0


def figures(res: dict[str, Any]) -> dict[str, float]:
    """The headline figures, under the key names the project tracks."""
    out: dict[str, float] = {}
    batch = res["modes"].get("batch")
    if batch is None:
        return out
    rate = batch["fanout"]["rate"]
    out["fanout.listings_per_s"] = rate
    if "engine_floor" in batch:
        out["fanout.engine_floor_per_s"] = batch["engine_floor"]["rate"]
        out["fanout.vs_engine_floor"] = rate / batch["engine_floor"]["rate"]
    if "quix_floor" in batch:
        out["fanout.quix_floor_per_s"] = batch["quix_floor"]["rate"]
        out["fanout.vs_quix_floor"] = rate / batch["quix_floor"]["rate"]
    if "passthrough" in batch:
        out["fanout.vs_passthrough"] = rate / batch["passthrough"]["rate"]
    if "two_workers" in batch:
        out["fanout.two_workers_listings_per_s"] = batch["two_workers"]["rate"]
    out["fanout.cpu_us_per_listing"] = batch["fanout"]["cpu_us_per_listing"]
    return out


def print_report(res: dict[str, Any]) -> None:
    say_plain("")
    sizes = ", ".join(f"{m} {r['n']:,}" for m, r in res["modes"].items())
    say_plain(f"Concord exchange benchmark, listings per signature kind: {sizes}; {res['seconds']:.0f}s in all")
    say_plain("")
    for line in table(res):
        say_plain(line)
    thru = res["baselines"].get("aiokafka_passthrough", {}).get("rate", float("nan"))
    say_plain("")
    say_plain("figures:")
    for key in sorted(k for k in res if k.startswith("fanout.")):
        say_plain(f"  {key:40} {res[key]:>12,.2f}")
    say_plain("targets: fanout.listings_per_s >= 5,000; fanout.vs_engine_floor >= 0.5")
    if "batch" in res["modes"]:
        fb = res["modes"]["batch"]["fanout"]
        f = fb["rate"]
        say_plain(f"  fan-out, batch signatures   {f:>10,.0f} listings/s = {f / thru:.2f}x passthrough")
        if "first" in fb:
            say_plain(
                f"    (its first {fb['first']['listings']:,} listings: {fb['first']['rate']:,.0f}/s = "
                f"{fb['first']['rate'] / thru:.2f}x)"
            )
    if "single" in res["modes"]:
        f = res["modes"]["single"]["fanout"]["rate"]
        say_plain(f"  fan-out, single signatures  {f:>10,.0f} listings/s")
    for run in res.get("latency", {}).get("runs", []) + res["modes"].get("batch", {}).get("paced", []):
        say_plain(
            f"  end-to-end at {run['achieved_rate']:>6,.0f} listings/s ({run['table']}): p50 "
            f"{run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, {'kept up' if run['kept_up'] else 'fell behind'}"
        )
    say_plain("")
    say_plain(f"{'process':34} {'CPU s':>8} {'peak MB':>8} {'wall s':>8}")
    for name, u in res.get("latency", {}).get("processes", {}).items():
        say_plain(f"{f'{name} (latency)':34} {u['cpu_s']:>8.1f} {u['peak_mb']:>8.0f} {u['wall_s']:>8.1f}")
    for mode, m in res["modes"].items():
        for name, u in m["processes"].items():
            say_plain(f"{f'{name} ({mode})':34} {u['cpu_s']:>8.1f} {u['peak_mb']:>8.0f} {u['wall_s']:>8.1f}")
    for name, b in res["baselines"].items():
        u = b.get("usage", b)
        if "cpu_s" in u:
            say_plain(f"{name:34} {u['cpu_s']:>8.1f} {u['peak_mb']:>8.0f} {u.get('wall_s', float('nan')):>8.1f}")


if __name__ == "__main__":
    sys.exit(main())
