"""What the adapter refuses before signing: each bad row is reported with the dotted
path of the offending field and a message a clerk can act on, and every problem of a
row at once."""

from __future__ import annotations

from typing import Any

import pytest

from services.core.errors import RecordInvalid
from services.core.identifiers import ric_check_char
from services.core.models import EventType, ListEntryEvent, ListKind
from services.core.problems import Problem
from services.core.validation import validate_record
from tests.unit.factories import (
    KNOWN_RIC_X,
    KNOWN_USCC,
    MARKET_PROGRAM,
    delisting,
    entry_dict,
    incentive_dict,
    legal_rep,
    make_ric,
    make_uscc,
    organization,
    person,
    real_world,
)

pytestmark = pytest.mark.unit

WORLD = real_world()


def _problems(raw: Any, agency: str = "court") -> list[Problem]:
    with pytest.raises(RecordInvalid) as info:
        validate_record(raw, agency=agency, world=WORLD)
    assert info.value.problems, "RecordInvalid must name at least one problem"
    return info.value.problems


def _with_ric(ric_first17: str) -> str:
    return ric_first17 + ric_check_char(ric_first17)


def _org_ids(*ids: dict[str, str]) -> dict[str, Any]:
    return {**organization(), "identifiers": list(ids)}


# --------------------------------------------------------------------------- valid records


def test_design_example_is_valid_for_the_court() -> None:
    ev = validate_record(entry_dict(), agency="court", world=WORLD)
    assert isinstance(ev, ListEntryEvent)
    assert ev.event_type is EventType.LISTED
    assert ev.list_kind is ListKind.SANCTION
    assert ev.subject.identifiers[0].value == KNOWN_USCC
    assert ev.subject.related_parties[0].role == "LEGAL_REPRESENTATIVE"
    assert ev.effective_from.utcoffset() is not None


@pytest.mark.parametrize(
    ("raw", "agency"),
    [
        pytest.param(entry_dict(subject=person()), "court", id="person"),
        pytest.param(
            entry_dict(subject=organization(make_uscc(4242), reps=[legal_rep(make_ric(17))])), "court", id="fresh-ids"
        ),
        pytest.param(entry_dict(effective_until=None, publication_until=None), "court", id="open-ended"),
        pytest.param(
            entry_dict(version=2, event_type="DELISTED", delisting=delisting(), basis=None),
            "court",
            id="delisted-without-basis",
        ),
        pytest.param(entry_dict(version=3, event_type="EXPIRED"), "court", id="expired"),
        pytest.param(entry_dict(version=3, event_type="RETRACTED"), "court", id="retracted"),
        pytest.param(incentive_dict(), "tax", id="incentive-needs-no-basis"),
        pytest.param(
            entry_dict(program=MARKET_PROGRAM, entry_id="market-2026-7", subject=organization(make_uscc(77), reps=[])),
            "market",
            id="market-own-program",
        ),
        pytest.param(
            entry_dict(
                subject=_org_ids({"scheme": "CN_USCC", "value": KNOWN_USCC}, {"scheme": "DUNS", "value": "15-048-3782"})
            ),
            "court",
            id="opaque-second-scheme",
        ),
        pytest.param(entry_dict(effective_from="2026-03-10T08:00:00+08:00"), "court", id="offset-timezone"),
    ],
)
def test_valid_records(raw: dict[str, Any], agency: str) -> None:
    ev = validate_record(raw, agency=agency, world=WORLD)
    assert ev.entry_id == raw["entry_id"]
    assert ev.version == raw["version"]


# --------------------------------------------------------------------------- one problem each

BAD = [
    pytest.param(entry_dict(basis=None), "basis", "needs a legal basis", id="sanction-without-basis"),
    pytest.param(
        entry_dict(basis={"issued_by": "Beijing No.1 Intermediate People's Court"}),
        "basis.decision_no",
        "number of the decision",
        id="sanction-without-decision_no",
    ),
    pytest.param(
        entry_dict(basis={"decision_no": "(2026) Jing 01 Zhi 1234"}),
        "basis.issued_by",
        "authority that issued",
        id="sanction-without-issued_by",
    ),
    pytest.param(
        entry_dict(event_type="AMENDED", version=2, basis=None),
        "basis",
        "needs a legal basis",
        id="amended-sanction-without-basis",
    ),
    pytest.param(
        entry_dict(subject=_org_ids({"scheme": "CN_USCC", "value": KNOWN_USCC[:-1] + "M"})),
        "subject.identifiers[0].value",
        "check character should be 'L'",
        id="bad-uscc-check-char",
    ),
    pytest.param(
        entry_dict(subject=_org_ids({"scheme": "CN_USCC", "value": "9111000060003734"})),
        "subject.identifiers[0].value",
        "must be 18 characters",
        id="short-uscc",
    ),
    pytest.param(
        entry_dict(subject=organization(reps=[legal_rep(_with_ric("11010519910230001"))])),
        "subject.related_parties[0].identifiers[0].value",
        "not a calendar date",
        id="rep-ric-bad-birth-date",
    ),
    pytest.param(
        entry_dict(subject=person(KNOWN_RIC_X[:-1] + "1")),
        "subject.identifiers[0].value",
        "check character should be 'X'",
        id="person-ric-bad-check-char",
    ),
    pytest.param(
        entry_dict(effective_until="2026-03-01T00:00:00Z"),
        "effective_until",
        "must be after effective_from",
        id="effective_until-before-from",
    ),
    pytest.param(
        entry_dict(effective_until="2026-03-10T00:00:00Z"),
        "effective_until",
        "must be after effective_from",
        id="effective_until-equals-from",
    ),
    pytest.param(
        entry_dict(publication_until="2026-01-01T00:00:00Z"),
        "publication_until",
        "must be after effective_from",
        id="publication_until-before-from",
    ),
    pytest.param(
        entry_dict(basis={"decision_no": "x", "issued_by": "y", "decided_on": "2026-04-01"}),
        "basis.decided_on",
        "cannot postdate",
        id="decision-after-listing",
    ),
    pytest.param(
        entry_dict(event_type="DELISTED", version=2),
        "delisting.reason",
        "needs a delisting reason",
        id="delisted-without-delisting",
    ),
    pytest.param(
        entry_dict(delisting=delisting()),
        "delisting",
        "only a DELISTED event",
        id="delisting-on-listed",
    ),
    pytest.param(
        entry_dict(event_type="DELISTED", version=2, delisting={"reason": "BORED"}),
        "delisting.reason",
        "Input should be",
        id="unknown-delisting-reason",
    ),
    pytest.param(entry_dict(version=0), "version", "greater than or equal to 1", id="version-0"),
    pytest.param(entry_dict(version=-3), "version", "greater than or equal to 1", id="negative-version"),
    pytest.param(entry_dict(event_type="SUSPENDED"), "event_type", "'LISTED'", id="unknown-event_type"),
    pytest.param(entry_dict(list_kind="GREYLIST"), "list_kind", "'SANCTION'", id="unknown-list_kind"),
    pytest.param(
        entry_dict(subject=_org_ids()),
        "subject.identifiers",
        "at least 1 item",
        id="no-identifiers",
    ),
    pytest.param(
        entry_dict(subject={k: v for k, v in organization().items() if k != "identifiers"}),
        "subject.identifiers",
        "is required",
        id="identifiers-missing",
    ),
    pytest.param(
        entry_dict(subject=organization(reps=[{**legal_rep(), "identifiers": []}])),
        "subject.related_parties[0].identifiers",
        "at least 1 item",
        id="related-party-without-identifiers",
    ),
    pytest.param(
        entry_dict(program=MARKET_PROGRAM),
        "program",
        "belongs to 'market', not 'court'",
        id="program-of-another-agency",
    ),
    pytest.param(entry_dict(program="court.unknown-list"), "program", "unknown program", id="unknown-program"),
    pytest.param(entry_dict(colour="red"), "colour", "unknown field", id="unknown-top-level-field"),
    pytest.param(
        entry_dict(subject={**organization(), "nickname": "X"}),
        "subject.nickname",
        "unknown field",
        id="unknown-nested-field",
    ),
    pytest.param(
        entry_dict(effective_from="2026-03-10T00:00:00"),
        "effective_from",
        "time zone",
        id="naive-effective_from",
    ),
    pytest.param(
        entry_dict(effective_until="2028-03-10T00:00:00"),
        "effective_until",
        "time zone",
        id="naive-effective_until",
    ),
    pytest.param(
        entry_dict(list_kind="INCENTIVE"),
        "list_kind",
        "is a SANCTION list",
        id="list_kind-mismatch",
    ),
    pytest.param(
        {k: v for k, v in entry_dict().items() if k != "listed_on"},
        "listed_on",
        "is required",
        id="listed_on-missing",
    ),
    pytest.param(entry_dict(entry_id="court 2026/1"), "entry_id", "pattern", id="entry_id-with-space"),
    pytest.param(
        entry_dict(subject={**organization(), "names": []}),
        "subject.names",
        "at least 1 item",
        id="no-names",
    ),
]


@pytest.mark.parametrize(("raw", "path", "message"), BAD)
def test_bad_record_names_the_field_and_the_problem(raw: dict[str, Any], path: str, message: str) -> None:
    problems = _problems(raw)
    assert [p.path for p in problems] == [path], problems
    assert message in problems[0].reason


def test_incentive_published_by_the_court_is_refused_on_the_program() -> None:
    problems = _problems(incentive_dict(), agency="court")
    assert [(p.path, "belongs to 'tax'" in p.reason) for p in problems] == [("program", True)]


@pytest.mark.parametrize("raw", [None, "text", 42, ["a", "list"]])
def test_record_must_be_an_object(raw: Any) -> None:
    problems = _problems(raw)
    assert len(problems) == 1
    assert problems[0].path == ""
    assert "JSON object" in problems[0].reason


# --------------------------------------------------------------------------- all at once


def test_all_problems_of_a_record_are_reported_at_once() -> None:
    raw = entry_dict(
        basis={"issued_by": "Beijing No.1 Intermediate People's Court"},
        effective_until="2026-01-01T00:00:00Z",
        subject=organization(KNOWN_USCC[:-1] + "M"),
    )
    problems = _problems(raw)
    assert len(problems) == 3
    assert {p.path for p in problems} == {"basis.decision_no", "effective_until", "subject.identifiers[0].value"}


def test_all_structural_problems_are_reported_at_once() -> None:
    raw = entry_dict(version=0, colour="red", effective_from="2026-03-10T00:00:00")
    problems = _problems(raw)
    assert {p.path for p in problems} == {"version", "colour", "effective_from"}


def test_structural_and_rule_problems_are_reported_together() -> None:
    # A clerk fixes a row in one pass: a missing time zone does not hide a wrong
    # check character or a missing decision number in the same row.
    raw = entry_dict(
        effective_from="2026-03-10T00:00:00",
        basis={"issued_by": "Beijing No.1 Intermediate People's Court"},
        subject=organization(KNOWN_USCC[:-1] + "M"),
    )
    problems = _problems(raw)
    assert {p.path for p in problems} == {"effective_from", "basis.decision_no", "subject.identifiers[0].value"}


def test_every_bad_identifier_is_reported() -> None:
    raw = entry_dict(
        subject=organization(
            KNOWN_USCC[:-1] + "M",
            reps=[legal_rep(make_ric(1)), legal_rep(_with_ric("11010519910230001")), legal_rep("12345")],
        )
    )
    problems = _problems(raw)
    assert [p.path for p in problems] == [
        "subject.identifiers[0].value",
        "subject.related_parties[1].identifiers[0].value",
        "subject.related_parties[2].identifiers[0].value",
    ]


def test_problems_render_as_path_and_message() -> None:
    with pytest.raises(RecordInvalid) as info:
        validate_record(entry_dict(version=0), agency="court", world=WORLD)
    assert str(info.value).startswith("version: ")
