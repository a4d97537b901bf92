"""``concord audit``: read the logs, prove every measure in force is required and every
required one is held — by the directive topics, and by each agency's receipts.

Everything is read from the beginning by explicit assignment with a principal
allowed to read it (``concord-audit`` by default), and every record is verified
exactly as the fan-out and subscribers verify it: the audit trusts signatures,
not the services it audits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.core.audit import Finding, Held, audit
from services.core.codec import SchemaRegistry
from services.core.errors import CodecError, SignatureInvalid
from services.core.intake import Refused, admit_directive, admit_list_record
from services.core.models import Directive, ListEntryEvent, Receipt, TargetSubject
from services.core.signing import Domain, Keyring, SignedHeaders
from services.core.world import World
from services.kafka_access import KafkaAccess
from services.partitioning import partition_for
from services.topic_metadata import read_to_end


@dataclass
class AuditReport:
    events: int = 0
    refused_events: int = 0
    findings_topics: list[Finding] = field(default_factory=list)
    findings_stores: dict[str, list[Finding]] = field(default_factory=dict)
    unanswered: dict[str, list[str]] = field(default_factory=dict)  # subscriber -> directive ids

    @property
    def clean(self) -> bool:
        return not self.findings_topics and not any(self.findings_stores.values()) and not any(self.unanswered.values())

    def lines(self) -> list[str]:
        out = [f"list records: {self.events} accepted, {self.refused_events} refused (quarantined)"]
        out.append(f"directive topics: {len(self.findings_topics)} finding(s)")
        out += [f"  {f}" for f in self.findings_topics]
        for agency, fs in sorted(self.findings_stores.items()):
            out.append(f"store of {agency}: {len(fs)} finding(s)")
            out += [f"  {f}" for f in fs]
        for agency, ids in sorted(self.unanswered.items()):
            if ids:
                out.append(f"receipts of {agency}: {len(ids)} latest directive(s) without a receipt")
        out.append("CLEAN: every required measure is held, every lifted one is lifted" if self.clean else "NOT CLEAN")
        return out


def latest_of(directives: Iterable[Directive]) -> dict[str, Directive]:
    """The latest directive of every key: the newest entry version, then the highest sequence number
    (a higher sequence never makes an older version the latest, as subscribers hold it too)."""
    latest: dict[str, Directive] = {}
    for d in directives:
        cur = latest.get(d.key)
        if cur is None or (d.entry_version, d.seq) >= (cur.entry_version, cur.seq):
            latest[d.key] = d
    return latest


def held_from_directives(directives: Iterable[Directive]) -> dict[str, Held]:
    latest = latest_of(directives)
    return {
        k: Held(d.action.value, d.subscriber, d.mou_id, d.mou_version, d.valid_until, d.valid_from, d.target)
        for k, d in latest.items()
    }


def held_from_store(db: Path, agency: str) -> dict[str, Held]:
    """An agency's store as the audit sees it (read-only)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT key, action, mou_id, mou_version, valid_until, valid_from, target FROM directives"
        ).fetchall()
    finally:
        con.close()

    def when(ts: float | None) -> datetime | None:
        return datetime.fromtimestamp(ts, UTC) if ts is not None else None

    return {
        k: Held(a, agency, m, v, when(u), when(f), TargetSubject.model_validate_json(t)) for k, a, m, v, u, f, t in rows
    }


async def verified_list_events(
    access: KafkaAccess, world: World, namespace: str, keyring: Keyring, schemas: SchemaRegistry
) -> tuple[list[tuple[str, ListEntryEvent]], int]:
    """Every list record on ``namespace``'s list topics that is admitted, as (publishing agency, event) in
    topic order, and how many were refused."""
    specs = world.topic_specs(namespace)
    lists = {s.name: s.agency for s in specs if s.kind == "lists" and s.agency}
    partitions = {s.name: s.partitions for s in specs if s.kind == "lists"}
    events: list[tuple[str, ListEntryEvent]] = []
    refused = 0
    for topic, rec in await read_to_end(access, lists):
        try:
            acc = admit_list_record(
                origin=lists[topic],
                topic=topic,
                partition=rec.partition,
                offset=rec.offset,
                key=rec.key,
                value=rec.value,
                headers=rec.headers,
                timestamp_ms=rec.timestamp,
                keyring=keyring,
                schemas=schemas,
                world=world,
                key_partition=partition_for(rec.key, partitions[topic]) if rec.key else None,
            )
        except Refused:
            refused += 1
            continue
        events.append((acc.origin, acc.event))
    return events, refused


async def verified_directives(
    access: KafkaAccess, world: World, namespace: str, keyring: Keyring, schemas: SchemaRegistry
) -> tuple[list[Directive], int]:
    """Every directive on ``namespace``'s directive topics that is admitted, in topic order, and how many were
    refused; a tombstone (the key's retention ended) and the fan-out's heartbeats are neither."""
    topics = {s.name: s.agency for s in world.topic_specs(namespace) if s.kind == "directives" and s.agency}
    admitted: list[Directive] = []
    refused = 0
    for topic, rec in await read_to_end(access, topics):
        if rec.value is None or schemas.kind_of(rec.value) == "heartbeat":
            continue
        try:
            admitted.append(
                admit_directive(
                    agency=topics[topic],
                    value=rec.value,
                    headers=rec.headers,
                    timestamp_ms=rec.timestamp,
                    keyring=keyring,
                    schemas=schemas,
                    world=world,
                )
            )
        except Refused:
            refused += 1
    return admitted, refused


async def verified_receipts(
    access: KafkaAccess, world: World, namespace: str, keyring: Keyring, schemas: SchemaRegistry
) -> tuple[list[Receipt], int]:
    """Every receipt on ``namespace``'s receipt topics signed by the agency that owns the topic, in topic
    order, and how many were refused; a tombstone is neither."""
    topics = {s.name: s.agency for s in world.topic_specs(namespace) if s.kind == "receipts" and s.agency}
    receipts: list[Receipt] = []
    refused = 0
    for topic, rec in await read_to_end(access, topics):
        if rec.value is None:
            continue
        try:
            keyring.verify(
                Domain.RECEIPT,
                rec.value,
                SignedHeaders.from_kafka(rec.headers),
                expected_agency=topics[topic],
                at=datetime.fromtimestamp(rec.timestamp / 1000, UTC),
            )
            receipts.append(schemas.decode_model(rec.value, Receipt))
        except (SignatureInvalid, CodecError):
            refused += 1
    return receipts, refused


async def run_audit(
    *,
    access: KafkaAccess,
    world: World,
    namespace: str,
    keyring: Keyring,
    schemas: SchemaRegistry,
    stores: dict[str, Path] | None = None,
    now: datetime | None = None,
) -> AuditReport:
    report = AuditReport()
    events, report.refused_events = await verified_list_events(access, world, namespace, keyring, schemas)
    report.events = len(events)
    now = now or datetime.now(UTC)
    held, _ = await verified_directives(access, world, namespace, keyring, schemas)
    report.findings_topics = audit(events, held_from_directives(held), world, now)
    for agency, db in (stores or {}).items():
        report.findings_stores[agency] = audit(events, held_from_store(db, agency), world, now, subscriber=agency)
    receipts, _ = await verified_receipts(access, world, namespace, keyring, schemas)
    answered = {r.directive_id for r in receipts}
    for d in latest_of(held).values():
        if d.directive_id not in answered:
            report.unanswered.setdefault(d.subscriber, []).append(d.directive_id)
    return report
