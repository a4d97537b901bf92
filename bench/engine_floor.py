"""The fan-out engine doing nothing: its floor on the same records (run by bench_exchange.py).

    python bench/engine_floor.py '{"bootstrap": ..., "ca": ..., "user": ..., "credentials": DIR,
                                   "topics": [...], "out": ..., "changelog": ..., "group": ..., "state": ...,
                                   "records": N}'

One :class:`~services.fanout.engine.TransactionalEngine` worker with a processor that, per
record, reads and writes one RocksDB key and forwards the record's bytes and headers to
``out``: the same consumer, producer, transactions, changelog and state store as the
fan-out, and none of its work.  Prints one JSON line: records, seconds, rate.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import cast

from confluent_kafka import Message

from services.credentials import read_password
from services.fanout.engine import EngineConfig, Transaction, TransactionalEngine
from services.fanout.store import PartitionStore
from services.kafka_access import KafkaAccess


class Floor:
    def __init__(self, out: str, records: int) -> None:
        self.out = out
        self.records = records
        self.done = 0
        self.first: float | None = None
        self.last = 0.0
        self.engine: TransactionalEngine | None = None

    def handle(self, msg: Message, store: PartitionStore, tx: Transaction) -> None:
        if self.first is None:
            self.first = time.monotonic()
        key = b"e/" + (msg.key() or b"")
        store.get(key)
        store.put(key, (msg.value() or b"")[:64])
        # confluent-kafka reads header values as bytes; its type also admits what produce accepts.
        headers = cast("list[tuple[str, bytes]] | None", msg.headers())
        tx.produce(self.out, msg.key(), msg.value(), msg.partition() or 0, headers)
        self.done += 1

    def has_work(self, stores: dict[int, PartitionStore]) -> bool:
        return False

    def work(self, stores: dict[int, PartitionStore], tx: Transaction) -> int:
        return 0

    def before_commit(self, tx: Transaction) -> None:
        return

    def after_commit(self) -> None:
        if self.done >= self.records and self.engine is not None:
            self.last = time.monotonic()
            self.engine.stopping = True

    def after_abort(self) -> None:
        return

    def assigned(self, stores: dict[int, PartitionStore]) -> None:
        return


def main() -> None:
    cfg = json.loads(sys.argv[1])
    access = KafkaAccess(bootstrap=cfg["bootstrap"], ca_file=Path(cfg["ca"]) if cfg["ca"] else None).as_principal(
        cfg["user"], read_password(Path(cfg["credentials"]), cfg["user"])
    )
    floor = Floor(cfg["out"], int(cfg["records"]))
    engine = TransactionalEngine(
        EngineConfig(
            access=access,
            group=cfg["group"],
            name="floor",
            topics=cfg["topics"],
            changelog=cfg["changelog"],
            state_dir=Path(cfg["state"]),
        ),
        floor,
    )
    floor.engine = engine
    engine.run()
    took = floor.last - (floor.first or floor.last)
    print(json.dumps({"records": floor.done, "seconds": took, "rate": floor.done / max(took, 1e-9)}))


if __name__ == "__main__":
    main()
