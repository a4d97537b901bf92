"""How fast one core turns list records into signed bytes and back, plain and redacted.

    make bench-records   (or: .venv/bin/python bench/bench_records.py [--seconds S] [--rounds R] [--json FILE])

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
hashing, checks and models.

Then the cost of verifiable redaction (``services/core/disclosure.py``), each figure
beside the *plain* path Concord took before list records were sealed: the whole Avro
list record signed by the publisher and forwarded whole in every directive's
``source.record``, with no disclosures.

* publisher, per record: encode+sign (plain) against seal (a salt and a commitment for
  every disclosable part, decoys) + encode + sign the commitments (redacted);
* fan-out, per list record: admission (signature, decode, context rules; redacted:
  every disclosure checked against the commitments and the event rebuilt from them);
* fan-out, per directive: aviation's directive for the legal representative, routing
  already decided (the ``Transition``'s held directive): the source attached (redacted:
  ``source_for``, which keeps what aviation's MOU and the target allow), encoded and
  signed on its own (with batch signatures the Ed25519 share is spread over a batch, on
  both paths alike);
* subscriber, per directive: both signatures verified and the directive decoded
  (redacted: ``admit_directive``, which also checks every disclosure), with no cache of
  sources, so each directive pays the publisher's signature; then the same with the
  MOUs (``world``), the routing re-derived from what the directive carries;
* bytes: the list record's value and headers, each directive's value and headers for
  aviation (which sees the company's names and identifiers, the legal representative and
  the basis, not the reason) and for finance (the company only, nothing of its legal
  representative).

The plain admissions are the code Concord ran before sealing (``git show
624a87e^:services/core/intake.py``) restated here, as the tree no longer holds them;
the plain directive is encoded with today's schema (an empty list of disclosures, one
byte).  Everything on the redacted side is Concord's own functions.  "redacted/plain"
is a ratio of costs, time per record or directive and bytes: above 1 the redacted path
costs more.

The headline figures go to ``bench/results/records.json`` (``bench/results.py``), all
under ``records.``: ``records.plain.verify_per_s``, ``records.redacted.directive_bytes.aviation``,
``records.redacted_vs_plain.verify``, ...  A benchmark, not a test: nothing here fails
on a slow machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import fastavro
from results import flatten, write_headline

from services.core.codec import HEADER_LEN, SchemaRegistry, default_registry
from services.core.disclosure import seal_record
from services.core.intake import FANOUT_PRINCIPAL, Refused, admit_directive, admit_list_record
from services.core.models import Directive, ListEntryEvent, SourceRecord
from services.core.reasons import Reason
from services.core.routing import Accepted, Outcome, Transition, on_record, source_for
from services.core.signing import (
    Domain,
    Keyring,
    PublicKey,
    SignedHeaders,
    Signer,
    digest_of,
    signing_input,
)
from services.core.validation import context_problems, validate_record
from services.core.verification import verify_routing
from services.core.world import World, load_world

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
}  # fmt: skip

# The redacted path beside the plain one: (figure, row label).  Each figure is measured as
# "plain <figure>" and "redacted <figure>"; "plain publish" is "Concord encode+sign".
STEPS = (
    ("publish", "publisher: sign / record"),
    ("admit", "fan-out: admit / list record"),
    ("directive", "fan-out: build+sign / directive"),
    ("verify", "subscriber: verify+decode / dir."),
    ("verify_routing", "subscriber: + routing / directive"),
)
PATHS = ("plain", "redacted")
AGENCIES = ("aviation", "finance")
SIZE_LABELS = {
    "record_bytes": "list record value",
    "record_header_bytes": "list record headers",
    **{f"directive_bytes.{a}": f"directive value, {a}" for a in AGENCIES},
    **{f"directive_header_bytes.{a}": f"directive headers, {a}" for a in AGENCIES},
}
LIST_TOPIC = "concord.lists.court"


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


def header_bytes(headers: Iterable[tuple[str, bytes]]) -> int:
    """What a record's Kafka headers weigh: each key's UTF-8 bytes and its value."""
    return sum(len(k.encode()) + len(v) for k, v in headers)


def admit_plain_list_record(
    *,
    value: bytes,
    key: bytes,
    headers: list[tuple[str, bytes]],
    timestamp_ms: int,
    keyring: Keyring,
    schemas: SchemaRegistry,
    world: World,
) -> Accepted:
    """The fan-out's admission of a whole signed list record, as Concord did it before sealing."""
    at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    signed = keyring.verify(
        Domain.LIST_RECORD, value, SignedHeaders.from_kafka(headers), expected_agency="court", at=at
    )
    event = schemas.decode_model(value, ListEntryEvent)
    if key.decode("utf-8", "replace") != event.entry_id:
        raise Refused(Reason.KEY_MISMATCH, f"record key {key!r} is not its entry id {event.entry_id!r}")
    problems = context_problems(event, agency="court", world=world)
    if problems:
        raise Refused(Reason.INVALID_RECORD, "; ".join(str(p) for p in problems))
    source = SourceRecord(
        topic=LIST_TOPIC,
        partition=0,
        offset=7,
        agency=signed.agency,
        key_id=signed.key_id,
        signature=signed.seal(),
        record=value,
    )
    return Accepted(origin="court", event=event, source=source, digest=signed.digest)


def admit_plain_directive(
    *,
    agency: str,
    value: bytes,
    headers: list[tuple[str, bytes]],
    timestamp_ms: int,
    keyring: Keyring,
    schemas: SchemaRegistry,
    world: World | None = None,
) -> Directive:
    """A subscriber's admission of a directive carrying the whole list record, as before sealing
    (without the cache of sources): both signatures, both decodes, optionally the routing."""
    at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    keyring.verify(Domain.DIRECTIVE, value, SignedHeaders.from_kafka(headers), expected_agency=FANOUT_PRINCIPAL, at=at)
    d = schemas.decode_model(value, Directive)
    if d.subscriber != agency:
        raise Refused(Reason.WRONG_SUBSCRIBER, f"directive is for {d.subscriber!r}, not {agency!r}")
    src = d.source
    if src is None:
        raise Refused(Reason.SOURCE_MISMATCH, f"a {d.action.value} must carry the publisher's signed record")
    seal = SignedHeaders.from_seal(src.agency, src.key_id, digest_of(src.record), src.signature)
    keyring.verify(Domain.LIST_RECORD, src.record, seal, expected_agency=d.origin_agency, at=at)
    event = schemas.decode_model(src.record, ListEntryEvent)
    if event.entry_id != d.entry_id or event.version != d.entry_version:
        raise Refused(
            Reason.SOURCE_MISMATCH,
            f"directive names {d.entry_id} v{d.entry_version}, its source is {event.entry_id} v{event.version}",
        )
    if world is not None:
        refusal = verify_routing(d, event, world)
        if refusal is not None:
            raise Refused(refusal.reason, refusal.detail)
    return d


@dataclass(frozen=True)
class Redaction:
    """Both paths for one listing: the work to time (``"<path> <figure>"``) and the bytes each puts on the wire."""

    work: dict[str, Callable[[], object]]
    sizes: dict[str, dict[str, int]]  # path -> "record_bytes", "directive_bytes.aviation", ...


def redaction(reg: SchemaRegistry, world: World, ev: ListEntryEvent, court: Signer, at: datetime) -> Redaction:
    """Publish ``ev`` both ways, admit it, route it, and build the work of every step on each path.

    Every call made here is checked once (the admissions accept, the directives agree) before
    anything is timed.
    """
    fanout = Signer.generate(FANOUT_PRINCIPAL, "fanout-bench")
    since = datetime(2025, 1, 1, tzinfo=UTC)
    keyring = Keyring([PublicKey(s.agency, s.key_id, s.public_bytes(), since) for s in (court, fanout)])
    ts_ms = int(at.timestamp() * 1000)
    key = ev.entry_id.encode()

    plain_value = reg.encode_model(ev)
    plain_headers = court.sign(Domain.LIST_RECORD, plain_value).as_kafka()
    sealed = seal_record(ev, reg)
    sealed_headers = court.sign(Domain.LIST_RECORD, sealed.commitments).as_kafka()

    def seal_sign() -> object:
        s = seal_record(ev, reg)
        return court.sign(Domain.LIST_RECORD, s.commitments)

    def admit_plain() -> Accepted:
        return admit_plain_list_record(
            value=plain_value,
            key=key,
            headers=plain_headers,
            timestamp_ms=ts_ms,
            keyring=keyring,
            schemas=reg,
            world=world,
        )

    def admit_redacted() -> Accepted:
        return admit_list_record(
            origin="court",
            topic=LIST_TOPIC,
            partition=0,
            offset=7,
            key=key,
            value=sealed.value,
            headers=sealed_headers,
            timestamp_ms=ts_ms,
            keyring=keyring,
            schemas=reg,
            world=world,
        )

    accepted = {"plain": admit_plain(), "redacted": admit_redacted()}
    assert accepted["plain"].event == accepted["redacted"].event == ev
    # The routing is the same on both paths: what differs is the source each directive carries.
    held = {d.subscriber: d for d in on_record(None, accepted["redacted"], world, at).changed}
    assert set(AGENCIES) <= held.keys(), f"the example record no longer reaches {AGENCIES}: {sorted(held)}"

    def attach(path: str, agency: str) -> Directive:
        d, source = held[agency], accepted[path].source
        if path == "redacted":
            source = source_for(d, source, world)
        sent = Transition.model_construct(state=None, changed=(d,), sources=(source,), outcome=Outcome.APPLIED)
        return sent.emitted[0]  # as the fan-out sends it: the held directive with its source

    def build_sign(path: str) -> Callable[[], object]:
        def go() -> object:
            return fanout.sign(Domain.DIRECTIVE, reg.encode_model(attach(path, "aviation")))

        return go

    sent: dict[tuple[str, str], tuple[bytes, list[tuple[str, bytes]]]] = {}
    for path in PATHS:
        for agency in AGENCIES:
            value = reg.encode_model(attach(path, agency))
            sent[(path, agency)] = value, fanout.sign(Domain.DIRECTIVE, value).as_kafka()

    def subscriber(path: str, routing: bool) -> Callable[[], Directive]:
        value, headers = sent[(path, "aviation")]
        w = world if routing else None
        if path == "plain":
            return lambda: admit_plain_directive(
                agency="aviation",
                value=value,
                headers=headers,
                timestamp_ms=ts_ms,
                keyring=keyring,
                schemas=reg,
                world=w,
            )
        return lambda: admit_directive(
            agency="aviation", value=value, headers=headers, timestamp_ms=ts_ms, keyring=keyring, schemas=reg, world=w
        )

    work: dict[str, Callable[[], object]] = {
        "redacted publish": seal_sign,
        "plain admit": admit_plain,
        "redacted admit": admit_redacted,
    }
    for path in PATHS:
        work[f"{path} directive"] = build_sign(path)
        for routing in (False, True):
            admit = subscriber(path, routing)
            got = admit()
            assert got.directive_id == held["aviation"].directive_id
            work[f"{path} verify{'_routing' if routing else ''}"] = admit

    finance = reg.decode_model(sent[("redacted", "finance")][0], Directive)
    assert finance.source is not None
    assert not [x for x in finance.source.disclosures if x.path.startswith("subject.related_parties")]
    records = {"plain": (plain_value, plain_headers), "redacted": (sealed.value, sealed_headers)}
    sizes: dict[str, dict[str, int]] = {}
    for path in PATHS:
        value, headers = records[path]
        sizes[path] = {"record_bytes": len(value), "record_header_bytes": header_bytes(headers)}
        for agency in AGENCIES:
            value, headers = sent[(path, agency)]
            sizes[path][f"directive_bytes.{agency}"] = len(value)
            sizes[path][f"directive_header_bytes.{agency}"] = header_bytes(headers)
    return Redaction(work, sizes)


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
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
        keyring.verify(
            Domain.LIST_RECORD, value, SignedHeaders.from_kafka(kafka_headers), expected_agency="court", at=at
        )
        return reg.decode_model(value, ListEntryEvent)

    def adapter_record() -> object:
        e = validate_record(RECORD, agency="court", world=world)
        return signer.sign(Domain.LIST_RECORD, reg.encode_model(e))

    assert verify_decode() == ev
    red = redaction(reg, world, ev, signer, datetime(2026, 3, 10, 12, tzinfo=UTC))
    s = args.seconds
    work: dict[str, Callable[[], object]] = {
        "fastavro encode (raw)": avro_encode,
        "Ed25519 sign (raw)": lambda: raw_key.sign(sig_input),
        "Concord encode+sign": encode_sign,
        "fastavro decode (raw)": avro_decode,
        "Ed25519 verify (raw)": lambda: raw_pub.verify(raw_sig, sig_input),
        "Concord verify+decode": verify_decode,
        "adapter: validate+encode+sign": adapter_record,
        **red.work,
    }
    # Rounds interleave the figures, and the best round counts: on a shared machine a
    # neighbour's burst then slows one round of everything, not all of one figure.
    figures = dict.fromkeys(work, 0.0)
    for _ in range(args.rounds):
        for name, fn in work.items():
            figures[name] = max(figures[name], rate(fn, s / args.rounds))
    figures["plain publish"] = figures["Concord encode+sign"]  # the same work: encode the record, sign it
    raw_out = combined(figures["fastavro encode (raw)"], figures["Ed25519 sign (raw)"])
    raw_in = combined(figures["fastavro decode (raw)"], figures["Ed25519 verify (raw)"])
    ratios = {
        "Concord encode+sign": figures["Concord encode+sign"] / raw_out,
        "Concord verify+decode": figures["Concord verify+decode"] / raw_in,
        "adapter: validate+encode+sign": figures["adapter: validate+encode+sign"] / raw_out,
    }
    # Cost ratios, redacted over plain: time per record or directive, and bytes.
    cost = {step: figures[f"plain {step}"] / figures[f"redacted {step}"] for step, _ in STEPS}
    cost |= {k: red.sizes["redacted"][k] / red.sizes["plain"][k] for k in red.sizes["plain"]}

    print(
        f"Concord record path, one core ({platform.python_implementation()} {platform.python_version()}, "
        f"fastavro {fastavro.__version__}; best of {args.rounds} interleaved rounds, {s:g}s per figure;\n"
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} when started)"
    )
    print(f"record: {len(value)} bytes single-object Avro ({len(body)} body), signature input {len(sig_input)} bytes")
    print()
    print(f"{'':32} {'records/s':>12} {'us/record':>10} {'vs raw parts':>13}")
    rows = [
        ("fastavro encode (raw)", None), ("Ed25519 sign (raw)", None),
        ("raw encode + sign, combined", raw_out), ("Concord encode+sign", None), None,
        ("fastavro decode (raw)", None), ("Ed25519 verify (raw)", None),
        ("raw verify + decode, combined", raw_in), ("Concord verify+decode", None), None,
        ("adapter: validate+encode+sign", None),
    ]  # fmt: skip
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
    print()
    print("Redacted (sealed: signed salted commitments + the disclosures each agency may see) beside plain")
    print("(the whole record signed and forwarded in every directive); directives: aviation's, for the legal")
    print("representative; subscribers verify both signatures on every directive (no cache of sources)")
    print()
    print(f"{'':34} {'plain/s':>9} {'us':>7} {'redacted/s':>11} {'us':>7} {'redacted/plain':>15}")
    for step, label in STEPS:
        p, r = figures[f"plain {step}"], figures[f"redacted {step}"]
        print(f"{label:34} {p:>9,.0f} {1e6 / p:>7.1f} {r:>11,.0f} {1e6 / r:>7.1f} {cost[step]:>14.2f}x")
    print()
    print(f"{'bytes':34} {'plain':>17} {'redacted':>19} {'redacted/plain':>15}")
    for k in red.sizes["plain"]:
        print(f"{SIZE_LABELS[k]:34} {red.sizes['plain'][k]:>17,} {red.sizes['redacted'][k]:>19,} {cost[k]:>14.2f}x")
    print()
    print("redacted/plain: time per record or directive, or bytes, of the redacted path over the plain one.")

    headline = {
        "encode_sign_per_s": figures["Concord encode+sign"],
        "verify_decode_per_s": figures["Concord verify+decode"],
        "adapter_per_s": figures["adapter: validate+encode+sign"],
        "vs_raw": {
            "encode_sign": ratios["Concord encode+sign"],
            "verify_decode": ratios["Concord verify+decode"],
            "adapter": ratios["adapter: validate+encode+sign"],
        },
        **{
            path: {**{f"{step}_per_s": figures[f"{path} {step}"] for step, _ in STEPS}, **red.sizes[path]}
            for path in PATHS
        },
        "redacted_vs_plain": cost,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "records_per_s": figures,
                    "raw_combined": {"encode+sign": raw_out, "verify+decode": raw_in},
                    "ratios": ratios,
                    "bytes": red.sizes,
                    "redacted_vs_plain": cost,
                },
                indent=2,
            )
        )
    extra = sys.argv[1:] if argv is None else argv
    command = " ".join(["bench/bench_records.py", *extra]) if extra else "make bench-records"
    write_headline("records", flatten(headline, "records."), command=command, full=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
