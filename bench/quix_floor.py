"""quix-streams doing nothing, statefully, exactly once: the engine the fan-out did not take.

Run by bench_exchange.py with the interpreter of its own virtualenv (``make bench`` makes it:
quix-streams pins older confluent-kafka and pydantic than Concord uses):

    .local/venv-quix/bin/python bench/quix_floor.py '{"bootstrap": ..., "ca": ..., "user": ...,
        "credentials": DIR, "topics": [...], "out": ..., "group": ..., "state": ..., "records": N}'

Per record: one state get and one set (RocksDB, changelogged), forward the bytes to ``out``,
with ``processing_guarantee="exactly-once"``.  Prints one JSON line: records, seconds, rate.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig

if TYPE_CHECKING:
    from quixstreams import State


def _password(cfg: dict[str, Any]) -> str:
    """The principal's password from its credentials file (never passed on the command line)."""
    doc = json.loads((Path(cfg["credentials"]) / f"{cfg['user']}.json").read_text())
    return str(doc["password"])


def main() -> None:
    cfg = json.loads(sys.argv[1])
    conn = ConnectionConfig(
        bootstrap_servers=cfg["bootstrap"],
        security_protocol="sasl_ssl",
        ssl_ca_location=cfg["ca"],
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=cfg["user"],
        sasl_password=_password(cfg),
    )
    app = Application(
        broker_address=conn,
        consumer_group=cfg["group"],
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=cfg["state"],
        loglevel="WARNING",
    )
    out = app.topic(cfg["out"], key_serializer="bytes", value_serializer="bytes")
    seen = {"n": 0, "first": 0.0, "last": 0.0}
    total = int(cfg["records"])

    def touch(value: bytes, state: State) -> bytes:
        if seen["n"] == 0:
            seen["first"] = time.monotonic()
        state.get("seen")
        state.set("seen", len(value))
        seen["n"] += 1
        if seen["n"] >= total:
            seen["last"] = time.monotonic()
            app.stop()
        return value

    for topic in cfg["topics"]:
        sdf = app.dataframe(app.topic(topic, key_deserializer="bytes", value_deserializer="bytes"))
        sdf = sdf.apply(touch, stateful=True)
        sdf.to_topic(out)
    app.run()
    took = seen["last"] - seen["first"]
    print(json.dumps({"records": seen["n"], "seconds": took, "rate": seen["n"] / max(took, 1e-9)}))


if __name__ == "__main__":
    main()
