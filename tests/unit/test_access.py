"""The ACL compiler: least privilege, and every binding says why it exists."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from services.core.access import (
    CONCORD_RULES,
    FANOUT,
    OPS,
    AclRule,
    Grant,
    compile_acls,
    feed_rules,
    merge_rules,
    scram_users,
)
from services.core.world import World, parse_world
from tests.unit.factories import real_world

pytestmark = pytest.mark.unit

NS = "concord"
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _rules() -> list[AclRule]:
    return compile_acls(real_world(), NS, AT)


def _of(who: str) -> list[AclRule]:
    return [r for r in _rules() if r.principal == f"User:{who}"]


def _world_with(edit: Any) -> World:
    docs = copy.deepcopy(real_world().to_documents())
    edit(docs)
    return parse_world(docs)


@pytest.mark.parametrize("agency", ["court", "market", "tax"])
def test_a_publisher_writes_only_its_own_list_topic(agency: str) -> None:
    writes = {r.resource_name for r in _of(agency) if r.operation == "WRITE"}
    assert writes == {f"{NS}.lists.{agency}"}


@pytest.mark.parametrize("agency", ["aviation", "rail", "finance", "securities", "customs"])
def test_an_implementer_reads_its_directives_writes_its_receipts_and_nothing_else(agency: str) -> None:
    mine = _of(agency)
    reads = {(r.resource_type, r.resource_name) for r in mine if r.operation == "READ"}
    assert reads == {("TOPIC", f"{NS}.directives.{agency}"), ("TOPIC", f"{NS}.registry"),
                     ("GROUP", f"{NS}-{agency}.")}
    assert {r.resource_name for r in mine if r.operation == "WRITE"} == {f"{NS}.receipts.{agency}"}
    assert all(r.pattern_type == "LITERAL" for r in mine if r.resource_type == "TOPIC")


def test_only_the_fanout_reads_list_topics_and_writes_directives() -> None:
    for r in _rules():
        covers_lists = r.resource_name.startswith(f"{NS}.lists.")
        if covers_lists and r.operation in ("READ", "ALL"):
            assert r.principal == f"User:{FANOUT}"
        if r.resource_name.startswith(f"{NS}.directives.") and r.operation in ("WRITE", "ALL"):
            assert r.principal == f"User:{FANOUT}"


def test_the_fanout_cannot_write_list_topics() -> None:
    assert not [
        r for r in _of(FANOUT) if r.resource_name.startswith(f"{NS}.lists") and r.operation not in {"READ", "DESCRIBE"}
    ]


def test_operators_only_describe() -> None:
    assert {r.operation for r in _of(OPS)} == {"DESCRIBE", "DESCRIBE_CONFIGS"}


def test_every_prefix_ends_in_a_separator_so_a_neighbouring_namespace_is_not_covered() -> None:
    for r in _rules():
        if r.pattern_type == "PREFIXED":
            assert r.resource_name[-1] in ".-", r.describe()


def test_every_binding_carries_its_grants() -> None:
    for r in _rules():
        assert r.grants and r.provenance == "; ".join(str(g) for g in r.grants)


def test_directive_access_names_the_mou_version_and_measure() -> None:
    read = next(r for r in _of("aviation") if r.operation == "READ" and r.resource_type == "TOPIC"
                and "directives" in r.resource_name)
    assert read.grants == (Grant("aviation.no-air-tickets", "mou-judgment-defaulters", 1),)
    assert read.provenance == "mou-judgment-defaulters v1 aviation.no-air-tickets"
    assert read.group_label == "mou-judgment-defaulters v1"


def test_a_binding_granted_by_two_mous_names_both() -> None:
    read = next(r for r in _of("finance") if r.operation == "READ" and "directives" in r.resource_name)
    assert read.group_label == "mou-food-safety v1 + mou-judgment-defaulters v1"
    assert {g.mou_id for g in read.grants} == {"mou-food-safety", "mou-judgment-defaulters"}


def test_baseline_rules_are_grouped_as_concord_rules() -> None:
    registry = next(r for r in _of("court") if r.resource_name == f"{NS}.registry")
    assert registry.group_label == CONCORD_RULES


def test_terminating_an_agencys_only_mou_drops_its_feed() -> None:
    def terminate(docs: dict[str, Any]) -> None:
        docs["mous/mou-food-safety.yaml"]["versions"][0]["terminated_on"] = "2026-03-01"

    rules = compile_acls(_world_with(terminate), NS, AT)
    securities = {r.resource_name for r in rules if r.principal == "User:securities"}
    assert securities == {f"{NS}.registry", f"{NS}-securities."}
    finance = {r.resource_name for r in rules if r.principal == "User:finance"}
    assert f"{NS}.directives.finance" in finance  # still granted by the judgment-defaulters MOU


def test_feed_rules_exist_for_an_agency_that_no_longer_implements() -> None:
    rules = feed_rules(real_world(), NS, "court")
    assert {(r.operation, r.resource_name) for r in rules} == {
        ("READ", f"{NS}.directives.court"), ("DESCRIBE", f"{NS}.directives.court"),
        ("WRITE", f"{NS}.receipts.court"), ("DESCRIBE", f"{NS}.receipts.court"),
    }


def test_merging_duplicates_unions_their_grants() -> None:
    a = AclRule("User:x", "TOPIC", "LITERAL", "t", "READ", grants=(Grant("m1", "mou-a", 1),))
    b = AclRule("User:x", "TOPIC", "LITERAL", "t", "READ", grants=(Grant("m2", "mou-b", 2),))
    (merged,) = merge_rules([a, b])
    assert merged.grants == (Grant("m1", "mou-a", 1), Grant("m2", "mou-b", 2))


def test_one_scram_user_per_agency_and_service() -> None:
    assert scram_users(real_world()) == (FANOUT, OPS, "aviation", "court", "customs", "finance", "market", "rail",
                                         "securities", "tax")


def test_namespaces_do_not_share_bindings() -> None:
    a = {r.resource_name for r in compile_acls(real_world(), "ns1", AT)}
    b = {r.resource_name for r in compile_acls(real_world(), "ns1x", AT)}
    assert not (a - {"kafka-cluster"}) & b
