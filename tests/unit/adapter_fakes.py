"""The adapter's stand-in for the broker and its records: a producer whose acknowledgements the
test controls, listings as JSON lines, and a publisher wired to both."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from services.adapter.ledger import Ledger
from services.adapter.publish import Publisher
from services.core.codec import default_registry
from services.core.signing import Signer
from tests.unit.factories import entry_dict, make_ric, person

TOPIC = "concord.lists.court"


@dataclass
class FakeProducer:
    """Takes records like AIOKafkaProducer.send; acknowledges at once unless ``hold`` is set."""

    hold: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: Any = None,
        timestamp_ms: Any = None,
        headers: Any = None,
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append({"topic": topic, "key": key, "value": value, "headers": headers})
        self.futures.append(fut)
        if not self.hold:
            self.ack(fut)
        return fut

    def ack(self, fut: asyncio.Future[Any]) -> None:
        fut.set_result(SimpleNamespace(partition=0, offset=self.futures.index(fut)))

    def release(self, *, fail: bool = False) -> None:
        for fut in self.futures:
            if not fut.done():
                if fail:
                    fut.set_exception(KafkaTimeoutError())
                else:
                    self.ack(fut)


def records(n: int, **overrides: Any) -> list[dict[str, Any]]:
    return [entry_dict(entry_id=f"e-{i}", subject=person(make_ric(i)), **overrides) for i in range(n)]


def jsonl(recs: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(r) + "\n" for r in recs]


def publisher(producer: FakeProducer, ledger: Ledger) -> Publisher:
    return Publisher(
        producer=producer,
        agency="court",
        topic=TOPIC,
        signer=Signer.generate("court", "court-k1"),
        schemas=default_registry(),
        ledger=ledger,
        commit_interval=0.01,
    )
