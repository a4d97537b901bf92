"""Subscriber benchmark (not a test): bootstrap, memory, in-process and HTTP check rates.

    .venv/bin/python bench/bench_subscriber.py [--directives 1000000] [--seconds 5]
    make bench-subscriber

1. A directive topic on a real Kafka broker (an EmbeddedKafka under
   ``.local/bench-subscriber/``, kept between runs, so the topic is generated once)
   is filled with N batch-signed directives: N/2 court listings of an organisation
   (batch-signed by the court, 512 a batch), each forwarded in two directives, one
   per legal representative, each an APPLY of ``aviation.no-air-tickets`` (batch-signed
   by the fan-out, 512 a batch, as ``concord fanout worker`` signs by default), and a
   fan-out heartbeat on every partition.  Every directive is genuine and in force:
   the store ends with N active restrictions.
2. Baseline: raw aiokafka consumption of the same topic, no decoding.
3. Bootstrap: a fresh subscriber (its real service code and SQLite store, in a
   child process) reads the topic from the beginning, verifying both signatures of
   every directive, until caught up.
4. Memory: a child process opens the bootstrapped store (the index rebuilt from
   SQLite) and reports its resident set size, and the size before opening it.
5. In-process checks on that store: rate and p99 latency, misses (the usual
   answer), hits, and a 10% mix, against raw dict lookups of the same keys.
6. HTTP: the same store served by one uvicorn worker (the subscriber's ASGI app and
   uvicorn configuration: TLS, the clients file, the query log on) in a child
   process; load from another process on loopback, keep-alive TLS connections, each
   with a client certificate, bounded in time: single GET /v1/check and bulk POST
   /v1/check; the same GET in plain HTTP with an API key as the baseline, and uvicorn
   answering a constant as the ceiling of the machine at that moment.

Every figure goes to ``.local/bench-subscriber/bench-subscriber.json`` (the last
line printed), under ``bootstrap.directives_per_s``, ``http.get_per_s_authenticated``,
``checks.in_process_per_s`` and ``memory.rss_mb``, with its baseline beside it.
``--profile`` writes a pyinstrument profile of the bootstrap there too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from results import flatten, write_headline

from services.core.codec import default_registry
from services.core.identifiers import org_code_check_char, ric_check_char, uscc_check_char
from services.credentials import ensure_credentials, read_password
from services.kafka_access import KafkaAccess
from services.topic_metadata import topic_partitions

if TYPE_CHECKING:
    from services.core.signing import SignedHeaders
    from services.embedded.broker import EmbeddedKafka

REPO = Path(__file__).resolve().parents[1]

HOME = REPO / ".local" / "bench-subscriber"
TOPIC = "bench.directives.aviation"
USERS = ("concord-admin", "concord-fanout", "aviation")
AIR = "aviation.no-air-tickets"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ric(n: int) -> str:
    day = datetime(1950, 1, 1, tzinfo=UTC) + timedelta(days=n // 1000)
    first = f"110105{day:%Y%m%d}{n % 1000:03d}"
    return first + ric_check_char(first)


def uscc(n: int) -> str:
    body = f"{n % 10**8:08d}"
    first = "91110000" + body + org_code_check_char(body)
    return first + uscc_check_char(first)


# --------------------------------------------------------------------------- broker and topic


def kafka_headers(signed: SignedHeaders) -> list[tuple[str, str | bytes | None]]:
    """Signed headers in confluent-kafka's header type (its list is invariant in the value's type)."""
    return list(signed.as_kafka())


def broker() -> EmbeddedKafka:
    from services.embedded.broker import EmbeddedKafka
    from services.embedded.libs import ensure_kafka_libs

    creds = ensure_credentials(HOME / "credentials", USERS, legacy=HOME / "credentials.json")
    return EmbeddedKafka(HOME / "broker", creds, libs_dir=ensure_kafka_libs(REPO), heap="1g", tie_to_parent=True)


def ensure_topic(kafka: Any, n: int) -> None:
    """N signed directives on TOPIC (generated once; kept with the broker's data)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        NewTopic,
        ResourcePatternType,
        ResourceType,
    )

    from services.core.models import Heartbeat, heartbeat_key
    from services.core.signing import Domain
    from services.governance.admin import admin_client
    from services.keystore import ensure_keys, load_signer

    admin = admin_client(kafka.access("concord-admin"))
    acls = [
        AclBinding(
            ResourceType.TOPIC, TOPIC, ResourcePatternType.LITERAL, f"User:{u}", "*", op, AclPermissionType.ALLOW
        )
        for u, op in (
            ("concord-fanout", AclOperation.WRITE),
            ("aviation", AclOperation.READ),
            ("aviation", AclOperation.DESCRIBE),
            ("concord-fanout", AclOperation.DESCRIBE),
        )
    ]
    acls.append(
        AclBinding(
            ResourceType.BROKER,
            "kafka-cluster",
            ResourcePatternType.LITERAL,
            "User:aviation",
            "*",
            AclOperation.IDEMPOTENT_WRITE,
            AclPermissionType.ALLOW,
        )
    )
    for f in admin.create_acls(acls).values():
        f.result()
    marker = HOME / f"topic-{n}-batch.done"
    if marker.exists():
        return
    for old in HOME.glob("topic-*.done"):
        old.unlink()
    if TOPIC in admin.list_topics(timeout=10).topics:
        for f in admin.delete_topics([TOPIC]).values():
            f.result()
        time.sleep(2)
    config = {"cleanup.policy": "compact", "message.timestamp.type": "LogAppendTime"}  # as topics/topics.yaml
    for f in admin.create_topics([NewTopic(TOPIC, 3, 1, config=config)]).values():
        f.result()
    time.sleep(2)  # let the authorizer and the metadata catch up
    ensure_keys(HOME / "keys", ["court", "concord-fanout", "aviation"])
    court, fanout = load_signer(HOME / "keys", "court"), load_signer(HOME / "keys", "concord-fanout")
    schemas = default_registry()
    producer = Producer(
        {
            **kafka.access("concord-fanout").confluent_config(),
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }
    )
    now = datetime.now(UTC).replace(microsecond=0)
    valid_from, valid_until = now - timedelta(days=1), now + timedelta(days=3650)
    started = time.monotonic()
    batch = 512
    for first in range(0, n // 2, batch // 2):
        listings = range(first, min(n // 2, first + batch // 2))
        records = [schemas.encode("list_entry_event", listing_event(i, now, valid_from, valid_until)) for i in listings]
        seals = [h.seal() for h in court.sign_batch(Domain.LIST_RECORD, records)]
        out: list[tuple[int, bytes, bytes]] = []
        for i, record, seal in zip(listings, records, seals, strict=True):
            source = {
                "topic": "bench.lists.court",
                "partition": i % 3,
                "offset": i // 3,
                "agency": "court",
                "key_id": court.key_id,
                "signature": seal,
                "record": record,
            }
            for j, r in enumerate((ric(2 * i), ric(2 * i + 1))):
                ref = f"RELATED:LEGAL_REPRESENTATIVE:{j}"
                d = {
                    "directive_id": f"{i:016x}{j:016x}",
                    "action": "APPLY",
                    "subscriber": "aviation",
                    "measure_id": AIR,
                    "measure_kind": "PUNISH",
                    "mou_id": "mou-judgment-defaulters",
                    "mou_version": 1,
                    "origin_agency": "court",
                    "entry_id": f"court-2026-{i:07d}",
                    "entry_version": 1,
                    "program": "court.judgment-defaulters",
                    "subject_ref": ref,
                    "target": {
                        "kind": "PERSON",
                        "role": "LEGAL_REPRESENTATIVE",
                        "names": [{"value": f"Rep {r}", "lang": None}],
                        "identifiers": [{"scheme": "CN_RIC", "value": r}],
                    },
                    "valid_from": valid_from,
                    "valid_until": valid_until,
                    "seq": 1,
                    "cause": "LISTED",
                    "issued_at": now,
                    "source": source,
                }
                out.append((i, f"court/court-2026-{i:07d}|{AIR}|{ref}".encode(), schemas.encode("directive", d)))
        signed = fanout.sign_batch(Domain.DIRECTIVE, [v for _, _, v in out])
        for (i, key, value), headers in zip(out, signed, strict=True):
            while True:
                try:
                    producer.produce(TOPIC, value=value, key=key, partition=i % 3, headers=kafka_headers(headers))
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
        if first and first % 50_000 < batch // 2:
            print(
                f"  generated {2 * first:,} directives ({2 * first / (time.monotonic() - started):,.0f}/s)", flush=True
            )
    for p in range(3):  # the fan-out's sign of life, as it writes one on every partition
        beat = schemas.encode_model(
            Heartbeat(subscriber="aviation", partition=p, issued_by="bench", issued_at=now, interval_ms=5000)
        )
        producer.produce(
            TOPIC,
            value=beat,
            key=heartbeat_key(p).encode(),
            partition=p,
            headers=kafka_headers(fanout.sign(Domain.HEARTBEAT, beat)),
        )
    producer.flush(120)
    marker.write_text(str(n))
    print(f"  generated {n:,} directives in {time.monotonic() - started:.0f}s", flush=True)


def listing_event(i: int, now: datetime, valid_from: datetime, valid_until: datetime) -> dict[str, Any]:
    entry_id = f"court-2026-{i:07d}"
    reps = [ric(2 * i), ric(2 * i + 1)]
    return {
        "event_id": f"court:{entry_id}:1",
        "event_type": "LISTED",
        "entry_id": entry_id,
        "version": 1,
        "list_kind": "SANCTION",
        "program": "court.judgment-defaulters",
        "subject": {
            "kind": "ORGANIZATION",
            "names": [{"value": f"Example Trading {i} Co., Ltd.", "lang": None}],
            "identifiers": [{"scheme": "CN_USCC", "value": uscc(i)}],
            "related_parties": [
                {
                    "role": "LEGAL_REPRESENTATIVE",
                    "kind": "PERSON",
                    "names": [{"value": f"Rep {r}", "lang": None}],
                    "identifiers": [{"scheme": "CN_RIC", "value": r}],
                }
                for r in reps
            ],
        },
        "basis": {
            "decision_no": f"(2026) Jing 01 Zhi {i}",
            "issued_by": "Beijing No.1 Intermediate People's Court",
            "decided_on": now.date(),
        },
        "reason": "Failed to perform an effective judgment despite the ability to perform",
        "listed_on": now.date(),
        "effective_from": valid_from,
        "effective_until": valid_until,
        "publication_until": valid_until,
        "delisting": None,
    }


# --------------------------------------------------------------------------- children


async def raw_consume(access: KafkaAccess) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(
        **access.aiokafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
    )
    await c.start()
    try:
        tps = [TopicPartition(TOPIC, p) for p in await topic_partitions(c, TOPIC)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        t0, n = time.monotonic(), 0
        while [tp for tp in tps if await c.position(tp) < ends[tp]]:
            for records in (await c.getmany(timeout_ms=500, max_records=2000)).values():
                n += len(records)
        took = time.monotonic() - t0
        return {"records": n, "seconds": took, "rate": n / took}
    finally:
        await c.stop()


async def bootstrap(access: KafkaAccess, db: Path, profile: Path | None = None) -> dict[str, float]:
    from services.core.signing import Signer
    from services.keystore import load_keyring
    from services.subscriber.service import SubscriberService
    from services.subscriber.store import DirectiveStore

    svc = SubscriberService(
        agency="aviation",
        access=access,
        store=DirectiveStore(db, "aviation"),
        keyring=load_keyring(HOME / "keys"),
        schemas=default_registry(),
        signer=Signer.generate("aviation", "bench"),
        directive_topic=TOPIC,
        receipts_topic="bench.receipts.aviation",
        progress_threshold=0,
        require_heartbeats=False,
    )
    profiler = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.002)
        profiler.start()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    await svc.start()
    # The store rebuild and its confirmation alone; receipts stay queued in the outbox.
    await svc.bootstrap()
    took = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    if profiler is not None and profile is not None:
        profiler.stop()
        text = profiler.output_text(unicode=True, color=False, show_all=False)
        await asyncio.to_thread(profile.write_text, text)
    await svc.stop(flush_timeout=0)
    active = svc.store.active_count()
    pending = svc.store.pending_count()
    svc.store.close()
    cache = svc.sources
    return {
        "active": active,
        "seconds": took,
        "rate": active / took,
        "rss_mb": rss_mb(),
        "cpu_seconds": cpu,
        "receipts_queued": pending,
        "source_hits": cache.hits,
        "source_misses": cache.misses,
    }


def checks(db: Path, n_ids: int, seconds: float) -> dict[str, Any]:
    import gc

    before = rss_mb()
    from services.subscriber.store import DirectiveStore

    t0 = time.monotonic()
    store = DirectiveStore(db, "aviation")
    opened = time.monotonic() - t0
    gc.collect()
    after = rss_mb()
    rng = random.Random(7)
    hits = [ric(rng.randrange(n_ids)) for _ in range(100_000)]
    misses = [ric(n_ids + rng.randrange(n_ids)) for _ in range(100_000)]
    mixed = [hits[i] if i % 10 == 0 else misses[i] for i in range(100_000)]
    now = time.time()
    check = store.check
    raw = store.index._head  # noqa: SLF001 - the floor: a bare lookup in the index's own dict
    out: dict[str, Any] = {
        "active": store.active_count(),
        "open_seconds": opened,
        "rss_before_mb": before,
        "rss_mb": after,
    }

    def rate(fn: Any, keys: list[str]) -> float:
        done, t = 0, time.perf_counter()
        end = t + seconds / 4
        while time.perf_counter() < end:
            fn(keys)
            done += len(keys)
        return done / (time.perf_counter() - t)

    def run_checks(keys: list[str]) -> None:
        for k in keys:
            check(k, at=now)

    def run_raw(keys: list[str]) -> None:
        get = raw.get
        for k in keys:
            get(k)

    for name, keys in (("miss", misses), ("hit", hits), ("mixed", mixed)):
        assert all(check(k, at=now) for k in keys[:1000]) == (name == "hit")
        lat = []
        pc = time.perf_counter_ns
        for k in keys[:50_000]:
            t = pc()
            check(k, at=now)
            lat.append(pc() - t)
        lat.sort()
        out[name] = {
            "rate": rate(run_checks, keys),
            "raw_rate": rate(run_raw, keys),
            "p50_us": lat[len(lat) // 2] / 1000,
            "p99_us": lat[int(len(lat) * 0.99)] / 1000,
        }
    store.close()
    return out


def serve(db: Path, port: int, mode: str, home: Path) -> None:
    """The subscriber's API on ``db`` as ``concord subscriber run`` serves it (``tls``), or in plain HTTP with
    an API key (``plain``, the baseline); the query log on in both."""
    import uvicorn

    from services.core.signing import Keyring, Signer
    from services.subscriber.api import CheckApp
    from services.subscriber.clients import load_clients
    from services.subscriber.identity import SubscriberHome
    from services.subscriber.querylog import QueryLog, ensure_key
    from services.subscriber.runner import ServeOptions, uvicorn_config
    from services.subscriber.service import SubscriberService
    from services.subscriber.store import DirectiveStore

    ids = SubscriberHome(home)
    svc = SubscriberService(
        agency="aviation",
        access=KafkaAccess(bootstrap="127.0.0.1:9"),
        store=DirectiveStore(db, "aviation"),
        keyring=Keyring(),
        schemas=default_registry(),
        signer=Signer.generate("aviation", "bench"),
        directive_topic=TOPIC,
        receipts_topic="bench.receipts.aviation",
        require_heartbeats=False,
        stale_after=3600,
    )
    svc.confirm(time.time())
    log = QueryLog(db.with_name(f"queries-{mode}.sqlite"), ensure_key(ids.query_log_key))
    log.start()
    app: Any = CheckApp(svc, load_clients(ids.clients), log)
    if mode == "ceiling":
        answer = b'{"id":"x","scheme":null,"status":"clear","restricted":false,"measures":[],"as_of":null}'

        async def ceiling(scope: Any, receive: Any, send: Any) -> None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": answer})

        app = ceiling
    if mode == "tls":
        config = uvicorn_config(app, ServeOptions(certfile=ids.server, client_ca=ids.ca, port=port))
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")
    config.loop = "uvloop"
    print("ready", flush=True)
    uvicorn.Server(config).run()
    print(json.dumps({"logged": log.written}), file=sys.stderr, flush=True)


async def load(
    port: int, n_ids: int, seconds: float, bulk: int, connections: int, mode: str, home: Path
) -> dict[str, float]:
    """Keep-alive HTTP/1.1 requests as fast as the server answers, from ``connections`` connections: over TLS
    with the counter's client certificate (``tls``), or in plain HTTP with the counter's API key."""
    import ssl

    from services.subscriber.identity import SubscriberHome

    ids_home = SubscriberHome(home)
    ctx = None
    auth = ""
    if mode == "tls":
        ctx = ssl.create_default_context(cafile=str(ids_home.ca))
        ctx.load_cert_chain(str(ids_home.client_cert("counter")))
    else:
        auth = f"Authorization: Bearer {ids_home.client_key('counter-key').read_text().strip()}\r\n"
    rng = random.Random(11)
    ids = [ric(rng.randrange(n_ids)) if i % 10 == 0 else ric(n_ids + rng.randrange(n_ids)) for i in range(20_000)]
    counts = [0] * connections
    lat: list[float] = []

    def request(i: int) -> bytes:
        if bulk <= 1:
            return f"GET /v1/check?id={ids[i % len(ids)]}&measure={AIR} HTTP/1.1\r\nHost: b\r\n{auth}\r\n".encode()
        body = json.dumps({"ids": [ids[(i + k) % len(ids)] for k in range(bulk)], "measure": AIR}).encode()
        return (
            f"POST /v1/check HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    prepared = [request(i * 97) for i in range(200)]

    async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> None:
        writer.write(prepared[i % len(prepared)])
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:300]
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)

    async def connect(c: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None
        )
        await ask(reader, writer, c)  # handshake and identity (an API key is verified once) before timing
        return reader, writer

    connected = await asyncio.gather(*(connect(c) for c in range(connections)))
    stop = time.monotonic() + seconds

    async def one(c: int) -> None:
        reader, writer = connected[c]
        i = c
        while time.monotonic() < stop:
            t = time.perf_counter()
            await ask(reader, writer, i)
            lat.append(time.perf_counter() - t)
            counts[c] += 1
            i += 1
        writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one(c) for c in range(connections)))
    took = time.monotonic() - t0
    lat.sort()
    requests = sum(counts)
    return {
        "requests": requests,
        "checks": requests * max(1, bulk),
        "seconds": took,
        "rps": requests / took,
        "checks_per_s": requests * max(1, bulk) / took,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
    }


# --------------------------------------------------------------------------- driver


def child(*args: str, timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"child {args[0]} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    for ln in out.stderr.splitlines():
        if "bootstrap:" in ln:
            print("   ", ln)
    return dict(json.loads(lines[-1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--directives", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=5.0, help="per rate measurement")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--profile", action="store_true", help="a pyinstrument profile of the bootstrap")
    p.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return run_child(args)

    import shutil
    import socket

    n = args.directives
    print(
        f"subscriber benchmark: {n:,} directives, one aviation store ({os.cpu_count()} cores; Kafka {HOME / 'broker'})",
        flush=True,
    )
    kafka = broker()
    kafka.start()
    try:
        ensure_topic(kafka, n)
        # The children read aviation's password from its credentials file, never from their argv.
        env_access = {"bootstrap": kafka.bootstrap, "ca": str(kafka.ca_file), "credentials": str(HOME / "credentials")}
        raw = child("--child", "raw", json.dumps(env_access))
        print(
            f"baseline  raw aiokafka consume, no decoding: {raw['records']:,} records in {raw['seconds']:.1f}s "
            f"= {raw['rate']:,.0f}/s",
            flush=True,
        )
        work = HOME / "run"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        db = work / "aviation.sqlite"
        profile = HOME / "bootstrap-profile.txt" if args.profile else None
        boot = child("--child", "bootstrap", json.dumps(env_access), str(db), str(profile or ""), timeout=1800)
    finally:
        kafka.stop()
    hits = boot["source_hits"] / max(1, boot["source_hits"] + boot["source_misses"])
    print(
        f"bootstrap {boot['active']:,} directives (both signatures each, batch-signed) in {boot['seconds']:.1f}s "
        f"= {boot['rate']:,.0f}/s ({boot['cpu_seconds']:.1f} s CPU); {boot['rate'] / raw['rate']:.3f}x raw consume; "
        f"publisher-signature cache hit rate {hits:.0%}; RSS at the end {boot['rss_mb']:.0f} MB; "
        f"{boot['receipts_queued']:,} receipts queued in the outbox",
        flush=True,
    )
    if profile is not None:
        print(f"          profile: {profile}")

    chk = child("--child", "checks", str(db), str(n), str(args.seconds))
    print(
        f"memory    store with {chk['active']:,} active restrictions: RSS {chk['rss_mb']:.0f} MB "
        f"({chk['rss_mb'] - chk['rss_before_mb']:.0f} MB over the {chk['rss_before_mb']:.0f} MB of a process "
        f"without it); opened (index rebuilt from SQLite) in {chk['open_seconds']:.1f}s",
        flush=True,
    )
    for name in ("miss", "hit", "mixed"):
        r = chk[name]
        print(
            f"in-process check ({name:5}): {r['rate']:,.0f}/s, p50 {r['p50_us']:.2f} us, p99 {r['p99_us']:.2f} us; "
            f"{r['rate'] / r['raw_rate']:.2f}x raw dict lookups ({r['raw_rate']:,.0f}/s)",
            flush=True,
        )

    from services.subscriber.identity import SubscriberHome

    ids = SubscriberHome(work / "identity")
    ids.ensure("aviation")
    # The bench measures the server, not the clients' rates: the limiter still counts every request.
    ids.clients.write_text(ids.clients.read_text().replace("/second", "000/second"))
    http: dict[str, dict[str, Any]] = {}
    for mode in ("ceiling", "plain", "tls"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, __file__, "--child", "serve", str(db), str(port), mode, str(ids.root)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            time.sleep(1.0)
            for bulk in (1, 100):
                if mode != "tls" and bulk > 1:
                    continue
                cpu0 = cpu_seconds(server.pid)
                http[f"{mode}-{bulk}"] = result = child(
                    "--child",
                    "load",
                    str(port),
                    str(n),
                    str(args.seconds),
                    str(bulk),
                    str(args.connections),
                    mode,
                    str(ids.root),
                )
                # On a shared machine the server rarely has a core to itself: requests per second of
                # the server's own CPU time is what one worker does with a core.
                result["server_cpu_s"] = cpu_seconds(server.pid) - cpu0
                result["per_server_cpu_s"] = result["requests"] / max(result["server_cpu_s"], 1e-9)
        finally:
            server.terminate()
            server.wait(30)
    ceiling, plain, single, many = http["ceiling-1"], http["plain-1"], http["tls-1"], http["tls-100"]
    print(
        f"HTTP GET  ceiling: uvicorn answering a constant, plain HTTP: {ceiling['rps']:,.0f}/s, "
        f"{ceiling['per_server_cpu_s']:,.0f} per server CPU-second",
        flush=True,
    )
    print(
        f"HTTP GET  /v1/check, one worker, plain HTTP + API key (baseline): {plain['rps']:,.0f} checks/s, "
        f"p99 {plain['p99_ms']:.1f} ms; {plain['per_server_cpu_s']:,.0f} per server CPU-second",
        flush=True,
    )
    print(
        f"HTTP GET  /v1/check, one worker, TLS + client certificate: {single['rps']:,.0f} checks/s, "
        f"p99 {single['p99_ms']:.1f} ms; {single['per_server_cpu_s']:,.0f} per server CPU-second; "
        f"{single['per_server_cpu_s'] / plain['per_server_cpu_s']:.2f}x the baseline per CPU-second, "
        f"{single['rps'] / ceiling['rps']:.2f}x the ceiling "
        f"({args.connections} keep-alive connections, 10% hits, query log on)",
        flush=True,
    )
    print(
        f"HTTP POST /v1/check, one worker, TLS, 100 ids each: {many['checks_per_s']:,.0f} checks/s "
        f"({many['rps']:,.0f} requests/s, p99 {many['p99_ms']:.1f} ms; "
        f"{many['per_server_cpu_s'] * 100:,.0f} checks per server CPU-second)",
        flush=True,
    )
    figures = {
        "directives": n,
        "bootstrap": {
            "directives_per_s": boot["rate"],
            "seconds": boot["seconds"],
            "cpu_seconds": boot["cpu_seconds"],
            "directives_per_cpu_s": boot["active"] / boot["cpu_seconds"],
            "baseline_raw_consume_per_s": raw["rate"],
            "ratio_to_raw": boot["rate"] / raw["rate"],
            "rss_mb_at_end": boot["rss_mb"],
            "source_cache_hit_rate": hits,
        },
        "http": {
            "get_per_s_authenticated": single["rps"],
            "get_p99_ms": single["p99_ms"],
            "get_per_server_cpu_s_authenticated": single["per_server_cpu_s"],
            "baseline_get_per_s_plain_api_key": plain["rps"],
            "baseline_get_per_server_cpu_s_plain_api_key": plain["per_server_cpu_s"],
            "ratio_to_baseline": single["rps"] / plain["rps"],
            "ratio_to_baseline_per_cpu_s": single["per_server_cpu_s"] / plain["per_server_cpu_s"],
            "ceiling_get_per_s": ceiling["rps"],
            "ceiling_get_per_server_cpu_s": ceiling["per_server_cpu_s"],
            "ratio_to_ceiling": single["rps"] / ceiling["rps"],
            "bulk_checks_per_s_authenticated": many["checks_per_s"],
            "connections": args.connections,
        },
        "checks": {
            "in_process_per_s": chk["mixed"]["rate"],
            "baseline_raw_dict_per_s": chk["mixed"]["raw_rate"],
            "ratio_to_raw": chk["mixed"]["rate"] / chk["mixed"]["raw_rate"],
            "miss_per_s": chk["miss"]["rate"],
            "hit_per_s": chk["hit"]["rate"],
            "p99_us": chk["mixed"]["p99_us"],
        },
        "memory": {
            "rss_mb": chk["rss_mb"],
            "baseline_rss_mb_without_store": chk["rss_before_mb"],
            "active_restrictions": chk["active"],
            "open_seconds": chk["open_seconds"],
        },
    }
    print()
    print("final figures (aim):")
    print(
        f"  bootstrap           {boot['rate']:>12,.0f} directives/s, {boot['seconds']:.1f} s for "
        f"{boot['active']:,} ({boot['active'] / boot['cpu_seconds']:,.0f} per CPU-second)  (1,000,000 in <= 60 s)"
    )
    print(
        f"  HTTP GET, TLS+auth  {single['rps']:>12,.0f}/s  ({single['per_server_cpu_s']:,.0f} per server CPU-second)"
        f"  (>= 10,000/s)"
    )
    print(
        f"  in-process checks   {chk['mixed']['rate']:>12,.0f}/s  p99 {chk['mixed']['p99_us']:.2f} us  (>= 1,000,000/s)"
    )
    print(f"  resident memory     {chk['rss_mb']:>12.0f} MB with {chk['active']:,} active  (<= 300 MB)")
    out = HOME / "bench-subscriber.json"
    out.write_text(json.dumps(figures, indent=2))
    write_headline("subscriber", flatten(figures), command="make bench-subscriber", full=out)
    print(out)
    return 0


def run_child(args: argparse.Namespace) -> int:
    kind, *rest = args.child
    result: dict[str, Any]
    if kind in ("raw", "bootstrap"):
        e = json.loads(rest[0])
        access = KafkaAccess(bootstrap=e["bootstrap"], ca_file=Path(e["ca"])).as_principal(
            "aviation", read_password(Path(e["credentials"]), "aviation")
        )
        if kind == "raw":
            result = asyncio.run(raw_consume(access))
        else:
            result = asyncio.run(bootstrap(access, Path(rest[1]), Path(rest[2]) if len(rest) > 2 and rest[2] else None))
    elif kind == "checks":
        result = checks(Path(rest[0]), int(rest[1]), float(rest[2]))
    elif kind == "serve":
        serve(Path(rest[0]), int(rest[1]), rest[2], Path(rest[3]))
        return 0
    elif kind == "load":
        import uvloop

        result = uvloop.run(
            load(int(rest[0]), int(rest[1]), float(rest[2]), int(rest[3]), int(rest[4]), rest[5], Path(rest[6]))
        )
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
