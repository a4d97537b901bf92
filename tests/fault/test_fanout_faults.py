"""The fan-out loses nothing and applies nothing twice across crashes and rebalances.

Each test drives a burst of listings, amendments and delistings through a running
exchange while a fan-out worker is killed (SIGKILL), joins or leaves, then proves
with the audit that every agency's store holds exactly what the source events
require now, and with the receipts that no agency applied any directive twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.localstack import LocalStack
from tests.fault.support import applied_twice, burst, publish_in_background, wait_clean
from tests.integration.support import directives, for_entry, publish, wait_for
from tests.unit.factories import entry_dict, make_ric, person

pytestmark = pytest.mark.fault


def test_kill_9_of_the_worker_mid_burst_loses_nothing_and_applies_nothing_twice(exchange: LocalStack) -> None:
    records = burst(120)
    t = publish_in_background(exchange, records)
    wait_for(lambda: directives(exchange), lambda ds: len(ds) >= 60, what="the burst to be under way")
    exchange.stop("fanout", kill=True)  # SIGKILL, mid-burst
    t.join(timeout=120)
    exchange.start_fanout()
    exchange.wait_healthy(timeout=120)
    report = wait_clean(exchange, expect_events=len(records))
    assert report.refused_events == 0
    assert applied_twice(exchange) == {}


def test_a_worker_joining_and_another_leaving_mid_burst(exchange: LocalStack) -> None:
    records = burst(120)
    t = publish_in_background(exchange, records, chunks=8)
    wait_for(lambda: directives(exchange), lambda ds: len(ds) >= 30, what="the burst to be under way")
    exchange.start_fanout(name="fanout-2")  # joins: the group rebalances mid-burst
    wait_for(lambda: directives(exchange), lambda ds: len(ds) >= 120, what="more of the burst")
    exchange.stop("fanout")  # the first one leaves, cleanly, mid-burst
    t.join(timeout=120)
    report = wait_clean(exchange, expect_events=len(records))
    assert report.refused_events == 0
    assert applied_twice(exchange) == {}


def test_a_worker_down_while_an_entry_expires(exchange: LocalStack) -> None:
    until = datetime.now(UTC) + timedelta(seconds=10)
    ric = make_ric(321, area="110102")
    publish(
        exchange,
        "court",
        [entry_dict(entry_id="exp-1", subject=person(ric), publication_until=None, effective_until=until.isoformat())],
    )
    aviation = exchange.subscriber_urls()["aviation"]

    def restricted() -> bool:
        return bool(httpx.get(f"{aviation}/v1/check", params={"id": ric}, timeout=5).json()["restricted"])

    wait_for(lambda: [restricted()], lambda r: r == [True], what="aviation to restrict the person")
    exchange.stop("fanout", kill=True)
    while datetime.now(UTC) < until:
        time.sleep(0.2)
    # The subscriber stops answering "restricted" at the expiry on its own, with no LIFT.
    assert restricted() is False
    assert [d.action.value for d in for_entry(directives(exchange), "exp-1")].count("LIFT") == 0

    exchange.start_fanout()
    exchange.wait_healthy(timeout=120)
    lifts = wait_for(
        lambda: [d for d in for_entry(directives(exchange), "exp-1") if d.action.value == "LIFT"],
        lambda ds: len(ds) >= 2,
        what="the LIFTs after restart",
    )
    assert {d.cause.value for d in lifts} == {"PERIOD_ENDED"}
    history = httpx.get(f"{aviation}/v1/entries/court/exp-1", timeout=5).json()["directives"]
    assert [h["action"] for h in history] == ["APPLY", "LIFT"]
