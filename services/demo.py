"""The demo scenario: a court lists a company and a person; everyone acts; it is lifted.

Each run makes fresh subjects (valid identifiers with random bodies) and entry
ids, so the scenario holds on a broker that has already seen earlier runs.

Used by ``make run`` (then stays up), ``make demo`` (exits 0 only if every
expectation held) and the end-to-end integration test — one code path.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.core.identifiers import ric_check_char, uscc_check_char
from services.home import Home
from services.localstack import LocalStack, ensure_credentials, principals
from services.settings import REPO_ROOT
from services.subscriber.client import CheckClient, EntryNotFound, SubscriberError
from services.subscriber.identity import SubscriberHome

FINANCE_BAN = "finance.procurement-ban"
AIR = "aviation.no-air-tickets"
RAIL = "rail.no-high-speed-rail"


@dataclass(frozen=True)
class Subjects:
    company: str
    legal_rep: str
    person: str


def fresh_subjects(rng: random.Random) -> Subjects:
    body = "91110000" + "".join(rng.choice("0123456789") for _ in range(8))
    from services.core.identifiers import org_code_check_char

    first17 = body + org_code_check_char(body[8:16])
    company = first17 + uscc_check_char(first17)

    def ric(year: int) -> str:
        first = f"110105{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
        return first + ric_check_char(first)

    return Subjects(company=company, legal_rep=ric(rng.randint(1960, 1990)), person=ric(rng.randint(1960, 1990)))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def listing_records(s: Subjects, run: str, now: datetime, person_until: datetime) -> list[dict[str, object]]:
    basis = {
        "decision_no": f"(2026) Jing 01 Zhi {run[-4:]}",
        "issued_by": "Beijing No.1 Intermediate People's Court",
        "decided_on": (now - timedelta(days=10)).date().isoformat(),
    }
    common = {
        "list_kind": "SANCTION",
        "program": "court.judgment-defaulters",
        "basis": basis,
        "reason": "Failed to perform an effective judgment despite the ability to perform",
        "listed_on": now.date().isoformat(),
        "effective_from": _iso(now - timedelta(minutes=1)),
    }
    return [
        {
            "event_id": f"court:demo-{run}-c:1",
            "event_type": "LISTED",
            "entry_id": f"demo-{run}-c",
            "version": 1,
            **common,
            "effective_until": _iso(now + timedelta(days=730)),
            "subject": {
                "kind": "ORGANIZATION",
                "names": [{"value": "Example Trading Co., Ltd."}],
                "identifiers": [{"scheme": "CN_USCC", "value": s.company}],
                "related_parties": [
                    {
                        "role": "LEGAL_REPRESENTATIVE",
                        "kind": "PERSON",
                        "names": [{"value": "Wei Example"}],
                        "identifiers": [{"scheme": "CN_RIC", "value": s.legal_rep}],
                    }
                ],
            },
        },
        {
            "event_id": f"court:demo-{run}-p:1",
            "event_type": "LISTED",
            "entry_id": f"demo-{run}-p",
            "version": 1,
            **common,
            "effective_until": _iso(person_until),
            "subject": {
                "kind": "PERSON",
                "names": [{"value": "Li Example"}],
                "identifiers": [{"scheme": "CN_RIC", "value": s.person}],
            },
        },
    ]


def delisting_record(s: Subjects, run: str, now: datetime, listing: dict[str, object]) -> dict[str, object]:
    rec = dict(listing)
    rec.update(
        {
            "event_id": f"court:demo-{run}-c:2",
            "event_type": "DELISTED",
            "version": 2,
            "delisting": {
                "reason": "PERFORMED",
                "note": "Judgment performed in full",
                "decided_on": now.date().isoformat(),
            },
        }
    )
    return rec


@dataclass
class Expect:
    """One thing the scenario promises, and what was seen."""

    step: str
    agency: str
    who: str
    ident: str
    measure: str | None
    expected: str  # "restricted", "clear", or for lifts "LIFT <cause>"
    observed: str | None = None
    entry: str | None = None  # for lift expectations: the entry whose history is read

    @property
    def ok(self) -> bool:
        return self.observed == self.expected


def _ask(client: CheckClient, e: Expect) -> str | None:
    """What the agency answers, as the auditor client of the local setup asks it (``unknown`` included)."""
    try:
        if e.entry is not None:
            try:
                rows = [d for d in client.entry(e.entry)["directives"] if d["action"] == "LIFT"]
            except EntryNotFound:
                return "no history"
            return f"LIFT {rows[-1]['cause']}" if rows else "no LIFT"
        return client.check(e.ident, measure=e.measure, allow_unknown=True).status
    except SubscriberError:
        return None


def _await(expects: list[Expect], clients: Mapping[str, CheckClient], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for e in expects:
            e.observed = _ask(clients[e.agency], e)
        if all(e.ok for e in expects) or time.monotonic() > deadline:
            return
        time.sleep(0.25)


R, C = "restricted", "clear"


def run_scenario(
    clients: Mapping[str, CheckClient],
    publish: Callable[[str, Path], int],
    workdir: Path,
    *,
    person_period: float = 20.0,
    timeout: float = 60.0,
    rng: random.Random | None = None,
    say: Callable[[str], None] = print,
) -> list[Expect]:
    """Play the scenario against running subscribers (a client per agency); return every expectation with
    what was seen."""
    rng = rng or random.Random()  # noqa: S311 - demo subjects, not secrets
    s = fresh_subjects(rng)
    run = f"{datetime.now(UTC):%H%M%S}{rng.randint(0, 9999):04d}"
    now = datetime.now(UTC)
    person_until = now + timedelta(seconds=person_period)
    workdir.mkdir(parents=True, exist_ok=True)
    listings = listing_records(s, run, now, person_until)
    f1 = workdir / f"court-listings-{run}.jsonl"
    f1.write_text("".join(json.dumps(r) + "\n" for r in listings))
    say(
        f"court publishes {f1.name}: company {s.company} (legal representative {s.legal_rep}), "
        f"person {s.person} until {person_until:%H:%M:%S}Z"
    )
    results: list[Expect] = []
    rc = publish("court", f1)
    listed = [
        Expect("listed", "finance", "company", s.company, FINANCE_BAN, R),
        Expect("listed", "aviation", "legal rep", s.legal_rep, AIR, R),
        Expect("listed", "rail", "legal rep", s.legal_rep, RAIL, R),
        Expect("listed", "aviation", "person", s.person, AIR, R),
        Expect("listed", "rail", "person", s.person, RAIL, R),
    ]
    if rc == 0:
        _await(listed, clients, timeout)
    results += listed
    not_for_company = Expect("listed", "aviation", "company", s.company, None, C)
    _await([not_for_company], clients, 0)
    results.append(not_for_company)

    f2 = workdir / f"court-delisting-{run}.jsonl"
    f2.write_text(json.dumps(delisting_record(s, run, datetime.now(UTC), listings[0])) + "\n")
    say(f"court publishes {f2.name}: the company performed the judgment")
    rc = publish("court", f2)
    delisted = [
        Expect("delisted", "finance", "company", s.company, None, C),
        Expect("delisted", "aviation", "legal rep", s.legal_rep, None, C),
        Expect("delisted", "rail", "legal rep", s.legal_rep, None, C),
    ]
    if rc == 0:
        _await(delisted, clients, timeout)
    results += delisted

    wait = (person_until - datetime.now(UTC)).total_seconds()
    if wait > 0:
        say(f"waiting {wait:.0f}s for the person's period to end")
        time.sleep(wait)
    person_entry = f"court/demo-{run}-p"
    expired = [
        Expect("period ended", "aviation", "person", s.person, None, C),
        Expect("period ended", "rail", "person", s.person, None, C),
        Expect("period ended", "aviation", "person", s.person, AIR, "LIFT PERIOD_ENDED", entry=person_entry),
        Expect("period ended", "rail", "person", s.person, RAIL, "LIFT PERIOD_ENDED", entry=person_entry),
    ]
    _await(expired, clients, timeout)
    results += expired
    return results


def table(results: list[Expect]) -> str:
    head = f"{'step':13} {'agency':9} {'subject':10} {'measure':26} {'expected':17} {'observed':17} ok"
    lines = [head, "-" * len(head)]

    lines.extend(
        f"{e.step:13} {e.agency:9} {e.who:10} {(e.measure or 'any'):26} {e.expected:17} "
        f"{e.observed or 'no answer':17} {'yes' if e.ok else 'NO'}"
        for e in results
    )
    held = sum(e.ok for e in results)
    lines.append(f"{held}/{len(results)} expectations held")
    return "\n".join(lines)


def cli_publisher(home: Path) -> Callable[[str, Path], int]:
    """Publish through the real command line, exactly as an agency would."""

    def publish(agency: str, path: Path) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
        env["CONCORD_HOME"] = str(home)
        return subprocess.run(  # noqa: S603 - our own entry point
            [sys.executable, "-m", "services.cli", "publish", "--agency", agency, str(path)],
            env=env,
            check=False,
        ).returncode

    return publish


def run_local(*, stay: bool, home: Path, brokers: int = 1) -> int:
    """``make run`` / ``make demo``: set up everything, start it, play the scenario.

    With ``brokers=3`` the exchange runs on a three-node cluster (every node a broker
    and a KRaft controller), its topics with three replicas and two in sync.
    """
    from services.embedded.broker import EmbeddedKafka
    from services.embedded.libs import ensure_kafka_libs

    home = home.resolve()
    stack = LocalStack.at(home)
    print("concord: Kafka jars", file=sys.stderr)
    libs = ensure_kafka_libs(REPO_ROOT)
    creds = ensure_credentials(home, principals(stack.world))
    what = "broker" if brokers == 1 else f"cluster of {brokers} nodes"
    print(f"concord: starting the embedded Kafka {what} (KRaft, SASL_SSL + SCRAM, ACLs on)", file=sys.stderr)
    broker = EmbeddedKafka(Home(home).broker(brokers), creds, libs_dir=libs, nodes=brokers, tie_to_parent=True)
    broker.start()
    scrape = {"broker" if brokers == 1 else f"broker-{i}": a for i, a in broker.metrics_addresses().items()}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stack.write_config(broker.bootstrap, broker.ca_file, brokers=brokers)
        stack.ensure_keys()
        topics, acls = stack.provision()
        print(f"concord: broker {broker.bootstrap}; created {len(topics)} topics, {acls} ACL bindings", file=sys.stderr)
        for name, address in scrape.items():
            stack.register_scrape_target(name, address)
        stack.start_all()
        if stay:  # what `make observe` watches besides the fan-out and subscribers
            for agency in stack.world.publishers():
                stack.start_adapter(agency.agency_id)
            stack.start_drift()
            # Republished well within its maximum age, so the services never fail closed for want of it.
            stack.start_registry_publisher(every=stack.registry_max_age / 24)
        stack.wait_healthy()
        urls = stack.subscriber_urls()
        clients = {agency: stack.check_client(agency) for agency in urls}
        try:
            results = run_scenario(clients, cli_publisher(home), Home(home).demo, say=lambda m: print(f"concord: {m}"))
        finally:
            for c in clients.values():
                c.close()
        print()
        print(table(results))
        ok = all(e.ok for e in results)
        if stay:
            print("\nConcord is running. Try:")
            print(f"  .venv/bin/concord status\n  .venv/bin/concord check --agency aviation {results[3].ident}")
            for implementer, url in sorted(urls.items()):
                sub = SubscriberHome.of(home, implementer)
                print(f"  {implementer:10} {url}/v1/check?id=...   {url}/docs   (clients: {sub.clients})")
            print(f"  .venv/bin/concord subscriber queries --agency aviation --id {results[3].ident}")
            print(f"Drop JSON Lines files into {home / 'inbox'}/<agency>/ to publish them (see `concord adapter run`).")
            print("`make observe` in another terminal starts Prometheus on this exchange.")
            print("Ctrl-C stops everything.")
            try:
                while not stop.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        print("concord: stopping", file=sys.stderr)
        stack.stop()
        for name in scrape:
            stack.unregister_scrape_target(name)
        broker.stop()
