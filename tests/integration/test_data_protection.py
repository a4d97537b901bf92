"""Data protection by construction, through a real exchange.

* Each agency's directive topic carries nothing of a listing beyond what its MOU's
  ``visible_fields`` name and what its directive's target needs — in no form, not even
  as bytes — while every directive still verifies to the publisher's own signature.
* No identifier of the scenario appears in clear in a Kafka key, a log line or a metric.
* An ended entry's data leaves the exchange after its retention: the fan-out drops its
  state and tombstones its directive keys, the subscribers drop the lifted directives
  and their history, and the audit of the stores stays clean.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.core.codec import default_registry
from services.core.disclosure import IDENTIFIERS, NAMES, PARTIES
from services.core.intake import admit_directive
from services.core.models import Directive
from services.keystore import load_keyring
from services.localstack import LocalStack
from services.topic_metadata import read_to_end
from tests.conftest import KafkaCluster
from tests.fault.support import audit_stores
from tests.integration.conftest import make_stack, started
from tests.integration.support import directives, publish
from tests.support import wait_for
from tests.unit.factories import delisting, entry_dict, legal_rep, make_ric, make_uscc, organization, person

pytestmark = pytest.mark.integration

SCHEMAS = default_registry()
COMPANY = make_uscc(31_337)
REP = make_ric(717, area="110108")
OTHER_REP = make_ric(718, area="110108")
PERSON = make_ric(719, area="110108")
IDS = (COMPANY, REP, OTHER_REP, PERSON)


def _scenario(stack: LocalStack) -> None:
    publish(
        stack,
        "court",
        [
            entry_dict(
                entry_id="dp-company",
                subject=organization(COMPANY, reps=[legal_rep(REP), legal_rep(OTHER_REP, "Other Rep")]),
            ),
            entry_dict(entry_id="dp-person", subject=person(PERSON)),
        ],
    )
    wait_for(
        "the scenario's directives",
        lambda: directives(stack),
        until=lambda ds: len([d for d in ds if d.entry_id.startswith("dp-")]) >= 7,
        timeout=45,
    )


def _raw(stack: LocalStack, kind: str) -> list[tuple[str, Any]]:
    topics = [s.name for s in stack.world.topic_specs(stack.namespace) if s.kind == kind]
    return asyncio.run(read_to_end(stack.access("concord-admin"), topics))


def _allowed_paths(d: Directive, visible: tuple[str, ...]) -> set[str]:
    """The disclosure paths (as regular expressions) an agency may receive with ``d``."""
    allowed = set()
    if d.subject_ref == "SUBJECT" or "identifiers" in visible:
        allowed.add(re.escape(IDENTIFIERS) + r"\[\d+\]")
    if "names" in visible:
        allowed.add(re.escape(NAMES) + r"\[\d+\]")
    party = r"\[\d+\]" if "related_parties" in visible else None
    if d.subject_ref != "SUBJECT":
        party = r"\[\d+\]"  # the target's own party: checked below to be the target's
    if party is not None:
        allowed.add(re.escape(PARTIES) + party + r"(\.identifiers\[\d+\])?")
        if "names" in visible:
            allowed.add(re.escape(PARTIES) + party + r"\.names\[\d+\]")
    allowed |= {f for f in ("reason", "basis", "delisting") if f in visible}
    return allowed


def test_each_agency_receives_only_what_its_mou_allows_and_still_verifies_it(exchange: LocalStack) -> None:
    _scenario(exchange)
    keyring = load_keyring(exchange.home / "keys")
    world = exchange.world
    checked = 0
    for topic, rec in _raw(exchange, "directives"):
        if SCHEMAS.kind_of(rec.value) != "directive":
            continue
        agency = topic.rsplit(".", 1)[1]
        d = admit_directive(
            agency=agency,
            value=rec.value,
            headers=rec.headers,
            timestamp_ms=rec.timestamp,
            keyring=keyring,
            schemas=SCHEMAS,
            world=world,
        )  # both signatures, and its routing
        if not d.entry_id.startswith("dp-"):
            continue
        assert d.source is not None
        visible = world.mou(d.mou_id, d.mou_version).fields_visible_to(agency)
        patterns = _allowed_paths(d, visible)
        for x in d.source.disclosures:
            assert any(re.fullmatch(p, x.path) for p in patterns), (agency, d.subject_ref, x.path)
        others = {REP, OTHER_REP} - {i.value for i in d.target.identifiers}
        if d.subject_ref != "SUBJECT" and "related_parties" not in visible:
            # Only the target's own party: the other legal representative is absent in any form.
            assert all(other.encode() not in rec.value for other in others), (agency, d.subject_ref)
        if agency == "finance":
            assert REP.encode() not in rec.value and OTHER_REP.encode() not in rec.value
            assert not [x for x in d.source.disclosures if x.path.startswith(PARTIES)]
        if "names" not in visible:
            assert d.target.names == ()
        checked += 1
    assert checked >= 7


def test_no_identifier_appears_in_clear_in_keys_logs_or_metrics(exchange: LocalStack) -> None:
    _scenario(exchange)
    publish(
        exchange,
        "court",
        [
            entry_dict(
                entry_id="dp-company",
                version=2,
                event_type="DELISTED",
                subject=organization(COMPANY, reps=[legal_rep(REP), legal_rep(OTHER_REP, "Other Rep")]),
                delisting=delisting(),
            )
        ],
    )
    wait_for(
        "the delisting's LIFTs",
        lambda: [d for d in directives(exchange) if d.entry_id == "dp-company" and d.action.value == "LIFT"],
        until=lambda ds: len(ds) >= 5,
        timeout=45,
    )
    time.sleep(2.0)  # the receipts of the LIFTs
    keys = [
        rec.key
        for kind in ("directives", "receipts", "notices", "quarantine")
        for _, rec in _raw(exchange, kind)
        if rec.key is not None
    ]
    assert keys
    for ident in IDS:
        assert not [k for k in keys if ident.encode() in k], ident
    logs = "".join(p.read_text(errors="replace") for p in (exchange.home / "logs").glob("*.log"))
    metrics = ""
    for name, address in exchange.scrape_targets().items():
        metrics += httpx.get(f"http://{address}/metrics", timeout=10).text
        assert name
    for ident in IDS:
        assert ident not in logs, f"{ident} in a log"
        assert ident not in metrics, f"{ident} in a metric"


@pytest.fixture
def short_retention(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str) -> Iterator[LocalStack]:
    """An exchange whose declared retention of ended entries and lifted directives is seconds."""
    world = tmp_path / "world"
    import shutil

    shutil.copytree(Path(__file__).resolve().parents[2] / "topics", world)
    doc = yaml.safe_load((world / "topics.yaml").read_text())
    retention = copy.deepcopy(doc.get("retention", {}))
    retention.update({"ended_entries_days": 15 / 86_400, "lifted_directives_days": 15 / 86_400})
    doc["retention"] = retention
    (world / "topics.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with started(make_stack(kafka_cluster, tmp_path / "home", unique_ns, world_dir=world)) as stack:
        yield stack


def test_an_ended_entry_leaves_fanout_state_topics_and_stores_after_its_retention(short_retention: LocalStack) -> None:
    stack = short_retention
    subject = person(make_ric(720, area="110108"))
    publish(stack, "court", [entry_dict(entry_id="dp-ended", subject=subject)])
    wait_for(
        "the listing's directives",
        lambda: [d for d in directives(stack) if d.entry_id == "dp-ended"],
        until=lambda ds: len(ds) >= 2,
        timeout=45,
    )
    publish(
        stack,
        "court",
        [entry_dict(entry_id="dp-ended", version=2, event_type="DELISTED", subject=subject, delisting=delisting())],
    )
    with stack.check_client("aviation") as c:
        wait_for(
            "aviation's history: the APPLY and its LIFT",
            lambda: [c.entry("dp-ended")["directives"]],
            until=lambda h: len(h[0]) == 2,
            timeout=45,
        )

    def tombstones() -> list[Any]:
        return [rec for topic, rec in _raw(stack, "directives") if rec.value is None and topic.endswith(".aviation")]

    wait_for("a tombstone for the ended entry's key", tombstones, until=lambda ts: len(ts) >= 1, timeout=90)
    fanout = next(s.url for s in stack.services if s.name == "fanout")
    wait_for(
        "the fan-out holding no state for it",
        lambda: [httpx.get(f"{fanout}/coverage", timeout=5).json()["entries"]],
        until=lambda n: n == [0],
        timeout=45,
    )

    def history() -> list[Any]:
        from services.subscriber.client import EntryNotFound

        with stack.check_client("aviation") as c:
            try:
                return list(c.entry("dp-ended")["directives"])
            except EntryNotFound:
                return []

    wait_for("aviation's store forgetting it", lambda: [history()], until=lambda h: h == [[]], timeout=60)
    report = audit_stores(stack)
    assert report.clean, "\n".join(report.lines())
