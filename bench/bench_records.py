"""How fast one core turns list records into signed bytes and back.

    make bench-records            (or: .venv/bin/python bench/bench_records.py [--seconds S] [--json FILE])

Measures, in one run on one core (a single thread), for the DESIGN.md example
record (a company with its legal representative):

* Concord's **encode+sign** (model -> Avro single-object bytes -> SHA-256 ->
  Ed25519 over the signing input) and **verify+decode** (keyring checks, digest,
  Ed25519 verify, Avro decode, pydantic model), the two halves of the record path;
* the adapter's whole per-record CPU work (validate the JSON shape + encode+sign);
* beside them the raw parts measured in the same run: fastavro schemaless
  encode/decode of the same datum, Ed25519 sign/verify of a same-sized input.

The ratio column compares each Concord figure with what the raw parts alone would
allow (1 / sum of their per-record times): the cost of Concord's own framing,
hashing, checks and models.  A benchmark, not a test: nothing here fails on a slow
machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import fastavro

from services.core.codec import HEADER_LEN, default_registry
from services.core.models import ListEntryEvent
from services.core.signing import (
    Domain,
    Keyring,
    PublicKey,
    SignedHeaders,
    Signer,
    digest_of,
    signing_input,
)
from services.core.validation import validate_record
from services.core.world import load_world

REPO_ROOT = Path(__file__).resolve().parents[1]

RECORD = {
    "event_id": "court:court-2026-000123:1", "event_type": "LISTED", "entry_id": "court-2026-000123", "version": 1,
    "list_kind": "SANCTION", "program": "court.judgment-defaulters",
    "subject": {"kind": "ORGANIZATION", "names": [{"value": "Example Trading Co., Ltd."}],
                "identifiers": [{"scheme": "CN_USCC", "value": "91110000600037341L"}],
                "related_parties": [{"role": "LEGAL_REPRESENTATIVE", "kind": "PERSON",
                                     "names": [{"value": "Wei Example"}],
                                     "identifiers": [{"scheme": "CN_RIC", "value": "360426199101010071"}]}]},
    "basis": {"decision_no": "(2026) Jing 01 Zhi 1234", "issued_by": "Beijing No.1 Intermediate People's Court",
              "decided_on": "2026-03-02"},
    "reason": "Failed to perform an effective judgment despite the ability to perform",
    "listed_on": "2026-03-10", "effective_from": "2026-03-10T00:00:00Z", "effective_until": "2028-03-10T00:00:00Z",
    "publication_until": "2028-03-10T00:00:00Z", "delisting": None,
}


def rate(fn: Callable[[], object], seconds: float, batch: int = 100) -> float:
    """Records per second of ``fn`` on this thread, after a short warm-up."""
    for _ in range(batch):
        fn()
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def combined(*rates: float) -> float:
    return 1.0 / sum(1.0 / r for r in rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure (default 2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best counts (default 5)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)

    reg = default_registry()
    world = load_world(REPO_ROOT / "topics")
    ev = ListEntryEvent.model_validate(RECORD)
    schema = reg.latest("list_entry_event")
    datum = ev.model_dump()
    signer = Signer.generate("court", "court-bench")
    keyring = Keyring([PublicKey("court", signer.key_id, signer.public_bytes(), datetime(2025, 1, 1, tzinfo=UTC))])
    at = datetime(2026, 3, 10, tzinfo=UTC)

    value = reg.encode_model(ev)
    headers = signer.sign(Domain.LIST_RECORD, value)
    body = value[HEADER_LEN:]
    sig_input = signing_input(Domain.LIST_RECORD, "court", signer.key_id, value, digest_of(value))
    raw_key = signer._key  # noqa: SLF001 - the same key, used raw
    raw_pub = raw_key.public_key()
    raw_sig = raw_key.sign(sig_input)
    kafka_headers = headers.as_kafka()

    def avro_encode() -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema.schema, datum)
        return buf.getvalue()

    def avro_decode() -> object:
        return fastavro.schemaless_reader(io.BytesIO(body), schema.schema, None)

    def encode_sign() -> object:
        v = reg.encode_model(ev)
        return signer.sign(Domain.LIST_RECORD, v)

    def verify_decode() -> object:
        keyring.verify(Domain.LIST_RECORD, value, SignedHeaders.from_kafka(kafka_headers), expected_agency="court",
                       at=at)
        return reg.decode_model(value, ListEntryEvent)

    def adapter_record() -> object:
        e = validate_record(RECORD, agency="court", world=world)
        return signer.sign(Domain.LIST_RECORD, reg.encode_model(e))

    assert verify_decode() == ev
    s = args.seconds
    work: dict[str, Callable[[], object]] = {
        "fastavro encode (raw)": avro_encode,
        "Ed25519 sign (raw)": lambda: raw_key.sign(sig_input),
        "Concord encode+sign": encode_sign,
        "fastavro decode (raw)": avro_decode,
        "Ed25519 verify (raw)": lambda: raw_pub.verify(raw_sig, sig_input),
        "Concord verify+decode": verify_decode,
        "adapter: validate+encode+sign": adapter_record,
    }
    # Rounds interleave the figures, and the best round counts: on a shared machine a
    # neighbour's burst then slows one round of everything, not all of one figure.
    figures = dict.fromkeys(work, 0.0)
    for _ in range(args.rounds):
        for name, fn in work.items():
            figures[name] = max(figures[name], rate(fn, s / args.rounds))
    raw_out = combined(figures["fastavro encode (raw)"], figures["Ed25519 sign (raw)"])
    raw_in = combined(figures["fastavro decode (raw)"], figures["Ed25519 verify (raw)"])
    ratios = {
        "Concord encode+sign": figures["Concord encode+sign"] / raw_out,
        "Concord verify+decode": figures["Concord verify+decode"] / raw_in,
        "adapter: validate+encode+sign": figures["adapter: validate+encode+sign"] / raw_out,
    }

    print(f"Concord record path, one core ({platform.python_implementation()} {platform.python_version()}, "
          f"fastavro {fastavro.__version__}; best of {args.rounds} interleaved rounds, {s:g}s per figure;\n"
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} when started)")
    print(f"record: {len(value)} bytes single-object Avro ({len(body)} body), signature input {len(sig_input)} bytes")
    print()
    print(f"{'':32} {'records/s':>12} {'us/record':>10} {'vs raw parts':>13}")
    rows = [
        ("fastavro encode (raw)", None), ("Ed25519 sign (raw)", None),
        ("raw encode + sign, combined", raw_out), ("Concord encode+sign", None), None,
        ("fastavro decode (raw)", None), ("Ed25519 verify (raw)", None),
        ("raw verify + decode, combined", raw_in), ("Concord verify+decode", None), None,
        ("adapter: validate+encode+sign", None),
    ]
    for row in rows:
        if row is None:
            print()
            continue
        name, value_ = row
        r = value_ if value_ is not None else figures[name]
        ratio = f"{ratios[name]:.2f}x" if name in ratios else ""
        print(f"{name:32} {r:>12,.0f} {1e6 / r:>10.1f} {ratio:>13}")
    print()
    print("vs raw parts: the Concord rate divided by the rate the raw fastavro + Ed25519 calls alone allow;")
    print("the rest is the single-object framing, SHA-256, the signing input, key checks and pydantic models.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"records_per_s": figures, "raw_combined": {"encode+sign": raw_out,
                                         "verify+decode": raw_in}, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
