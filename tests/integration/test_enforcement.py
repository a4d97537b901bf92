"""Enforcement that proves itself, through a real exchange: directives that do not follow from
the publisher's record and the MOUs are refused by the subscriber, whoever signed them.

Each case takes a genuine directive off aviation's topic, changes what a compromised fan-out
(or a bug in it) could change, signs it again with the fan-out's own key and writes it where
the genuine one was.  Both signatures verify; the content does not: the subscriber refuses it
with its reason, sends a REJECTED receipt, keeps its store as it was, and the audit of the
stores finds nothing to report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.core.codec import default_registry
from services.core.models import Action, Cause, Directive, Identifier, Receipt, ReceiptStatus
from services.core.signing import Domain
from services.keystore import load_signer
from services.localstack import LocalStack
from services.topic_metadata import read_to_end
from tests.fault.support import audit_stores
from tests.integration.support import directives, publish
from tests.support import wait_for
from tests.unit.factories import entry_dict, make_ric, person

pytestmark = pytest.mark.integration

SCHEMAS = default_registry()


@dataclass
class Genuine:
    stack: LocalStack
    directive: Directive
    key: bytes
    partition: int
    ric: str

    @property
    def topic(self) -> str:
        return self.stack.world.topic_name("directives", "aviation", namespace=self.stack.namespace)

    def forge(self, **changes: Any) -> Directive:
        return self.directive.model_copy(update={"directive_id": f"forged-{next(_n)}", **changes})

    def write(self, d: Directive) -> None:
        value = SCHEMAS.encode_model(d)
        headers = load_signer(self.stack.home / "keys", "concord-fanout").sign(Domain.DIRECTIVE, value).as_kafka()

        async def go() -> None:
            producer = AIOKafkaProducer(**self.stack.access("concord-fanout").aiokafka_kwargs(), acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(
                    self.topic, value=value, key=self.key, headers=headers, partition=self.partition
                )
            finally:
                await producer.stop()

        asyncio.run(go())

    def rejected(self, directive_id: str) -> Receipt:
        topic = self.stack.world.topic_name("receipts", "aviation", namespace=self.stack.namespace)

        def fetch() -> list[Receipt]:
            out = []
            for _, rec in asyncio.run(read_to_end(self.stack.access("concord-admin"), [topic])):
                r = SCHEMAS.decode_model(rec.value, Receipt)
                if r.directive_id == directive_id:
                    out.append(r)
            return out

        (receipt,) = wait_for(f"a receipt for {directive_id}", fetch, until=lambda rs: len(rs) >= 1, timeout=60)
        return receipt

    def restricted(self, ric: str | None = None) -> bool:
        with self.stack.check_client("aviation") as c:
            return c.check(ric or self.ric, measure="aviation.no-air-tickets").status == "restricted"


_n = iter(range(1, 10**6))


@pytest.fixture
def genuine(exchange: LocalStack) -> Genuine:
    ric = make_ric(808, area="110109")
    publish(exchange, "court", [entry_dict(entry_id="enf-1", subject=person(ric))])
    (d,) = wait_for(
        "aviation's directive for the listing",
        lambda: [d for d in directives(exchange) if d.entry_id == "enf-1" and d.subscriber == "aviation"],
        until=lambda ds: len(ds) == 1,
        timeout=45,
    )
    topic = exchange.world.topic_name("directives", "aviation", namespace=exchange.namespace)
    (raw,) = [
        r
        for _, r in asyncio.run(read_to_end(exchange.access("concord-admin"), [topic]))
        if SCHEMAS.kind_of(r.value) == "directive"
        and SCHEMAS.decode_model(r.value, Directive).directive_id == d.directive_id
    ]
    g = Genuine(exchange, d, raw.key, raw.partition, ric)
    wait_for("aviation restricting the person", lambda: [g.restricted()], until=lambda r: r == [True], timeout=45)
    return g


def _refused(g: Genuine, forged: Directive, reason: str) -> None:
    before = g.restricted()
    g.write(forged)
    receipt = g.rejected(forged.directive_id)
    assert receipt.status is ReceiptStatus.REJECTED
    assert receipt.reason is not None and receipt.reason.startswith(f"{reason}:")
    assert g.restricted() is before  # the store is unchanged
    report = audit_stores(g.stack)
    assert report.clean, "\n".join(report.lines())


def test_a_directive_aimed_at_another_person_than_the_record_names_is_refused(genuine: Genuine) -> None:
    other = make_ric(809, area="110109")
    target = genuine.directive.target.model_copy(update={"identifiers": (Identifier(scheme="CN_RIC", value=other),)})
    _refused(genuine, genuine.forge(target=target, seq=genuine.directive.seq + 1), "TARGET_MISMATCH")
    assert genuine.restricted(other) is False


def test_an_apply_longer_than_record_and_mou_allow_is_refused(genuine: Genuine) -> None:
    until = genuine.directive.valid_until
    assert until is not None
    _refused(
        genuine,
        genuine.forge(valid_until=until + timedelta(days=3650), seq=genuine.directive.seq + 1),
        "WINDOW_MISMATCH",
    )


def test_a_lift_of_a_standing_listing_with_no_delisting_is_refused(genuine: Genuine) -> None:
    lift = genuine.forge(action=Action.LIFT, cause=Cause.DELISTED, seq=genuine.directive.seq + 1)
    _refused(genuine, lift, "UNJUSTIFIED_LIFT")
    assert genuine.restricted() is True


def test_an_older_entry_version_with_a_higher_sequence_is_refused(genuine: Genuine) -> None:
    later = (genuine.directive.valid_until or genuine.directive.valid_from) + timedelta(days=30)
    amended = entry_dict(
        entry_id="enf-1",
        version=2,
        event_type="AMENDED",
        subject=person(genuine.ric),
        effective_until=later.isoformat(),
        publication_until=later.isoformat(),
    )
    publish(genuine.stack, "court", [amended])
    wait_for(
        "the amendment's directive",
        lambda: [
            d
            for d in directives(genuine.stack)
            if d.entry_id == "enf-1" and d.entry_version == 2 and d.subscriber == "aviation"
        ],
        until=lambda ds: len(ds) == 1,
        timeout=45,
    )
    wait_for("aviation holding version 2", lambda: [genuine.restricted()], until=lambda r: r == [True], timeout=45)
    # Version 1's genuine directive again, under a sequence number above version 2's.
    _refused(genuine, genuine.forge(seq=99), "VERSION_REGRESSION")
