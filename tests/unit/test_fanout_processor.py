"""The fan-out's handlers on a real RocksDB state partition, without a broker.

The engine's Kafka side (transactions, rebalances, the changelog) is exercised by the
integration and fault tests; here each test drives :class:`Fanout` with records built
as confluent-kafka messages, a transaction that records what would be produced, and a
clock the test moves, and looks at the state partition and the gauges.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Message

from services.core.codec import default_registry
from services.core.models import (
    Action,
    Cause,
    Directive,
    Heartbeat,
    Notice,
    QuarantineRecord,
    Receipt,
    ReceiptStatus,
)
from services.core.registry import RegistrySnapshot
from services.core.signing import Domain, SignedHeaders, Signer
from services.core.world import World, parse_world
from services.fanout import store as st
from services.fanout.app import Fanout, FanoutConfig
from services.fanout.metrics import FanoutMetrics
from services.fanout.store import PartitionStore
from services.governance.registry import RegistryStatus
from services.kafka_access import KafkaAccess
from services.partitioning import partition_for
from tests.support import kafka_headers
from tests.unit.factories import (
    delisting,
    entry,
    keyring,
    make_ric,
    make_uscc,
    organization,
    person,
    real_world,
    sealed,
)

pytestmark = pytest.mark.unit

NS = "t"
COURT = Signer.generate("court", "court-k1")
FANOUT = Signer.generate("concord-fanout", "fanout-k1")
AVIATION = Signer.generate("aviation", "aviation-k1")
RAIL = Signer.generate("rail", "rail-k1")
FINANCE = Signer.generate("finance", "finance-k1")
RING = keyring(COURT, FANOUT, AVIATION, RAIL, FINANCE)
SCHEMAS = default_registry()
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
JD = "mou-judgment-defaulters"


@dataclass
class Tx:
    """A transaction that records what the fan-out produces in it."""

    sent: list[tuple[str, bytes | None, bytes | None, int, list[tuple[str, bytes]] | None]] = field(
        default_factory=list
    )

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.sent.append((topic, key, value, partition, headers))

    def directives(self) -> list[Directive]:
        return [
            SCHEMAS.decode_model(v, Directive)
            for t, _, v, _, _ in self.sent
            if ".directives." in t and v is not None and SCHEMAS.split(v)[0].name == "directive"
        ]

    def of(self, kind: str) -> list[tuple[str, bytes | None, bytes, int, list[tuple[str, bytes]] | None]]:
        return [(t, k, v, p, h) for t, k, v, p, h in self.sent if v is not None and SCHEMAS.split(v)[0].name == kind]


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Rig:
    fanout: Fanout
    stores: dict[int, PartitionStore]
    clock: Clock
    tx: Tx = field(default_factory=Tx)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def commit(self) -> None:
        self.fanout.before_commit(self.tx)
        for s in self.stores.values():
            s.apply(None)
        self.fanout.after_commit()

    def abort(self) -> None:
        for s in self.stores.values():
            s.discard()
        self.fanout.after_abort()

    def _next(self, topic: str, p: int) -> int:
        n = self.offsets.get((topic, p), 0)
        self.offsets[(topic, p)] = n + 1
        return n

    def listing(self, event: Any, *, key: bytes | Literal["auto"] | None = "auto", partition: int | None = None) -> int:
        record, signed = sealed(event, signer=COURT)
        headers = kafka_headers(signed.as_kafka())
        k = event.entry_id.encode() if isinstance(key, str) else key
        p = partition_for(event.entry_id, 3) if partition is None else partition
        topic = f"{NS}.lists.court"
        msg = Message(
            topic=topic,
            partition=p,
            offset=self._next(topic, p),
            key=k,
            value=record,
            headers=headers,
            timestamp=(TIMESTAMP_LOG_APPEND_TIME, int(self.clock().timestamp() * 1000)),
        )
        self.fanout.handle(msg, self.stores[p], self.tx)
        return p

    def receipt(self, d: Directive, signer: Signer, status: ReceiptStatus = ReceiptStatus.APPLIED) -> None:
        r = Receipt(
            directive_id=d.directive_id,
            agency=signer.agency,
            status=status,
            directive_key=d.key,
            seq=d.seq,
            recorded_at=self.clock(),
        )
        value = SCHEMAS.encode_model(r)
        p = partition_for(d.entry_id, 3)
        topic = f"{NS}.receipts.{signer.agency}"
        msg = Message(
            topic=topic,
            partition=p,
            offset=self._next(topic, p),
            key=d.key.encode(),
            value=value,
            headers=kafka_headers(signer.sign(Domain.RECEIPT, value).as_kafka()),
            timestamp=(1, int(self.clock().timestamp() * 1000)),
        )
        self.fanout.handle(msg, self.stores[p], self.tx)

    def work(self) -> int:
        """One round of due work now, whatever its pacing (the loop runs it every tick)."""
        self.fanout._next_tick = 0.0  # noqa: SLF001 - the worker paces itself; the test runs it now
        self.fanout.has_work(self.stores)
        return self.fanout.work(self.stores, self.tx)

    def gauges(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        self.fanout._update_gauges(self.stores)  # noqa: SLF001 - the loop calls it every second
        reg = self.fanout.metrics.registry
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for fam in reg.collect() for s in fam.samples}


def _rig(
    tmp_path: Path,
    world: World | None = None,
    *,
    sweep_batch: int = 500,
    stores: dict[int, PartitionStore] | None = None,
    clock: Clock | None = None,
) -> Rig:
    clock = clock or Clock(T0)
    cfg = FanoutConfig(
        access=KafkaAccess(bootstrap="127.0.0.1:1"),
        world=world or real_world(),
        keyring=RING,
        schemas=SCHEMAS,
        signer=FANOUT,
        key_secret=b"k" * 32,
        namespace=NS,
        name="w1",
        state_dir=tmp_path,
        metrics=FanoutMetrics.create(),
        clock=clock,
        sweep_batch=sweep_batch,
    )
    fanout = Fanout(cfg)
    stores = stores if stores is not None else {p: PartitionStore(tmp_path / f"p{p}", p, cache_mb=0) for p in range(3)}
    fanout.assigned(stores)
    return Rig(fanout, stores, clock)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = _rig(tmp_path)
    yield r
    for s in r.stores.values():
        s.close()


def _person(n: int, until: datetime | None = None) -> Any:
    extra: dict[str, Any] = {}
    if until is not None:
        extra = {"effective_until": until.isoformat(), "publication_until": until.isoformat()}
    return entry(entry_id=f"p-{n}", subject=person(make_ric(n)), **extra)


def _company(n: int) -> Any:
    return entry(entry_id=f"c-{n}", subject=organization(make_uscc(5000 + n)))


def test_a_listing_commits_its_directives_to_the_entry_partition_and_its_receipts_close_them(rig: Rig) -> None:
    p = rig.listing(_company(1))
    assert rig.tx.directives() == []  # nothing leaves before the transaction seals its batches
    rig.commit()
    sent = rig.tx.directives()
    assert {(d.subscriber, d.measure_id) for d in sent} == {
        ("finance", "finance.procurement-ban"),
        ("aviation", "aviation.no-air-tickets"),
        ("rail", "rail.no-high-speed-rail"),
    }
    assert {part for t, _, _, part, _ in rig.tx.sent if ".directives." in t} == {p}
    # Kafka keys are pseudonyms: a directive key names the subject's identifier, its topic key does not.
    keys = [k for t, k, _, _, _ in rig.tx.sent if ".directives." in t]
    assert keys and all(k is not None and len(k) == 32 and b"CN_" not in k for k in keys)
    assert len(set(keys)) == len(keys)
    assert all(d.source is not None and d.source.partition == p for d in sent)
    state = rig.stores[p].get(st.entry_key("court/c-1"))
    assert state is not None
    assert rig.stores[p].counters.entries == 1
    g = rig.gauges()
    assert g[("concord_fanout_receipts_outstanding", (("mou", JD), ("subscriber", "finance")))] == 1

    for d in sent:
        rig.receipt(d, {"finance": FINANCE, "aviation": AVIATION, "rail": RAIL}[d.subscriber])
    rig.commit()
    g = rig.gauges()
    assert g[("concord_fanout_receipts_outstanding", (("mou", JD), ("subscriber", "finance")))] == 0
    assert g[("concord_fanout_receipts_outstanding", (("mou", JD), ("subscriber", "aviation")))] == 0
    assert g[("concord_fanout_receipts_total", (("status", "APPLIED"),))] == 3
    assert not list(rig.stores[p].scan(st.OUTSTANDING))


def test_a_receipt_signed_by_another_agency_closes_nothing(rig: Rig) -> None:
    rig.listing(_person(1))
    rig.commit()
    (air,) = [d for d in rig.tx.directives() if d.subscriber == "aviation"]
    rig.receipt(air, RAIL)  # rail, on its own receipts topic, answering for aviation's directive
    rig.commit()
    g = rig.gauges()
    assert g[("concord_fanout_receipts_outstanding", (("mou", JD), ("subscriber", "aviation")))] == 1
    assert g[("concord_fanout_receipts_refused_total", ())] == 1


def test_an_expiry_is_read_from_the_index_and_its_lift_waits_for_a_receipt(rig: Rig) -> None:
    until = T0 + timedelta(hours=1)
    p = rig.listing(_person(2, until))
    rig.commit()
    applied = rig.tx.directives()
    for d in applied:
        rig.receipt(d, AVIATION if d.subscriber == "aviation" else RAIL)
    rig.commit()
    assert [k for k, _ in rig.stores[p].scan(st.DEADLINE)] == [st.deadline_key(until.timestamp() * 1000, "court/p-2")]

    rig.clock.at = until + timedelta(seconds=90)
    g = rig.gauges()  # the index's due part: no LIFT issued yet
    fanout_stage = (("mou", JD), ("stage", "fanout"), ("subscriber", "aviation"))
    assert g[("concord_fanout_expired_unlifted", fanout_stage)] == 1
    assert g[("concord_fanout_expired_unlifted_seconds", fanout_stage)] == 90

    rig.tx = Tx()
    assert rig.work() >= 1
    rig.commit()
    lifts = rig.tx.directives()
    assert {(d.action, d.cause) for d in lifts} == {(Action.LIFT, Cause.PERIOD_ENDED)}
    assert {d.subscriber for d in lifts} == {"aviation", "rail"}
    assert not list(rig.stores[p].scan(st.DEADLINE))
    g = rig.gauges()
    receipt_stage = (("mou", JD), ("stage", "receipt"), ("subscriber", "aviation"))
    assert g[("concord_fanout_expired_unlifted", fanout_stage)] == 0
    assert g[("concord_fanout_expired_unlifted", receipt_stage)] == 1
    for d in lifts:
        rig.receipt(d, AVIATION if d.subscriber == "aviation" else RAIL, ReceiptStatus.LIFTED)
    rig.commit()
    assert rig.gauges()[("concord_fanout_expired_unlifted", receipt_stage)] == 0
    rig.tx = Tx()
    rig.work()
    assert rig.tx.directives() == []  # nothing is due any more


def test_a_world_change_re_evaluates_every_entry_in_bounded_steps_and_resumes(tmp_path: Path) -> None:
    first = _rig(tmp_path)
    for n in range(12):
        first.listing(_company(n))
    first.work()  # the partitions record the epoch they were evaluated under
    first.commit()
    docs = copy.deepcopy(real_world().to_documents())
    jd = docs[f"mous/{JD}.yaml"]["versions"][0]
    jd["measures"] = [m for m in jd["measures"] if m["measure_id"] != "finance.procurement-ban"]
    jd["visible_fields"].pop("finance")
    jd["signatories"] = [a for a in jd["signatories"] if a != "finance"]
    changed = parse_world(docs)

    def reevaluated(r: Rig) -> float:
        return r.fanout.metrics.registry.get_sample_value("concord_fanout_reevaluated_total") or 0.0

    second = _rig(tmp_path, changed, sweep_batch=2, stores=first.stores)
    second.work()
    second.commit()
    assert 0 < reevaluated(second) <= 2 * 3  # at most a batch per partition per step
    # The worker stops mid-sweep; the next one resumes from the cursor in the state, not from the start.
    third = _rig(tmp_path, changed, sweep_batch=2, stores=first.stores)
    steps = 0
    while third.fanout._sweeping or steps == 0:  # noqa: SLF001 - the partitions still sweeping
        before = reevaluated(third)
        third.work()
        third.commit()
        assert reevaluated(third) - before <= 2 * 3
        steps += 1
        assert steps < 50
    assert reevaluated(second) + reevaluated(third) == 12
    held = {}
    for p, store in first.stores.items():
        for key, raw in store.scan(st.ENTRY):
            held[key] = (p, raw)
    assert len(held) == 12
    from services.core.routing import EntryState

    for _, raw in held.values():
        state = EntryState.model_validate_json(raw)
        assert {d.measure_id for d in state.applied()} == {"aviation.no-air-tickets", "rail.no-high-speed-rail"}
        fin = [d for d in state.directives.values() if d.measure_id == "finance.procurement-ban"]
        assert [(d.action, d.cause) for d in fin] == [(Action.LIFT, Cause.MOU_CHANGED)]
    for store in first.stores.values():
        store.close()


def test_records_without_their_key_or_on_another_partition_are_quarantined(rig: Rig) -> None:
    ev = _person(3)
    right = partition_for(ev.entry_id, 3)
    rig.listing(ev, key=None)
    rig.listing(ev, partition=(right + 1) % 3)
    rig.listing(ev, key=b"another-entry")
    rig.commit()
    reasons = [SCHEMAS.decode_model(v, QuarantineRecord).reason for _, _, v, _, _ in rig.tx.of("quarantine_record")]
    assert reasons == ["MISSING_KEY", "WRONG_PARTITION", "KEY_MISMATCH"]
    assert rig.tx.directives() == []
    assert all(s.counters.entries == 0 for s in rig.stores.values())


def test_an_aborted_transaction_leaves_the_state_as_it_was(rig: Rig) -> None:
    p = rig.listing(_person(4))
    assert rig.stores[p].counters.entries == 1
    rig.abort()
    assert rig.stores[p].get(st.entry_key("court/p-4")) is None
    assert rig.stores[p].counters.entries == 0
    rig.tx = Tx()
    rig.commit()
    assert rig.tx.directives() == []


def test_heartbeats_go_to_every_directive_partition_this_worker_writes(tmp_path: Path) -> None:
    r = _rig(tmp_path, stores={1: PartitionStore(tmp_path / "p1", 1, cache_mb=0)})
    r.work()
    beats = r.tx.of("heartbeat")
    agencies = {a.agency_id for a in real_world().implementers()}
    assert {(t.rsplit(".", 1)[1], p) for t, _, _, p, _ in beats} == {(a, 1) for a in agencies}
    _, k, v, _, h = beats[0]
    hb = SCHEMAS.decode_model(v, Heartbeat)
    assert (hb.partition, hb.issued_by, k) == (1, "w1", b"heartbeat/1")
    RING.verify(Domain.HEARTBEAT, v, SignedHeaders.from_kafka(h), expected_agency="concord-fanout", at=T0)
    r.stores[1].close()


def test_a_new_version_supersedes_the_pending_directive_of_its_key(rig: Rig) -> None:
    ev = _person(5)
    p = rig.listing(ev)
    rig.commit()
    delisted = entry(
        entry_id="p-5", subject=person(make_ric(5)), version=2, event_type="DELISTED", delisting={"reason": "PERFORMED"}
    )
    rig.listing(delisted)
    rig.commit()
    # Only the LIFTs are outstanding: the APPLYs they replaced need no receipt any more.
    outstanding = [k for k, _ in rig.stores[p].scan(st.OUTSTANDING)]
    lifts = [d for d in rig.tx.directives() if d.action is Action.LIFT]
    assert sorted(outstanding) == sorted(st.OUTSTANDING + d.directive_id.encode() for d in lifts)


def test_each_directive_is_told_to_the_listing_agency_as_a_signed_notice(rig: Rig) -> None:
    rig.listing(_company(6))
    rig.commit()
    notices = rig.tx.of("notice")
    assert {t for t, *_ in notices} == {f"{NS}.notices.court"}
    got = {SCHEMAS.decode_model(v, Notice).measure_id: (k, v, h) for _, k, v, _, h in notices}
    directives = {d.measure_id: d for d in rig.tx.directives()}
    assert set(got) == set(directives)
    key, value, headers = got["finance.procurement-ban"]
    notice = SCHEMAS.decode_model(value, Notice)
    assert (notice.notice_id, notice.implementing_agency, notice.action) == (
        directives["finance.procurement-ban"].directive_id,
        "finance",
        Action.APPLY,
    )
    assert notice.legal_basis.startswith("Government Procurement Law")
    assert key == next(k for t, k, _, _, _ in rig.tx.sent if ".directives.finance" in t)  # the same pseudonym
    RING.verify(Domain.NOTICE, value, SignedHeaders.from_kafka(headers), expected_agency="concord-fanout", at=T0)


def test_an_ended_entry_leaves_the_state_after_its_retention_with_tombstones_for_its_keys(rig: Rig) -> None:
    p = rig.listing(_person(7))
    rig.commit()
    applied = rig.tx.directives()
    delisted = entry(
        entry_id="p-7", subject=person(make_ric(7)), version=2, event_type="DELISTED", delisting={"reason": "PERFORMED"}
    )
    rig.listing(delisted)
    rig.commit()
    for d in applied:
        rig.receipt(d, AVIATION if d.subscriber == "aviation" else RAIL)
    rig.commit()
    assert rig.stores[p].get(st.entry_key("court/p-7")) is not None
    rig.clock.at = T0 + timedelta(days=real_world().retention.ended_entries_days, seconds=1)
    rig.tx = Tx()
    rig.work()
    rig.commit()
    assert rig.stores[p].get(st.entry_key("court/p-7")) is None
    assert not list(rig.stores[p].scan(st.PURGE)) and not list(rig.stores[p].scan(st.OUTSTANDING))
    assert rig.stores[p].counters.entries == 0
    tombstones = [(t, k) for t, k, v, _, _ in rig.tx.sent if ".directives." in t and v is None]
    assert sorted(t for t, _ in tombstones) == [f"{NS}.directives.aviation", f"{NS}.directives.rail"]
    assert all(k is not None and b"CN_" not in k for _, k in tombstones)


def test_a_listing_past_its_publication_applies_nothing_and_leaves_at_once(rig: Rig) -> None:
    ended = T0 + timedelta(hours=1)
    ev = entry(
        entry_id="p-8",
        subject=person(make_ric(8)),
        effective_until=(T0 + timedelta(days=400)).isoformat(),
        publication_until=ended.isoformat(),
    )
    p = rig.listing(ev)
    rig.commit()
    assert {d.valid_until for d in rig.tx.directives()} == {ended}  # capped by the publication period
    rig.clock.at = ended + timedelta(seconds=1)
    rig.tx = Tx()
    rig.work()
    rig.commit()
    assert {d.cause for d in rig.tx.directives()} == {Cause.PERIOD_ENDED}
    rig.tx = Tx()
    rig.work()
    rig.commit()
    assert rig.stores[p].get(st.entry_key("court/p-8")) is None


# --- the signed registry: followed live, holding APPLYs while it is stale ------------------------------


class FakeWatch:
    """What the fan-out reads of a RegistryWatch: the newest snapshot and whether it is fresh."""

    def __init__(self, world: World) -> None:
        self.snapshot = RegistrySnapshot(world, RING, T0, 1)
        self.fresh = True
        self.last_caught_up = 0.0
        self.max_age = timedelta(hours=1)

    def status(self, now: datetime | None = None) -> RegistryStatus:
        snap = self.snapshot
        return RegistryStatus(
            self.fresh, None if self.fresh else "older than allowed (test)", snap.serial, snap.published_at, 0.0
        )

    def catch_up(self, timeout: float = 0.0) -> RegistrySnapshot:
        return self.snapshot

    def refresh_credentials(self, access: KafkaAccess) -> None:
        return None

    def publish(self, world: World, *, fresh: bool = True) -> None:
        self.snapshot = RegistrySnapshot(world, RING, T0, self.snapshot.serial + 1)
        self.fresh = fresh


def _followed(tmp_path: Path) -> tuple[Rig, FakeWatch]:
    watch = FakeWatch(real_world())
    r = _rig(tmp_path)
    r.fanout.cfg.registry = watch  # type: ignore[assignment]  # a stand-in with the same reads
    r.fanout.serial = 1
    return r, watch


def _tick(r: Rig) -> None:
    """Let the worker look at the registry now (it looks every 0.2 s and re-judges its epoch every second)."""
    r.fanout._next_follow = 0.0  # noqa: SLF001 - as in Rig.work
    r.fanout._epoch_at = 0.0  # noqa: SLF001 - as in Rig.work
    for _ in range(20):
        r.work()
        if not r.fanout._sweeping:  # noqa: SLF001 - a sweep in progress has no public view
            break
    r.commit()


def test_directives_name_the_registry_serial_they_were_routed_by(tmp_path: Path) -> None:
    r, _ = _followed(tmp_path)
    r.listing(_company(1))
    r.commit()
    assert {d.registry_serial for d in r.tx.directives()} == {1}


def test_a_stale_registry_withholds_applys_lets_lifts_flow_and_a_fresh_one_issues_what_was_withheld(
    tmp_path: Path,
) -> None:
    r, watch = _followed(tmp_path)
    r.listing(_company(1))
    _tick(r)
    watch.fresh = False
    _tick(r)
    assert r.fanout.registry_status is not None and not r.fanout.registry_status.fresh
    sent = len(r.tx.directives())
    r.listing(_company(2))  # a new listing while stale: nothing applied
    delisted = entry(
        entry_id="c-1",
        subject=organization(make_uscc(5001)),
        event_type="DELISTED",
        version=2,
        event_id="court:c-1:2",
        delisting=delisting(),
    )
    r.listing(delisted)  # the delisting of the first: its LIFTs flow
    r.commit()
    during = r.tx.directives()[sent:]
    assert {(d.entry_id, d.action) for d in during} == {("c-1", Action.LIFT)}
    # A fresh publication: the partitions were marked as evaluated while holding, so they are swept and
    # the withheld APPLYs go out, routed by the new serial.
    watch.publish(real_world())
    _tick(r)
    after = r.tx.directives()[sent + len(during) :]
    assert {(d.entry_id, d.action, d.registry_serial) for d in after} == {("c-2", Action.APPLY, 2)}
    assert {d.measure_id for d in after} == {
        "finance.procurement-ban",
        "aviation.no-air-tickets",
        "rail.no-high-speed-rail",
    }


def test_a_listing_withheld_while_stale_is_kept_however_old_and_issued_when_fresh(tmp_path: Path) -> None:
    r, watch = _followed(tmp_path)
    watch.fresh = False
    _tick(r)
    sent = len(r.tx.directives())
    old = T0 - timedelta(days=real_world().retention.ended_entries_days + 30)
    listed_long_ago = entry(entry_id="c-9", subject=organization(make_uscc(5009)), effective_from=old.isoformat())
    p = r.listing(listed_long_ago)  # nothing applied while stale: not an ended entry, whatever its age
    r.commit()
    _tick(r)
    _tick(r)
    assert r.stores[p].get(st.entry_key("court/c-9")) is not None
    watch.publish(real_world())
    _tick(r)
    assert {(d.entry_id, d.action) for d in r.tx.directives()[sent:]} == {("c-9", Action.APPLY)}


def test_a_newer_publication_changes_the_routing_live(tmp_path: Path) -> None:
    r, watch = _followed(tmp_path)
    r.listing(_company(1))
    _tick(r)
    sent = len(r.tx.directives())
    docs = copy.deepcopy(real_world().to_documents())
    docs[f"mous/{JD}.yaml"]["versions"][0]["terminated_on"] = T0.date().isoformat()
    watch.publish(parse_world(docs))
    _tick(r)
    lifted = r.tx.directives()[sent:]
    assert lifted and {(d.action, d.cause, d.registry_serial) for d in lifted} == {(Action.LIFT, Cause.MOU_CHANGED, 2)}
