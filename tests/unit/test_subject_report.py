"""The subject report: what applies to one identifier, assembled from admitted records and the
declared world; its signature and its readable page."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from services.cli import main
from services.core.errors import SignatureInvalid
from services.core.models import Directive, ListEntryEvent, Receipt, ReceiptStatus
from services.core.routing import Accepted, EntryState, on_record, on_tick
from services.core.signing import Signer
from services.core.subject_report import (
    Asked,
    ListingStatus,
    MeasureStatus,
    SubjectReport,
    SubjectReportInvalid,
    assemble,
    signed_bytes,
)
from services.keystore import ensure_keys, load_signer
from services.ops.audit import latest_of
from services.ops.subject_report import render_html, sign, verify
from tests.unit.factories import (
    EFFECTIVE_UNTIL,
    ENTRY_ID,
    KNOWN_RIC,
    KNOWN_RIC_X,
    KNOWN_USCC,
    NOW,
    delisting,
    encode,
    entry,
    keyring,
    legal_rep,
    make_ric,
    organization,
    person,
    real_world,
    source_record,
)

pytestmark = pytest.mark.unit

WORLD = real_world()
AIR, RAIL, FINANCE = "aviation.no-air-tickets", "rail.no-high-speed-rail", "finance.procurement-ban"
OTHER_REP = make_ric(7, birth=date(1970, 2, 3))
JD = WORLD.mou("mou-judgment-defaulters", 1)


def _feed(events: Sequence[ListEntryEvent], now: datetime = NOW, tick: datetime | None = None) -> list[Directive]:
    """Every directive the fan-out's routing core issues for ``events`` (then a tick at ``tick``)."""
    state: EntryState | None = None
    out: list[Directive] = []
    for offset, ev in enumerate(events):
        acc = Accepted(
            origin="court", event=ev, source=source_record(ev, offset), digest=hashlib.sha256(encode(ev)).digest()
        )
        t = on_record(state, acc, WORLD, now)
        out += t.changed
        state = t.state
    if tick is not None and state is not None:
        out += on_tick(state, WORLD, tick).changed
    return out


def _report(
    asked: str,
    events: Sequence[ListEntryEvent],
    directives: Sequence[Directive],
    receipts: Sequence[Receipt] = (),
    now: datetime = NOW,
    scheme: str | None = None,
) -> SubjectReport:
    return assemble(
        asked=Asked.parse(asked, scheme),
        events=[("court", e) for e in events],
        latest_directives=latest_of(directives).values(),
        receipts=receipts,
        world=WORLD,
        now=now,
    )


LISTED = entry()  # the example company, KNOWN_USCC, with its legal representative KNOWN_RIC
DELISTED = entry(version=2, event_type="DELISTED", delisting={**delisting(), "note": "Judgment performed in full"})


def test_the_legal_representative_sees_the_listing_and_the_measures_that_reach_them() -> None:
    r = _report(KNOWN_RIC, [LISTED], _feed([LISTED]))
    [listing] = r.listings
    assert (listing.listing_agency.agency_id, listing.entry_id, listing.status) == (
        "court",
        ENTRY_ID,
        ListingStatus.LISTED,
    )
    assert [(p.role, p.names) for p in listing.named_as] == [("LEGAL_REPRESENTATIVE", ("Wei Example",))]
    assert listing.subject.names == ("Example Trading Co., Ltd.",)
    assert (listing.decision_no, listing.issued_by) == (
        "(2026) Jing 01 Zhi 1234",
        "Beijing No.1 Intermediate People's Court",
    )
    assert listing.program.legal_basis == WORLD.programs["court.judgment-defaulters"].legal_basis
    assert listing.until == EFFECTIVE_UNTIL

    assert {(m.implementing_agency.agency_id, m.measure_id) for m in r.in_force} == {("aviation", AIR), ("rail", RAIL)}
    for m in r.in_force:
        declared = JD.measure(m.measure_id)
        assert (m.text, m.legal_basis) == (declared.text, declared.legal_basis)
        assert (m.mou.mou_id, m.mou.version, m.mou.title, m.mou.document_no) == (JD.mou_id, 1, JD.title, JD.document_no)
        assert (m.decision_no, m.issued_by) == (listing.decision_no, listing.issued_by)
        assert (m.status, m.applies_as, m.since, m.until) == (
            MeasureStatus.IN_FORCE,
            "LEGAL_REPRESENTATIVE",
            LISTED.effective_from,
            EFFECTIVE_UNTIL,
        )
        assert (m.ends.with_listing_period, m.ends.with_mou, m.ends.on_delisting_by.agency_id) == (
            EFFECTIVE_UNTIL,
            None,
            "court",
        )
        assert m.receipt is None
    assert r.lifted == ()
    [how] = r.removal.programs
    assert how.how == WORLD.programs["court.judgment-defaulters"].removal
    assert how.how and "delist" in how.how


def test_the_company_sees_only_what_applies_to_it() -> None:
    r = _report(KNOWN_USCC, [LISTED], _feed([LISTED]))
    assert [p.role for p in r.listings[0].named_as] == ["SUBJECT"]
    assert [(m.measure_id, m.applies_as) for m in r.in_force] == [(FINANCE, "SUBJECT")]


def test_after_the_delisting_both_measures_are_lifted_with_its_cause_and_reason() -> None:
    r = _report(KNOWN_RIC, [LISTED, DELISTED], _feed([LISTED, DELISTED]))
    [listing] = r.listings
    assert (listing.version, listing.status) == (2, ListingStatus.DELISTED)
    assert listing.delisting is not None and listing.delisting.reason == "PERFORMED"
    assert r.in_force == ()
    assert {m.measure_id for m in r.lifted} == {AIR, RAIL}
    for m in r.lifted:
        assert (m.cause, m.lift_issued, m.entry_version) == ("DELISTED", True, 2)
        assert m.delisting is not None
        assert (m.delisting.reason, m.delisting.note) == ("PERFORMED", "Judgment performed in full")
        assert m.legal_basis == JD.measure(m.measure_id).legal_basis


def test_a_measure_past_its_period_is_ended_even_before_its_lift_and_then_lifted_by_the_period() -> None:
    until = NOW + timedelta(days=1)
    ev = entry(subject=person(), effective_until=until.isoformat(), publication_until=None)
    later = until + timedelta(seconds=1)
    r = _report(KNOWN_RIC_X, [ev], _feed([ev]), now=later)
    assert r.listings[0].status == ListingStatus.PERIOD_ENDED
    assert r.in_force == ()
    assert {(m.cause, m.lift_issued, m.lifted_at) for m in r.lifted} == {("PERIOD_ENDED", False, until)}
    r = _report(KNOWN_RIC_X, [ev], _feed([ev], tick=later), now=later)
    assert {(m.cause, m.lift_issued, m.delisting) for m in r.lifted} == {("PERIOD_ENDED", True, None)}


def test_a_measure_that_starts_later_is_scheduled() -> None:
    ev = entry(subject=person(), effective_from=(NOW + timedelta(days=2)).isoformat())
    r = _report(KNOWN_RIC_X, [ev], _feed([ev]))
    assert r.listings[0].status == ListingStatus.NOT_YET_EFFECTIVE
    assert {m.status for m in r.in_force} == {MeasureStatus.SCHEDULED}


def test_identifiers_are_matched_as_a_check_matches_them() -> None:
    ev = entry(subject=person(KNOWN_RIC_X))
    ds = _feed([ev])
    typed = " " + KNOWN_RIC_X[:6] + " " + KNOWN_RIC_X[6:].lower()
    assert len(_report(typed, [ev], ds).in_force) == 2
    assert len(_report(KNOWN_RIC_X, [ev], ds, scheme="CN_RIC").in_force) == 2
    wrong_scheme = _report(KNOWN_RIC_X, [ev], ds, scheme="OTHER")
    assert (wrong_scheme.listings, wrong_scheme.in_force) == ((), ())
    nobody = _report(make_ric(999), [ev], ds)
    assert (nobody.listings, nobody.in_force, nobody.lifted, nobody.removal.programs) == ((), (), (), ())


def test_a_malformed_identifier_is_refused_with_its_reason() -> None:
    with pytest.raises(SubjectReportInvalid, match="check character"):
        Asked.parse(KNOWN_RIC[:-1] + ("0" if KNOWN_RIC[-1] != "0" else "1"))


def test_another_related_party_of_the_listing_never_appears() -> None:
    ev = entry(subject=organization(reps=[legal_rep(), legal_rep(OTHER_REP, "Other Rep")]))
    r = _report(KNOWN_RIC, [ev], _feed([ev]))
    assert len(r.in_force) == 2
    text = r.model_dump_json()
    assert OTHER_REP not in text and "Other Rep" not in text


def test_a_later_version_that_no_longer_names_the_party_keeps_the_listing_and_lifts_its_measures() -> None:
    amended = entry(version=2, event_type="AMENDED", subject=organization(reps=[legal_rep(OTHER_REP)]))
    r = _report(KNOWN_RIC, [LISTED, amended], _feed([LISTED, amended]))
    [listing] = r.listings
    assert (listing.version, listing.named_in_latest_version) == (2, False)
    assert [p.role for p in listing.named_as] == ["LEGAL_REPRESENTATIVE"]
    assert {(m.measure_id, m.cause, m.delisting) for m in r.lifted} == {(AIR, "AMENDED", None), (RAIL, "AMENDED", None)}


def test_the_implementing_agencys_receipt_is_shown_and_another_agencys_is_not() -> None:
    ds = _feed([LISTED])
    air = next(d for d in ds if d.measure_id == AIR and d.subject_ref != "SUBJECT")
    rail = next(d for d in ds if d.measure_id == RAIL and d.subject_ref != "SUBJECT")
    at = NOW + timedelta(seconds=1)
    receipts = [
        Receipt(directive_id=air.directive_id, agency="aviation", status=ReceiptStatus.APPLIED, recorded_at=at),
        Receipt(directive_id=rail.directive_id, agency="aviation", status=ReceiptStatus.APPLIED, recorded_at=at),
    ]
    r = _report(KNOWN_RIC, [LISTED], ds, receipts)
    got = {m.measure_id: m.receipt for m in r.in_force}
    air_receipt = got[AIR]
    assert air_receipt is not None and (air_receipt.status, air_receipt.recorded_at) == ("APPLIED", at)
    assert got[RAIL] is None


def test_a_measure_whose_mou_version_is_no_longer_declared_is_still_reported() -> None:
    [d, *_] = [d for d in _feed([LISTED]) if d.measure_id == AIR]
    gone = Directive.model_construct(**{**d.__dict__, "mou_version": 99})
    r = _report(KNOWN_RIC, [LISTED], [gone])
    [m] = r.in_force
    assert (m.mou.version, m.mou.title, m.text) == (99, None, JD.measure(AIR).text)
    assert m.ends.with_mou is None


# --------------------------------------------------------------------------- signed form


SIGNER = Signer.generate("court", "court-k1")


def _signed(now: datetime = NOW) -> dict[str, Any]:
    return sign(_report(KNOWN_RIC, [LISTED], _feed([LISTED]), now=now), SIGNER)


def test_the_signed_bytes_are_the_canonical_json_as_read_back_from_a_file() -> None:
    report = _report(KNOWN_RIC, [LISTED], _feed([LISTED]))
    assert signed_bytes(report) == signed_bytes(json.loads(json.dumps(report.model_dump(mode="json"), indent=2)))
    assert signed_bytes(report)[:2] == b"\xc3\x4a"


def test_a_saved_report_verifies_and_names_its_signer() -> None:
    doc = json.loads(json.dumps(_signed()))
    headers = verify(doc, keyring(SIGNER), now=NOW)
    assert (headers.agency, headers.key_id) == ("court", "court-k1")


def _reason(doc: Any, now: datetime = NOW) -> str:
    with pytest.raises(SignatureInvalid) as info:
        verify(doc, keyring(SIGNER), now=now)
    return str(info.value.reason)


def test_a_changed_report_is_tampered() -> None:
    doc = _signed()
    doc["report"]["in_force"][0]["until"] = "2099-01-01T00:00:00Z"
    assert _reason(doc) == "TAMPERED"
    doc = _signed()
    doc["report"]["lifted"] = []
    doc["report"]["in_force"] = []
    assert _reason(doc) == "TAMPERED"


def test_a_signature_not_made_by_the_named_key_is_forged_and_an_unknown_key_is_refused() -> None:
    doc = _signed()
    sig = bytearray(base64.b64decode(doc["signature"]["signature"]))
    sig[0] ^= 1
    doc["signature"]["signature"] = base64.b64encode(bytes(sig)).decode()
    assert _reason(doc) == "FORGED"
    other = sign(_report(KNOWN_RIC, [LISTED], _feed([LISTED])), Signer.generate("court", "court-k9"))
    assert _reason(other) == "UNKNOWN_KEY"


def test_a_report_signed_with_another_domain_does_not_verify() -> None:
    doc = _signed()
    doc["signature"]["domain"] = "concord/v1/receipt"
    assert _reason(doc) == "MALFORMED"


@pytest.mark.parametrize(
    "doc", [None, [], {"report": {}}, {"report": {"generated_at": "x"}, "signature": {}}, {"signature": {}}]
)
def test_something_else_is_malformed(doc: Any) -> None:
    assert _reason(doc) == "MALFORMED"


def test_a_report_dated_in_the_future_is_refused() -> None:
    assert _reason(_signed(now=NOW + timedelta(days=1)), now=NOW) == "NOT_YET_MADE"


def test_the_page_shows_the_measures_and_escapes_what_records_say() -> None:
    hostile = "<script>alert(1)</script> & Co."
    subject = organization()
    subject["names"] = [{"value": hostile}]
    ev = entry(subject=subject)
    doc = sign(_report(KNOWN_RIC, [ev], _feed([ev])), SIGNER)
    page = render_html(doc, WORLD)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co." in page
    for m in (AIR, RAIL):
        assert str(escape(JD.measure(m).text)) in page
        assert str(escape(JD.measure(m).legal_basis)) in page
    assert JD.document_no in page and "(2026) Jing 01 Zhi 1234" in page
    assert "court-k1" in page and doc["signature"]["digest"] in page


def test_the_page_of_a_delisting_says_why() -> None:
    doc = sign(_report(KNOWN_RIC, [LISTED, DELISTED], _feed([LISTED, DELISTED])), SIGNER)
    page = render_html(copy.deepcopy(doc), WORLD)
    assert "No measure applies to you now." in page
    assert "the listing agency delisted the entry: the obligations were performed" in page


def test_a_report_of_nobody_renders() -> None:
    doc = sign(_report(make_ric(998), [LISTED], _feed([LISTED])), SIGNER)
    page = render_html(doc, WORLD)
    assert "No listing names this identifier." in page
    assert datetime.fromisoformat(doc["report"]["generated_at"]) == NOW.astimezone(UTC)


# --------------------------------------------------------------------------- concord subject-report --verify


def test_verify_exits_0_for_a_good_report_1_for_a_bad_one_and_2_for_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    ensure_keys(keys, ["court"])
    monkeypatch.setenv("CONCORD_KEYS_DIR", str(keys))
    doc = sign(_report(KNOWN_RIC, [LISTED], _feed([LISTED]), now=datetime.now(UTC)), load_signer(keys, "court"))
    good = tmp_path / "report.json"
    good.write_text(json.dumps(doc, indent=2))
    assert main(["subject-report", "--verify", str(good)]) == 0
    assert "valid, signed by court" in capsys.readouterr().out

    doc["report"]["lifted"] = [*doc["report"]["lifted"], *doc["report"]["in_force"]]
    doc["report"]["in_force"] = []
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    assert main(["subject-report", "--verify", str(bad)]) == 1
    assert "NOT VALID: TAMPERED" in capsys.readouterr().out

    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"report": ')
    assert main(["subject-report", "--verify", str(garbled)]) == 1
    assert "NOT VALID: MALFORMED" in capsys.readouterr().out

    assert main(["subject-report", "--verify", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: cannot be read" in capsys.readouterr().err
