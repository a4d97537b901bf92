"""Verifiable redaction: salted commitments under one signature, parts disclosed one by one."""

from __future__ import annotations

import itertools

import pytest

from services.core.disclosure import (
    DECOY_BLOCK,
    DisclosureInvalid,
    canonical,
    check,
    disclosure_digest,
    for_target,
    reveal,
    seal,
)
from services.core.models import Disclosure, SubjectKind
from tests.unit.factories import KNOWN_RIC, KNOWN_USCC, delisting, entry, legal_rep, make_ric, organization

pytestmark = pytest.mark.unit

COMPANY = entry(subject=organization(reps=[legal_rep(), legal_rep(make_ric(2), "Second Rep")]))
REP_REF = f"LEGAL_REPRESENTATIVE:CN_RIC:{KNOWN_RIC}"


def _paths(ds: tuple[Disclosure, ...] | list[Disclosure]) -> set[str]:
    return {d.path for d in ds}


def test_every_part_is_committed_under_its_own_salt_and_decoys_pad_the_digests() -> None:
    c, ds = seal(COMPANY)
    assert _paths(ds) == {
        "subject.names[0]",
        "subject.identifiers[0]",
        "subject.related_parties[0]",
        "subject.related_parties[0].names[0]",
        "subject.related_parties[0].identifiers[0]",
        "subject.related_parties[1]",
        "subject.related_parties[1].names[0]",
        "subject.related_parties[1].identifiers[0]",
        "reason",
        "basis",
    }
    assert len(c.digests) % DECOY_BLOCK == 0 and len(c.digests) > len(ds)
    assert list(c.digests) == sorted(c.digests)
    assert {disclosure_digest(d) for d in ds} <= set(c.digests)
    assert len({d.salt for d in ds}) == len(ds)
    # What routing needs is in clear; nothing that identifies anyone is.
    assert (c.entry_id, c.version, c.program, c.subject_kind) == (
        COMPANY.entry_id,
        1,
        COMPANY.program,
        SubjectKind.ORGANIZATION,
    )
    assert KNOWN_USCC.encode() not in c.model_dump_json().encode()


def test_all_the_parts_give_back_the_event() -> None:
    c, ds = seal(COMPANY)
    assert reveal(c, ds).full_event() == COMPANY
    delisted = entry(version=2, event_type="DELISTED", delisting=delisting())
    c2, ds2 = seal(delisted)
    assert reveal(c2, ds2).full_event() == delisted


def test_the_same_value_in_two_records_gives_unrelated_digests() -> None:
    a, da = seal(COMPANY)
    b, db = seal(COMPANY)
    ids_a = {disclosure_digest(d) for d in da if d.path == "subject.identifiers[0]"}
    ids_b = {disclosure_digest(d) for d in db if d.path == "subject.identifiers[0]"}
    assert ids_a.isdisjoint(ids_b)
    assert set(a.digests).isdisjoint(b.digests)


@pytest.mark.parametrize("how", ["altered", "added", "moved", "other-record", "salt"])
def test_a_disclosure_changed_after_the_publisher_is_refused(how: str) -> None:
    c, ds = seal(COMPANY)
    ident = next(d for d in ds if d.path == "subject.identifiers[0]")
    if how == "altered":
        bad = ident.model_copy(update={"value": canonical({"scheme": "CN_USCC", "value": "91110000600037342X"})})
    elif how == "added":
        bad = Disclosure(salt=b"\0" * 16, path="subject.identifiers[1]", value=ident.value)
    elif how == "moved":
        bad = ident.model_copy(update={"path": "subject.related_parties[0].identifiers[0]"})
    elif how == "salt":
        bad = ident.model_copy(update={"salt": bytes(16)})
    else:
        _, other = seal(COMPANY)
        bad = next(d for d in other if d.path == "subject.identifiers[0]")
    with pytest.raises(DisclosureInvalid) as err:
        check(c, [*(d for d in ds if d.path != ident.path), bad])
    assert err.value.reason == "TAMPERED"


def test_a_part_given_twice_or_at_an_unknown_path_is_refused() -> None:
    c, ds = seal(COMPANY)
    with pytest.raises(DisclosureInvalid):
        check(c, [ds[0], ds[0]])
    with pytest.raises(DisclosureInvalid):
        check(c, [ds[0].model_copy(update={"path": "subject.secret"})])


def test_a_list_is_disclosed_whole_or_not_at_all() -> None:
    two_ids = organization(reps=[])
    two_ids["identifiers"].append({"scheme": "OTHER", "value": "X-1"})
    c, ds = seal(entry(subject=two_ids))
    first_only = [d for d in ds if d.path != "subject.identifiers[1]"]
    with pytest.raises(DisclosureInvalid):
        reveal(c, first_only).subject()
    assert reveal(c, [d for d in ds if not d.path.startswith("subject.identifiers")]).subject().identifiers == ()


def test_finance_receives_nothing_of_the_legal_representative() -> None:
    _, ds = seal(COMPANY)
    got = for_target(ds, "SUBJECT", None, ("kind", "names", "identifiers"))
    assert _paths(got) == {"subject.names[0]", "subject.identifiers[0]"}
    assert not any(KNOWN_RIC in d.value for d in got)


def test_aviation_receives_its_target_and_what_its_mou_names() -> None:
    _, ds = seal(COMPANY)
    got = for_target(ds, REP_REF, ("LEGAL_REPRESENTATIVE", KNOWN_RIC), ("kind", "names", "identifiers", "basis"))
    assert _paths(got) == {
        "subject.names[0]",
        "subject.identifiers[0]",
        "subject.related_parties[0]",
        "subject.related_parties[0].names[0]",
        "subject.related_parties[0].identifiers[0]",
        "basis",
    }
    assert not any(make_ric(2) in d.value for d in got)  # the other legal representative stays out
    without_names = for_target(ds, REP_REF, ("LEGAL_REPRESENTATIVE", KNOWN_RIC), ("kind",))
    assert _paths(without_names) == {"subject.related_parties[0]", "subject.related_parties[0].identifiers[0]"}


def test_the_disclosed_part_of_a_record_reads_back_without_the_rest() -> None:
    c, ds = seal(COMPANY)
    got = for_target(ds, REP_REF, ("LEGAL_REPRESENTATIVE", KNOWN_RIC), ("kind",))
    ev = reveal(c, got).event()
    assert ev.subject.names == () and ev.subject.identifiers == ()
    (party,) = ev.subject.related_parties
    assert (party.role, [i.value for i in party.identifiers]) == ("LEGAL_REPRESENTATIVE", [KNOWN_RIC])
    assert ev.reason is None and ev.basis is None


@pytest.mark.parametrize("n", [1, 7, 8, 9])
def test_decoys_hide_the_exact_number_of_parts(n: int) -> None:
    subject = organization(reps=[legal_rep(make_ric(i)) for i in range(n)])
    c, ds = seal(entry(subject=subject))
    assert len(c.digests) == next(k for k in itertools.count(DECOY_BLOCK, DECOY_BLOCK) if k >= len(ds))


def test_the_second_related_party_reads_back_without_the_first() -> None:
    c, ds = seal(COMPANY)
    second = make_ric(2)
    got = for_target(ds, f"LEGAL_REPRESENTATIVE:CN_RIC:{second}", ("LEGAL_REPRESENTATIVE", second), ("kind",))
    assert {d.path for d in got} == {"subject.related_parties[1]", "subject.related_parties[1].identifiers[0]"}
    (party,) = reveal(c, got).event().subject.related_parties
    assert [i.value for i in party.identifiers] == [second]
