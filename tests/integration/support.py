"""What the integration tests share: run `concord`, publish as an agency, read what came out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaProducer

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.intake import Refused, admit_directive
from services.core.models import Directive, ListEntryEvent, ListingCommitments, QuarantineRecord, SealedListing
from services.core.principals import ADMIN
from services.core.signing import Domain, SignedHeaders
from services.keystore import load_keyring, load_signer
from services.localstack import LocalStack
from services.topic_metadata import read_to_end
from tests.conftest import REPO_ROOT, KafkaCluster, write_all_credentials
from tests.unit.factories import entry_dict, make_ric, person


def publish(stack: LocalStack, agency: str, records: Iterable[dict[str, Any] | ListEntryEvent]) -> int:
    """Seal, sign and produce as ``agency``, in order, in the adapter's wire form (keyed by entry id)."""
    events = [r if isinstance(r, ListEntryEvent) else ListEntryEvent.model_validate(r) for r in records]
    signer = load_signer(stack.home / "keys", agency)
    topic = stack.world.topic_name("lists", agency, namespace=stack.namespace)

    async def go() -> int:
        producer = AIOKafkaProducer(**stack.access(agency).aiokafka_producer_kwargs())
        await producer.start()
        try:
            for ev in events:
                sealed = seal_record(ev, default_registry())
                await producer.send_and_wait(
                    topic,
                    value=sealed.value,
                    key=ev.entry_id.encode(),
                    headers=signer.sign(Domain.LIST_RECORD, sealed.commitments).as_kafka(),
                )
        finally:
            await producer.stop()
        return len(events)

    return asyncio.run(go())


def directives(stack: LocalStack) -> list[Directive]:
    """Every verified directive on every directive topic, in partition order."""
    keyring = load_keyring(stack.home / "keys")
    topics = {s.name: s.agency for s in stack.world.topic_specs(stack.namespace) if s.kind == "directives"}
    out = []
    for topic, rec in asyncio.run(read_to_end(stack.access(ADMIN), topics)):
        if default_registry().kind_of(rec.value) == "heartbeat":
            continue  # the fan-out's sign of life, not a directive
        try:
            out.append(
                admit_directive(
                    agency=str(topics[topic]),
                    value=rec.value,
                    headers=rec.headers,
                    timestamp_ms=rec.timestamp,
                    keyring=keyring,
                    schemas=default_registry(),
                )
            )
        except Refused as exc:
            raise AssertionError(f"a directive on {topic} does not verify: {exc}") from None
    return out


def quarantined(stack: LocalStack) -> list[QuarantineRecord]:
    topic = stack.world.topic_name("quarantine", namespace=stack.namespace)
    return [
        default_registry().decode_model(rec.value, QuarantineRecord)
        for _, rec in asyncio.run(read_to_end(stack.access(ADMIN), [topic]))
    ]


def for_entry(ds: list[Directive], entry_id: str) -> list[Directive]:
    return [d for d in ds if d.entry_id == entry_id]


def summary(ds: Iterable[Directive]) -> set[tuple[str, str, str, str]]:
    """(action, subscriber, measure, subject_ref) of each directive, for readable assertions."""
    return {(d.action.value, d.subscriber, d.measure_id, d.subject_ref) for d in ds}


EXAMPLES = REPO_ROOT / "deploy" / "examples"
JUDGMENT_DEFAULTERS_MOU = "mou-judgment-defaulters"
SECURITIES_MOU = "mou-court-securities"
BOARD = "securities.no-board-seats"  # the measure of SECURITIES_MOU


def add_securities_mou(mous: Path) -> None:
    """A new MOU in ``mous``: the securities regulator bars judgment defaulters' legal representatives from boards."""
    (mous / f"{SECURITIES_MOU}.yaml").write_text(
        yaml.safe_dump(
            {
                "mou_id": SECURITIES_MOU,
                "versions": [
                    {
                        "version": 1,
                        "title": "Memorandum on Securities Market Restrictions for Judgment Defaulters",
                        "document_no": "Zheng Jian [2026] No. 7",
                        "signatories": ["court", "securities"],
                        "valid_from": "2016-01-01",
                        "valid_until": None,
                        "terminated_on": None,
                        "trigger_programs": ["court.judgment-defaulters"],
                        "measures": [
                            {
                                "measure_id": BOARD,
                                "kind": "PUNISH",
                                "text": "May not serve as a director or senior manager of a listed company.",
                                "implementing_agency": "securities",
                                "legal_basis": "Company Law, Art. 178",
                                "applies_to": ["RELATED:LEGAL_REPRESENTATIVE"],
                            }
                        ],
                        "visible_fields": {"securities": ["kind", "names", "identifiers"]},
                    }
                ],
            },
            sort_keys=False,
        )
    )


def terminate_judgment_defaulters(mous: Path) -> None:
    """The judgment-defaulters MOU in ``mous`` terminated today (MOU days are UTC calendar days)."""
    path = mous / f"{JUDGMENT_DEFAULTERS_MOU}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["versions"][0]["terminated_on"] = datetime.now(UTC).date().isoformat()
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def write_operator_home(home: Path, cluster: KafkaCluster, namespace: str) -> None:
    """``concord.json`` naming ``cluster`` and ``namespace``, and one credentials file per user, as an operator
    writes them before any ``concord`` command has run."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "concord.json").write_text(
        json.dumps(
            {
                "bootstrap": cluster.bootstrap,
                "brokers": cluster.brokers,
                "namespace": namespace,
                "security_protocol": "SASL_SSL",
                "ca_file": str(cluster.ca_file) if cluster.ca_file else None,
            }
        )
    )
    write_all_credentials(home, cluster.passwords)


def concord_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    env["CONCORD_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def concord(home: Path, *args: str, stdin: str | None = None, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=concord_env(home),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


@contextmanager
def inbox_adapter(home: Path, agency: str, inbox: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``concord adapter run`` for ``agency`` on ``inbox`` (polled every 0.2 s), its output in ``log``; sent
    SIGTERM on leaving, and killed if it has not stopped 30 s later."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "adapter",
                "run",
                "--agency",
                agency,
                "--inbox",
                str(inbox),
                *args,
                "--poll",
                "0.2",
            ],
            env=concord_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def read_topic(cluster: KafkaCluster, topic: str) -> list[Any]:
    """Every record of ``topic`` (all its partitions) from the beginning to its current end, read as the admin."""

    async def go() -> list[Any]:
        async with asyncio.timeout(60):
            return [r for _, r in await read_to_end(cluster.access(ADMIN), [topic])]

    return asyncio.run(go())


def event_ids(cluster: KafkaCluster, stack: LocalStack, agency: str = "court") -> Counter[str]:
    topic = stack.world.topic_name("lists", agency, namespace=stack.namespace)
    keyring = load_keyring(stack.home / "keys")
    registry = default_registry()
    seen: Counter[str] = Counter()
    for rec in read_topic(cluster, topic):
        # what arrives is sealed, its commitments signed by the agency, and reads as a list record
        sealed = registry.decode_model(rec.value, SealedListing)
        keyring.verify(
            Domain.LIST_RECORD,
            sealed.commitments,
            SignedHeaders.from_kafka(rec.headers),
            expected_agency=agency,
            at=datetime.now(UTC),
        )
        seen[registry.decode_model(sealed.commitments, ListingCommitments).event_id] += 1
    return seen


def listings(n: int, run: str) -> list[str]:
    """``n`` valid court listings of distinct persons, as JSON lines."""
    out = []
    for i in range(n):
        ric = make_ric(i % 1000, birth=date(1950, 1, 1) + timedelta(days=i // 1000))
        out.append(json.dumps(entry_dict(entry_id=f"{run}-{i}", subject=person(ric))) + "\n")
    return out
