"""A listing and a delisting travel end to end through the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.demo import cli_publisher, run_scenario, table
from services.localstack import LocalStack

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _concord(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    env["CONCORD_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


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
    out = _concord(exchange.home, "check", "--agency", "aviation", legal_rep)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["id"] == legal_rep
    assert (answer["status"], answer["restricted"]) == ("clear", False)  # delisted: lifted
    assert answer["as_of"] is not None

    status = _concord(exchange.home, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "fanout      ok" in status.stdout


def test_make_demo_path_exits_zero(tmp_path: Path) -> None:
    """`make demo` runs `concord run --once`: its own broker, set-up, services and scenario."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "--once", "--home", str(tmp_path / "home")],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "13/13 expectations held" in proc.stdout
