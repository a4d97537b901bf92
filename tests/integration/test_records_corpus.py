"""The corpus test: good records and bad records of every kind through the real
exchange — nothing lost, nothing duplicated, every refusal with its own reason.

The court publishes N good listings with ``concord publish``.  Then a producer
logged in as the court writes M bad records straight to the court's list topic,
one for every refusal the fan-out can see: unsigned, tampered (the signed
commitments, or a disclosure swapped for another person's identifier), forged, an
unknown key, another agency's key, an expired / revoked / not yet valid key, bytes
that are not an Avro record, an unknown schema, an undecodable body, a validly
signed record that breaks the rules, a whole record signed without being sealed,
a Kafka key that is not the entry id, no key at all, a partition its key does not
map to, a stale version and two kinds of replay.  An exact redelivery of a good record is thrown
in as well: it is neither bad nor new, and must change nothing.

When the fan-out has committed its way to the end of the topic, exactly the
expected directives are on the directive topics, every subscriber has
acknowledged exactly those (its receipts), answers the check API accordingly,
and exactly M records sit in quarantine, each with the reason of the bad record
at that topic, partition and offset.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.core.codec import HEADER_LEN, MAGIC, default_registry
from services.core.disclosure import Sealed, seal_record
from services.core.models import (
    Action,
    Directive,
    ListEntryEvent,
    QuarantineRecord,
    Receipt,
    ReceiptStatus,
    SealedListing,
)
from services.core.signing import Domain, PublicKey, Signer
from services.keystore import load_keyring, load_signer, write_keyring
from services.localstack import LocalStack
from services.partitioning import partition_for
from services.subscriber.client import QuestionRejected
from tests.conftest import KafkaCluster
from tests.integration.conftest import make_stack
from tests.integration.support import concord, read_topic
from tests.support import wait_for
from tests.unit.factories import legal_rep, make_ric, make_uscc, organization, person

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROGRAM = "court.judgment-defaulters"
PERSONS = 10
ORGS = 10
N = PERSONS + ORGS
PARTITIONS = 3  # of the court's list topic (topics/topics.yaml)


@dataclass
class Corpus:
    stack: LocalStack
    court: Signer
    market: Signer
    # court keys the registry knows, each unusable in its own way
    expired: Signer
    revoked: Signer
    not_yet_valid: Signer
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def _extra_court_keys(keys_dir: Path, now: datetime) -> tuple[Signer, Signer, Signer]:
    expired = Signer.generate("court", "court-expired")
    revoked = Signer.generate("court", "court-revoked")
    future = Signer.generate("court", "court-not-yet-valid")
    ring = load_keyring(keys_dir)
    ring.add(
        PublicKey("court", expired.key_id, expired.public_bytes(), now - timedelta(days=30), now - timedelta(days=1))
    )
    ring.add(
        PublicKey(
            "court",
            revoked.key_id,
            revoked.public_bytes(),
            now - timedelta(days=30),
            revoked_at=now - timedelta(hours=1),
        )
    )
    ring.add(PublicKey("court", future.key_id, future.public_bytes(), now + timedelta(days=1)))
    write_keyring(keys_dir, ring)  # signed by the registry key, as the admin does
    return expired, revoked, future


@pytest.fixture
def corpus(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> Iterator[Corpus]:
    """An exchange whose keyring also holds expired, revoked and future court keys.

    The keys are added to the keyring and published in the registry between provisioning
    and starting the services (the ``exchange`` fixture cannot do that).
    """
    stack = make_stack(kafka_cluster, tmp_path / "home", unique_ns)
    keys = stack.home / "keys"
    now = datetime.now(UTC)
    expired, revoked, future = _extra_court_keys(keys, now)
    stack.publish_registry()  # the services take their keys from the registry
    try:
        stack.start_all()
        stack.wait_healthy(timeout=120)
        yield Corpus(stack, load_signer(keys, "court"), load_signer(keys, "market"), expired, revoked, future, now)
    finally:
        stack.stop()


# --------------------------------------------------------------------------- records


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def listing(
    entry_id: str, subject: dict[str, Any], now: datetime, *, version: int = 1, **overrides: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "event_id": f"court:{entry_id}:{version}",
        "event_type": "LISTED",
        "entry_id": entry_id,
        "version": version,
        "list_kind": "SANCTION",
        "program": PROGRAM,
        "subject": subject,
        "basis": {
            "decision_no": f"(2026) Zhi {entry_id}",
            "issued_by": "Beijing No.1 Intermediate People's Court",
            "decided_on": (now - timedelta(days=10)).date().isoformat(),
        },
        "reason": "Failed to perform an effective judgment despite the ability to perform",
        "listed_on": now.date().isoformat(),
        "effective_from": _iso(now - timedelta(days=1)),
        "effective_until": _iso(now + timedelta(days=365)),
    }
    rec.update(overrides)
    return rec


def sealed(rec: dict[str, Any]) -> Sealed:
    """``rec`` as the adapter puts it on a list topic: sealed commitments and disclosures."""
    return seal_record(ListEntryEvent.model_validate(rec), default_registry())


def signed(signer: Signer, s: Sealed) -> list[tuple[str, bytes]]:
    return signer.sign(Domain.LIST_RECORD, s.commitments).as_kafka()


def envelope(commitments: bytes, disclosures: Any) -> bytes:
    return default_registry().encode_model(SealedListing(commitments=commitments, disclosures=tuple(disclosures)))


@dataclass(frozen=True)
class Bad:
    reason: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    subject_id: str | None  # an id no good record uses: must stay clear everywhere
    partition: int | None = None  # where to produce it, when not where its key maps


def bad_records(c: Corpus, good: dict[str, dict[str, Any]], stale_entry: str, replay_entry: str) -> list[Bad]:
    """One bad record per refusal reason (two for TAMPERED), in the order they are produced."""
    now = c.now
    out: list[Bad] = []

    def fresh(n: int) -> tuple[str, dict[str, Any]]:
        ric = make_ric(n, area="310101")  # Shanghai: no good record lives there
        return ric, listing(f"bad-{n}", person(ric), now)

    def add(
        reason: str,
        n: int,
        value_of: Any = None,
        signer: Signer | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        key: bytes | str | None = "entry",
        partition: int | None = None,
    ) -> None:
        ric, rec = fresh(n)
        s = sealed(rec)
        value = s.value if value_of is None else value_of(rec, s)
        hdrs = headers if headers is not None else (signed(signer, s) if signer is not None else [])
        k = rec["entry_id"].encode() if key == "entry" else key
        out.append(Bad(reason, k if not isinstance(k, str) else k.encode(), value, hdrs, ric, partition))

    add("UNSIGNED", 1)
    # TAMPERED: signed, then one byte of the signed commitments changed ...
    ric, rec = fresh(2)
    s = sealed(rec)
    tampered = bytearray(s.commitments)
    tampered[-5] ^= 0x01
    out.append(
        Bad("TAMPERED", rec["entry_id"].encode(), envelope(bytes(tampered), s.disclosures), signed(c.court, s), ric)
    )
    # ... or, the commitments intact, a disclosure changed: another person's identifier in its place
    ric, rec = fresh(14)
    s = sealed(rec)
    swapped = [
        d.model_copy(update={"value": d.value.replace(ric, make_ric(15, area="310101"))})
        if d.path == "subject.identifiers[0]"
        else d
        for d in s.disclosures
    ]
    out.append(Bad("TAMPERED", rec["entry_id"].encode(), envelope(s.commitments, swapped), signed(c.court, s), ric))
    # FORGED: the court's key id and the right digest, but a signature by another key
    ric, rec = fresh(3)
    s = sealed(rec)
    forger = Signer("court", c.court.key_id, Ed25519PrivateKey.generate())
    out.append(Bad("FORGED", rec["entry_id"].encode(), s.value, signed(forger, s), ric))
    add("UNKNOWN_KEY", 4, signer=Signer.generate("court", "court-nobody-knows"))
    add("WRONG_AGENCY", 5, signer=c.market)
    add("KEY_EXPIRED", 6, signer=c.expired)
    add("KEY_REVOKED", 7, signer=c.revoked)
    add("KEY_NOT_YET_VALID", 8, signer=c.not_yet_valid)
    add("NOT_SINGLE_OBJECT", 9, lambda _r, _s: b"case_no,version\ncourt-1,1\n", c.court)
    add("UNKNOWN_FINGERPRINT", 10, lambda _r, s: MAGIC + b"\x00" * 8 + s.value[HEADER_LEN:], c.court)
    add("UNDECODABLE", 11, lambda _r, s: s.value[:-40], c.court)
    # INVALID_RECORD: a sanction without a decision, sealed and signed as any other
    ric, rec = fresh(12)
    s = sealed({**rec, "basis": None})
    out.append(Bad("INVALID_RECORD", rec["entry_id"].encode(), s.value, signed(c.court, s), ric))
    add("KEY_MISMATCH", 13, signer=c.court, key=b"some-other-entry")
    add("MISSING_KEY", 16, signer=c.court, key=None)
    # WRONG_PARTITION: keyed by its entry, but produced to a partition its key does not map to
    ric, rec = fresh(17)
    s = sealed(rec)
    right = partition_for(rec["entry_id"], PARTITIONS)
    out.append(
        Bad(
            "WRONG_PARTITION",
            rec["entry_id"].encode(),
            s.value,
            signed(c.court, s),
            ric,
            partition=(right + 1) % PARTITIONS,
        )
    )
    # UNSEALED: a whole record signed as it is, which the fan-out could not forward in parts
    ric, rec = fresh(18)
    legacy = default_registry().encode_model(ListEntryEvent.model_validate(rec))
    out.append(
        Bad("UNSEALED", rec["entry_id"].encode(), legacy, c.court.sign(Domain.LIST_RECORD, legacy).as_kafka(), ric)
    )
    # STALE_VERSION: version 1 of an entry whose version 2 was already published
    stale = sealed({**good[stale_entry], "version": 1, "event_id": f"court:{stale_entry}:1"})
    out.append(Bad("STALE_VERSION", stale_entry.encode(), stale.value, signed(c.court, stale), None))
    # REPLAYED: the same version of an entry with other content ...
    replay = sealed({**good[replay_entry], "reason": "A different statement under a version already published"})
    out.append(Bad("REPLAYED", replay_entry.encode(), replay.value, signed(c.court, replay), None))
    # ... and an event id already used, under a newer version
    reused = sealed({**good[replay_entry], "version": 2, "reason": "Amended, but under the old event id"})
    out.append(Bad("REPLAYED", replay_entry.encode(), reused.value, signed(c.court, reused), None))
    return out


# --------------------------------------------------------------------------- reading the outcome


async def _committed_to_end(cluster: KafkaCluster, group: str, topic: str, partitions: int) -> bool:
    admin = AIOKafkaAdminClient(**cluster.access("concord-admin").aiokafka_kwargs())
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**cluster.access("concord-admin").aiokafka_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return all((committed.get(tp).offset if committed.get(tp) else 0) >= ends[tp] for tp in tps)


def _decode(records: list[Any], cls: type[Any]) -> list[tuple[Any, Any]]:
    """Each record decoded as ``cls``; the fan-out's heartbeats on directive topics are left out."""
    reg = default_registry()
    return [(rec, reg.decode_model(rec.value, cls)) for rec in records if reg.kind_of(rec.value) != "heartbeat"]


def _check(stack: LocalStack, agency: str, ids: list[str]) -> dict[str, str]:
    """The status answered for each id; ``invalid`` for an identifier the API refuses as malformed."""
    out: dict[str, str] = {}
    with stack.check_client(agency) as c:
        for i in ids:
            try:
                out[i] = c.check(i).status
            except QuestionRejected:
                out[i] = "invalid"
    return out


# --------------------------------------------------------------------------- the test


def test_every_good_record_arrives_once_and_every_bad_one_is_quarantined_with_its_reason(
    kafka_cluster: KafkaCluster, corpus: Corpus, tmp_path: Path
) -> None:
    c = corpus
    stack = c.stack
    ns = stack.namespace
    list_topic = stack.world.topic_name("lists", "court", namespace=ns)

    # --- N good listings, through the adapter
    persons = {f"p-{i}": make_ric(i) for i in range(PERSONS)}
    orgs = {f"o-{i}": (make_uscc(40_000_000 + i), make_ric(500 + i, area="110108")) for i in range(ORGS)}
    good: dict[str, dict[str, Any]] = {}
    for entry, ric in persons.items():
        good[entry] = listing(entry, person(ric), c.now)
    for entry, (uscc, rep) in orgs.items():
        good[entry] = listing(entry, organization(uscc, reps=[legal_rep(rep)]), c.now)
    stale_entry, replay_entry = "p-0", "o-0"
    good[stale_entry] = {**good[stale_entry], "version": 2, "event_id": f"court:{stale_entry}:2"}
    export = tmp_path / "good.jsonl"
    export.write_text("".join(json.dumps(r) + "\n" for r in good.values()))
    published = concord(stack.home, "publish", "--agency", "court", str(export))
    assert published.returncode == 0, published.stderr
    assert f"court: published {N} to {list_topic}" in published.stderr

    # --- M bad ones (and one exact redelivery), straight onto the court's topic
    bad = bad_records(c, good, stale_entry, replay_entry)
    assert {b.reason for b in bad} == {
        "UNSIGNED",
        "TAMPERED",
        "FORGED",
        "UNKNOWN_KEY",
        "WRONG_AGENCY",
        "KEY_EXPIRED",
        "KEY_REVOKED",
        "KEY_NOT_YET_VALID",
        "NOT_SINGLE_OBJECT",
        "UNKNOWN_FINGERPRINT",
        "UNDECODABLE",
        "INVALID_RECORD",
        "KEY_MISMATCH",
        "MISSING_KEY",
        "WRONG_PARTITION",
        "UNSEALED",
        "STALE_VERSION",
        "REPLAYED",
    }

    first = next(r for r in read_topic(kafka_cluster, list_topic) if r.key == b"p-1")

    async def produce() -> dict[tuple[int, int], str]:
        producer = AIOKafkaProducer(
            **kafka_cluster.access("court").aiokafka_kwargs(), acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            where: dict[tuple[int, int], str] = {}
            for b in bad:
                meta = await (
                    await producer.send(list_topic, key=b.key, value=b.value, headers=b.headers, partition=b.partition)
                )
                where[(meta.partition, meta.offset)] = b.reason
            # An exact redelivery of a good record (the adapter's bytes again): routed again, not refused.
            await (await producer.send(list_topic, key=b"p-1", value=first.value, headers=list(first.headers)))
            return where
        finally:
            await producer.stop()

    expected_quarantine = asyncio.run(produce())
    assert len(expected_quarantine) == len(bad)

    # --- wait until the fan-out has processed (and committed) the whole topic
    partitions = stack.world.topic_spec("lists", "court", namespace=ns).partitions
    wait_for(
        "fan-out committed to the end of the court's list topic",
        lambda: asyncio.run(_committed_to_end(kafka_cluster, f"{ns}-fanout", list_topic, partitions)),
        timeout=120,
    )

    # --- quarantine: exactly the bad records, each with its reason
    quarantined = _decode(
        read_topic(kafka_cluster, stack.world.topic_name("quarantine", namespace=ns)), QuarantineRecord
    )
    got = {(q.source_partition, q.source_offset): q.reason for _, q in quarantined}
    assert len(quarantined) == len(got), "a record was quarantined twice"
    assert {q.source_topic for _, q in quarantined} == {list_topic}
    assert got == expected_quarantine
    for _, q in quarantined:  # the raw record is kept as it arrived
        b = next(x for x in bad if x.reason == q.reason and x.value == q.value)
        assert q.key == b.key

    # --- directives: per subscriber exactly the expected ones, each APPLY once
    expected = {
        "aviation": {**{e: persons[e] for e in persons}, **{e: orgs[e][1] for e in orgs}},
        "rail": {**{e: persons[e] for e in persons}, **{e: orgs[e][1] for e in orgs}},
        "finance": {e: orgs[e][0] for e in orgs},
        "securities": {},
        "customs": {},
    }
    assert set(expected) == {a.agency_id for a in stack.world.implementers()}
    directive_ids: dict[str, set[str]] = {}
    for agency, want in expected.items():
        topic = stack.world.topic_name("directives", agency, namespace=ns)
        decoded = _decode(read_topic(kafka_cluster, topic), Directive)
        by_id: dict[str, set[bytes]] = defaultdict(set)
        for rec, d in decoded:
            by_id[d.directive_id].add(rec.value)
        assert all(len(v) == 1 for v in by_id.values()), f"{agency}: one directive id, different contents"
        ds = {d.directive_id: d for _, d in decoded}
        assert {d.action for d in ds.values()} <= {Action.APPLY}
        assert Counter(d.entry_id for d in ds.values()) == Counter(list(want)), agency
        assert {d.target.identifiers[0].value for d in ds.values()} == set(want.values()), agency
        assert {d.entry_version for d in ds.values() if d.entry_id == stale_entry} <= {2}
        directive_ids[agency] = set(ds)

    # --- receipts: every subscriber applied exactly those directives, once
    def applied(agency: str) -> list[Receipt]:
        topic = stack.world.topic_name("receipts", agency, namespace=ns)
        return [r for _, r in _decode(read_topic(kafka_cluster, topic), Receipt)]

    def applied_all(agency: str, ids: set[str]) -> bool:
        return {r.directive_id for r in applied(agency)} >= ids

    for agency, ids in directive_ids.items():
        wait_for(f"receipts of {agency}", functools.partial(applied_all, agency, ids), timeout=60)
        receipts = applied(agency)
        assert [r.status for r in receipts] == [ReceiptStatus.APPLIED] * len(ids), agency
        assert {r.directive_id for r in receipts} == ids

    # --- and the check API answers accordingly
    bad_ids = [b.subject_id for b in bad if b.subject_id]
    for agency, want in expected.items():
        answers = _check(stack, agency, sorted(want.values()) + bad_ids)
        assert all(answers[i] == "restricted" for i in want.values()), agency
        # A refused record restricts nobody: its subject is clear, or not even a valid identifier.
        assert all(answers[i] in ("clear", "invalid") for i in bad_ids), (agency, answers)
