"""The publishing agency's adapter: validate, sign, publish — and refuse clearly.

Records go to the agency's own list topic, keyed by entry id (so one entry's
events keep their order in one partition), with the agency's signature in the
headers.  The producer is idempotent with ``acks=all``; a publish returns only when
the broker has acknowledged every record it sent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.adapter.sources import Row
from services.core.codec import SchemaRegistry
from services.core.errors import BrokerUnavailable, FieldProblem, RecordInvalid
from services.core.models import ListEntryEvent
from services.core.signing import Domain, Signer
from services.core.validation import validate_record
from services.core.world import World
from services.kafka_access import KafkaAccess


@dataclass
class RowProblem:
    file: str
    line: int
    problems: list[FieldProblem]
    text: str = ""

    def lines(self) -> list[str]:
        return [f"{self.file}:{self.line}: {p}" for p in self.problems]


@dataclass
class Report:
    accepted: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    published: int = 0
    rejects_path: Path | None = None


def check_rows(rows: Iterable[Row], *, file: str, agency: str, world: World,
               report: Report) -> Iterable[tuple[Row, ListEntryEvent]]:
    """Valid rows with their events; invalid ones are added to ``report``."""
    for row in rows:
        if row.problem is not None:
            report.rejected.append(RowProblem(file, row.line, [row.problem], row.text))
            continue
        try:
            ev = validate_record(row.raw, agency=agency, world=world)
        except RecordInvalid as exc:
            report.rejected.append(RowProblem(file, row.line, exc.problems, row.text))
            continue
        report.accepted += 1
        yield row, ev


def write_rejects(path: Path, rejected: list[RowProblem]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for r in rejected:
            out.write(json.dumps({"line": r.line, "problems": [str(p) for p in r.problems], "record": r.text},
                                 ensure_ascii=False) + "\n")


class Publisher:
    def __init__(self, *, access: KafkaAccess, agency: str, topic: str, signer: Signer,
                 schemas: SchemaRegistry) -> None:
        self.agency = agency
        self.topic = topic
        self.signer = signer
        self.schemas = schemas
        self._producer = AIOKafkaProducer(**access.aiokafka_kwargs(), acks="all", enable_idempotence=True,
                                          linger_ms=10, max_batch_size=256 * 1024, request_timeout_ms=30000)

    async def __aenter__(self) -> Publisher:
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise BrokerUnavailable(f"cannot reach Kafka to publish for {self.agency}: {exc}",
                                    agency=self.agency) from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    def encode(self, ev: ListEntryEvent) -> tuple[bytes, list[tuple[str, bytes]]]:
        value = self.schemas.encode_model(ev)
        return value, self.signer.sign(Domain.LIST_RECORD, value).as_kafka()

    async def publish(self, events: Iterable[ListEntryEvent], *, progress_every: float = 1.0,
                      total: int | None = None) -> int:
        pending = []
        sent = 0
        started = last = time.monotonic()
        for ev in events:
            value, headers = self.encode(ev)
            pending.append(await self._producer.send(self.topic, value=value, key=ev.entry_id.encode(),
                                                     headers=headers))
            sent += 1
            if len(pending) >= 5000:
                await _wait(pending, self.agency)
                pending.clear()
            now = time.monotonic()
            if progress_every and now - last >= progress_every:
                last = now
                of = f"/{total:,}" if total else ""
                print(f"[{self.agency}] published {sent:,}{of} records ({sent / (now - started):,.0f}/s)",
                      file=sys.stderr, flush=True)
        await _wait(pending, self.agency)
        return sent


async def _wait(futures: list, agency: str) -> None:  # type: ignore[type-arg]
    for f in futures:
        try:
            await f
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka refused a record of {agency}: {exc}", agency=agency) from None
