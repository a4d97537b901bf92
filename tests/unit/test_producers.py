"""Every producer Concord runs waits for all in-sync replicas and is idempotent.

On a replicated cluster (``min.insync.replicas=2``) an acknowledged write must
survive the loss of a broker, and a retry after a leader change must not write a
record twice: ``acks=all`` and idempotence, for every producer of every service.
The fan-out's producer belongs to its stream engine and is checked by its own tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.kafka_access import KafkaAccess

pytestmark = pytest.mark.unit

SERVICES = Path(__file__).resolve().parents[2] / "services"
PRODUCERS = {"AIOKafkaProducer": "aiokafka_producer_kwargs", "Producer": "confluent_producer_config"}


def test_the_producer_settings_ask_for_every_replica_and_idempotence() -> None:
    access = KafkaAccess(bootstrap="127.0.0.1:9093").as_principal("court", "pw")
    kw = access.aiokafka_producer_kwargs()
    assert (kw["acks"], kw["enable_idempotence"]) == ("all", True)
    conf = access.confluent_producer_config()
    assert (conf["acks"], conf["enable.idempotence"]) == ("all", True)
    assert conf["sasl.username"] == "court"


def _producer_calls() -> list[tuple[Path, int, str, str]]:
    found = []
    for path in sorted(SERVICES.rglob("*.py")):
        if "fanout" in path.relative_to(SERVICES).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name in PRODUCERS:
                    found.append((path, node.lineno, name, ast.unparse(node)))
    return found


def _safe(name: str, src: str) -> bool:
    """Built from the shared settings (and not overriding them), or asking for both itself."""
    if PRODUCERS[name] in src:
        rest = src.replace(PRODUCERS[name], "")
        return "acks" not in rest and "idempotence" not in rest
    return "acks='all'" in src and "enable_idempotence=True" in src


def test_every_producer_of_the_services_waits_for_all_replicas_and_is_idempotent() -> None:
    calls = _producer_calls()
    assert len(calls) >= 4  # adapter, subscriber, registry, ledger
    wrong = [f"{p.relative_to(SERVICES.parent)}:{line}: {src}" for p, line, name, src in calls if not _safe(name, src)]
    assert wrong == []
    assert not _safe("AIOKafkaProducer", "AIOKafkaProducer(**a.aiokafka_kwargs(), acks=1)")
    assert not _safe("Producer", "Producer({**a.confluent_producer_config(), 'acks': 1})")
