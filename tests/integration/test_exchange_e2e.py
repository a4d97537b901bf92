"""A listing and a delisting travel end to end through the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.demo import cli_publisher, run_scenario, table
from services.localstack import LocalStack
from tests.integration.support import concord

pytestmark = pytest.mark.integration


def test_listing_delisting_and_expiry_reach_every_agency(exchange: LocalStack) -> None:
    clients = {agency: exchange.check_client(agency) for agency in exchange.subscriber_urls()}
    results = run_scenario(
        clients, cli_publisher(exchange.home), exchange.home / "demo", person_period=12, timeout=45, say=lambda _m: None
    )
    for c in clients.values():
        c.close()
    assert all(e.ok for e in results), table(results)
    steps = {e.step for e in results}
    assert steps == {"listed", "delisted", "period ended"}

    # `concord check` answers from the running subscriber with the API's own JSON.
    legal_rep = next(e.ident for e in results if e.who == "legal rep")
    out = concord(exchange.home, "check", "--agency", "aviation", legal_rep, timeout=60)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["id"] == legal_rep
    assert (answer["status"], answer["restricted"]) == ("clear", False)  # delisted: lifted
    assert answer["as_of"] is not None

    status = concord(exchange.home, "status", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "fanout      ok" in status.stdout


def test_make_demo_path_exits_zero(tmp_path: Path) -> None:
    """`make demo` runs `concord run --once`: its own broker, set-up, services and scenario."""
    home = tmp_path / "home"
    proc = concord(home, "run", "--once", "--home", str(home), timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "13/13 expectations held" in proc.stdout
