"""``concord subject-report`` through a real exchange: the demo's company and its legal
representative are listed, then delisted; the representative's report says what applies,
then what was lifted and why, and its signature holds until someone changes it."""

from __future__ import annotations

import json
import random
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.demo import AIR, FINANCE_BAN, RAIL, delisting_record, fresh_subjects, listing_records
from services.localstack import LocalStack
from tests.integration.support import concord, directives, for_entry, publish
from tests.support import wait_for

pytestmark = pytest.mark.integration


def _concord(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return concord(stack.home, *args, timeout=120)


def _report(stack: LocalStack, ident: str, out: Path) -> dict[str, Any]:
    html = out.with_suffix(".html")
    done = _concord(stack, "subject-report", "--id", ident, "--out", str(out), "--html", str(html))
    assert done.returncode == 0, done.stderr
    assert ident not in done.stderr  # the summary names no identifier
    assert html.read_text().startswith("<!DOCTYPE html>")
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def _verify(stack: LocalStack, path: Path) -> subprocess.CompletedProcess[str]:
    return _concord(stack, "subject-report", "--verify", str(path))


def test_the_legal_representative_learns_what_applies_then_what_was_lifted_and_why(
    exchange: LocalStack, tmp_path: Path
) -> None:
    s = fresh_subjects(random.Random())
    run = f"sr{random.randrange(10**6):06d}"
    now = datetime.now(UTC)
    company = listing_records(s, run, now, now + timedelta(days=1))[0]
    entry_id = str(company["entry_id"])
    publish(exchange, "court", [company])
    wait_for(
        "the listing's APPLYs",
        lambda: for_entry(directives(exchange), entry_id),
        until=lambda ds: len(ds) >= 3,
        timeout=45,
    )

    listed = _report(exchange, s.legal_rep, tmp_path / "listed.json")
    r = listed["report"]
    [listing] = r["listings"]
    basis = company["basis"]
    assert isinstance(basis, dict)
    assert (listing["listing_agency"]["agency_id"], listing["entry_id"], listing["status"]) == (
        "court",
        entry_id,
        "LISTED",
    )
    assert [p["role"] for p in listing["named_as"]] == ["LEGAL_REPRESENTATIVE"]
    assert (listing["decision_no"], listing["issued_by"]) == (basis["decision_no"], basis["issued_by"])
    mou = exchange.world.mou("mou-judgment-defaulters", 1)
    in_force = {m["measure_id"]: m for m in r["in_force"]}
    assert set(in_force) == {AIR, RAIL}  # finance's ban reaches the company, not its representative
    for measure_id, m in in_force.items():
        assert m["status"] == "IN_FORCE"
        assert m["implementing_agency"]["agency_id"] == measure_id.split(".")[0]
        assert (m["text"], m["legal_basis"]) == (mou.measure(measure_id).text, mou.measure(measure_id).legal_basis)
        assert (m["mou"]["mou_id"], m["mou"]["title"], m["mou"]["document_no"]) == (
            mou.mou_id,
            mou.title,
            mou.document_no,
        )
        assert (m["decision_no"], m["issued_by"]) == (basis["decision_no"], basis["issued_by"])
        assert m["until"] == company["effective_until"]
    assert r["lifted"] == []
    assert r["removal"]["programs"][0]["how"] == exchange.world.programs["court.judgment-defaulters"].removal
    assert listed["signature"]["agency"] == "court"

    company_report = _report(exchange, s.company, tmp_path / "company.json")["report"]
    assert [m["measure_id"] for m in company_report["in_force"]] == [FINANCE_BAN]

    publish(exchange, "court", [delisting_record(s, run, now, company)])
    wait_for(
        "the delisting's LIFTs",
        lambda: [d for d in for_entry(directives(exchange), entry_id) if d.action.value == "LIFT"],
        until=lambda ds: len(ds) >= 3,
        timeout=45,
    )

    delisted = _report(exchange, s.legal_rep, tmp_path / "delisted.json")
    r = delisted["report"]
    assert r["listings"][0]["status"] == "DELISTED"
    assert r["in_force"] == []
    lifted = {m["measure_id"]: m for m in r["lifted"]}
    assert set(lifted) == {AIR, RAIL}
    for m in lifted.values():
        assert (m["cause"], m["lift_issued"]) == ("DELISTED", True)
        assert (m["delisting"]["reason"], m["delisting"]["note"]) == ("PERFORMED", "Judgment performed in full")
        assert m["legal_basis"] == mou.measure(m["measure_id"]).legal_basis

    # The saved reports verify against the keyring; a changed one, or a changed signature, does not.
    for name in ("listed.json", "delisted.json"):
        ok = _verify(exchange, tmp_path / name)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "valid, signed by court" in ok.stdout
    tampered = json.loads((tmp_path / "delisted.json").read_text())
    tampered["report"]["in_force"], tampered["report"]["lifted"] = tampered["report"]["lifted"], []
    (tmp_path / "tampered.json").write_text(json.dumps(tampered, indent=2))
    bad = _verify(exchange, tmp_path / "tampered.json")
    assert (bad.returncode, "TAMPERED" in bad.stdout) == (1, True), bad.stdout + bad.stderr
    forged = json.loads((tmp_path / "listed.json").read_text())
    forged["signature"] = json.loads((tmp_path / "delisted.json").read_text())["signature"]
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    bad = _verify(exchange, tmp_path / "forged.json")
    assert bad.returncode == 1, bad.stdout + bad.stderr
