"""The declared world: the demo folder loads as issue 2 describes it, every broken
declaration fails with file, path and reason, and MOU versions switch exactly at their
boundaries."""

from __future__ import annotations

import copy
import pickle
import shutil
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.core.errors import WorldInvalid
from services.core.principals import ADMIN
from services.core.problems import Problem
from services.core.world import (
    Mou,
    World,
    iter_problems,
    load_world,
    parse_world,
)

pytestmark = pytest.mark.unit

TOPICS = Path(__file__).resolve().parents[2] / "topics"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
JD = "mous/mou-judgment-defaulters.yaml"
FS = "mous/mou-food-safety.yaml"
AG = "mous/mou-a-grade-taxpayers.yaml"


def _read_docs() -> dict[str, Any]:
    docs: dict[str, Any] = {}
    for path in sorted(TOPICS.rglob("*.yaml")):
        docs[path.relative_to(TOPICS).as_posix()] = yaml.safe_load(path.read_text("utf-8"))
    return docs


_DEMO_DOCS = _read_docs()
_DEMO_WORLD = parse_world(_DEMO_DOCS)


@pytest.fixture
def docs() -> dict[str, Any]:
    """A private, mutable copy of the demo world's documents."""
    return copy.deepcopy(_DEMO_DOCS)


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(TOPICS)


@pytest.fixture
def topics_copy(tmp_path: Path) -> Path:
    root = tmp_path / "topics"
    shutil.copytree(TOPICS, root)
    return root


def utc(day: date, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second, micro), tzinfo=UTC)


def invalid(docs: dict[str, Any]) -> list[Problem]:
    with pytest.raises(WorldInvalid) as caught:
        parse_world(docs)
    return list(caught.value.problems)


def assert_problem(problems: Sequence[Problem], file: str, path: str, reason: str) -> None:
    """One of the problems names the file and the path, and its reason says ``reason``."""
    if not any(p.file == file and p.path == path and reason in p.reason for p in problems):
        raise AssertionError(f"no problem in {file} at {path!r} saying {reason!r} among:\n{problems}")


def load_problems(root: Path) -> list[Problem]:
    with pytest.raises(WorldInvalid) as caught:
        load_world(root)
    return list(caught.value.problems)


def jd_version(docs: dict[str, Any], index: int = 0) -> dict[str, Any]:
    version: dict[str, Any] = docs[JD]["versions"][index]
    return version


# ---------------------------------------------------------------- the demo world


def test_demo_agencies(world: World) -> None:
    assert len(world.agencies) == 8
    assert [a.agency_id for a in world.publishers()] == ["court", "market", "tax"]
    assert [a.agency_id for a in world.implementers()] == [
        "aviation",
        "customs",
        "finance",
        "rail",
        "securities",
    ]
    assert not any(a.publishes and a.implements for a in world.agencies.values())
    assert world.agencies["court"].principal == "User:court"
    assert world.agencies["customs"].name == "General Administration of Customs"


def test_demo_programs(world: World) -> None:
    assert {p.program_id: (p.owner, p.list_kind) for p in world.programs.values()} == {
        "court.judgment-defaulters": ("court", "SANCTION"),
        "market.food-safety-serious": ("market", "SANCTION"),
        "tax.a-grade-taxpayers": ("tax", "INCENTIVE"),
    }
    assert all(p.title and p.legal_basis for p in world.programs.values())


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        (
            "court.judgment-defaulters",
            [
                (
                    "mou-judgment-defaulters",
                    "aviation.no-air-tickets",
                    "PUNISH",
                    "aviation",
                    ("PERSON", "RELATED:LEGAL_REPRESENTATIVE"),
                ),
                (
                    "mou-judgment-defaulters",
                    "rail.no-high-speed-rail",
                    "PUNISH",
                    "rail",
                    ("PERSON", "RELATED:LEGAL_REPRESENTATIVE"),
                ),
                ("mou-judgment-defaulters", "finance.procurement-ban", "PUNISH", "finance", ("ORGANIZATION",)),
            ],
        ),
        (
            "market.food-safety-serious",
            [
                (
                    "mou-food-safety",
                    "securities.license-restriction",
                    "PUNISH",
                    "securities",
                    ("ORGANIZATION", "RELATED:LEGAL_REPRESENTATIVE"),
                ),
                ("mou-food-safety", "finance.procurement-ban", "PUNISH", "finance", ("ORGANIZATION",)),
            ],
        ),
        (
            "tax.a-grade-taxpayers",
            [("mou-a-grade-taxpayers", "customs.green-channel", "INCENT", "customs", ("ORGANIZATION",))],
        ),
    ],
)
def test_demo_triggered_measures(world: World, program: str, expected: list[tuple[Any, ...]]) -> None:
    got = [
        (mou.mou_id, m.measure_id, m.kind, m.implementing_agency, m.applies_to)
        for mou, m in world.triggered_measures(program, NOW)
    ]
    assert got == expected
    assert all(mou.version == 1 for mou, _ in world.triggered_measures(program, NOW))


def test_demo_mous_are_complete(world: World) -> None:
    assert [(m.mou_id, m.version) for m in world.mous] == [
        ("mou-a-grade-taxpayers", 1),
        ("mou-food-safety", 1),
        ("mou-judgment-defaulters", 1),
    ]
    for mou in world.mous:
        assert mou.document_no and mou.title
        assert set(mou.visible_fields) == set(mou.implementing_agencies())
        assert mou.valid_until is None and mou.terminated_on is None
    jd = world.mou("mou-judgment-defaulters", 1)
    assert jd.signatories == ("court", "aviation", "rail", "finance")
    assert jd.fields_visible_to("aviation") == ("kind", "names", "identifiers", "basis")
    assert jd.fields_visible_to("customs") == ()
    assert [m.measure_id for _, m in world.measures_for("finance", NOW)] == [
        "finance.procurement-ban",
        "finance.procurement-ban",
    ]


def test_measure_subject_matching(world: World) -> None:
    air = world.mou("mou-judgment-defaulters", 1).measure("aviation.no-air-tickets")
    assert air.applies_to_subject("PERSON")
    assert not air.applies_to_subject("ORGANIZATION")
    assert air.related_roles() == frozenset({"LEGAL_REPRESENTATIVE"})
    ban = world.mou("mou-food-safety", 1).measure("finance.procurement-ban")
    assert ban.applies_to_subject("ORGANIZATION") and not ban.applies_to_subject("PERSON")
    assert ban.related_roles() == frozenset()


def test_topic_names_default_namespace(world: World) -> None:
    assert [s.name for s in world.topic_specs()] == [
        "concord.lists.court",
        "concord.lists.market",
        "concord.lists.tax",
        "concord.directives.aviation",
        "concord.directives.customs",
        "concord.directives.finance",
        "concord.directives.rail",
        "concord.directives.securities",
        "concord.receipts.aviation",
        "concord.receipts.customs",
        "concord.receipts.finance",
        "concord.receipts.rail",
        "concord.receipts.securities",
        "concord.quarantine",
        "concord.registry",
        "concord.fanout.state",
        "concord.notices.court",
        "concord.notices.market",
        "concord.notices.tax",
    ]
    assert world.topic_name("lists", "court") == "concord.lists.court"
    assert world.topic_name("directives", "aviation") == "concord.directives.aviation"
    assert world.topic_name("registry") == "concord.registry"


def test_topic_names_other_namespace(world: World) -> None:
    specs = world.topic_specs("t-4f2a")
    assert len(specs) == 19
    assert all(s.name.startswith("t-4f2a.") for s in specs)
    assert world.topic_name("receipts", "rail", namespace="t-4f2a") == "t-4f2a.receipts.rail"
    assert world.topic_name("quarantine", namespace="t-4f2a") == "t-4f2a.quarantine"


def test_topic_spec_configs(world: World) -> None:
    by_name = {s.name: s for s in world.topic_specs()}
    lists = by_name["concord.lists.court"]
    assert (lists.kind, lists.agency, lists.partitions, lists.replication) == ("lists", "court", 3, 3)
    # Key validity is judged at the broker's time: list and directive topics are stamped on append.
    assert lists.kafka_config() == {
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        "min.insync.replicas": "2",
        "message.timestamp.type": "LogAppendTime",
    }
    assert by_name["concord.directives.rail"].kafka_config()["cleanup.policy"] == "compact"
    assert by_name["concord.directives.rail"].kafka_config()["message.timestamp.type"] == "LogAppendTime"
    assert by_name["concord.receipts.rail"].kafka_config() == {
        "cleanup.policy": "delete",
        "retention.ms": str(30 * 24 * 3600 * 1000),
        "min.insync.replicas": "2",
    }
    quarantine = by_name["concord.quarantine"]
    assert (quarantine.partitions, quarantine.agency, quarantine.cleanup_policy) == (1, None, "delete")
    assert quarantine.retention_ms >= 90 * 24 * 3600 * 1000
    registry = by_name["concord.registry"]
    assert (registry.partitions, registry.cleanup_policy) == (1, "compact")


def test_topic_overrides_and_extra_config(docs: dict[str, Any]) -> None:
    docs["topics.yaml"]["topics"]["receipts"]["config"] = {"max.message.bytes": 2_000_000}
    docs["topics.yaml"]["topics"]["receipts"]["overrides"] = {
        "rail": {"retention_ms": 1000, "min_insync_replicas": 3, "config": {"segment.ms": 60000}},
    }
    world = parse_world(docs)
    rail = world.topic_spec("receipts", "rail")
    assert rail.kafka_config() == {
        "cleanup.policy": "delete",
        "retention.ms": "1000",
        "min.insync.replicas": "3",
        "max.message.bytes": "2000000",
        "segment.ms": "60000",
    }
    assert world.topic_spec("receipts", "finance").retention_ms == 2_592_000_000


def test_min_insync_replicas_cannot_exceed_the_replication(docs: dict[str, Any]) -> None:
    docs["topics.yaml"]["topics"]["lists"]["overrides"] = {"market": {"replication": 1}}
    assert_problem(
        invalid(docs),
        "topics.yaml",
        "topics.lists.overrides.market.min_insync_replicas",
        "min_insync_replicas 2 exceeds the replication 1 of concord.lists.market",
    )
    docs["topics.yaml"]["topics"]["lists"]["overrides"] = {}
    docs["topics.yaml"]["topics"]["lists"]["config"] = {"min.insync.replicas": 1}
    assert_problem(
        invalid(docs),
        "topics.yaml",
        'topics.lists.config["min.insync.replicas"]',
        "set min_insync_replicas instead of the raw min.insync.replicas config",
    )


@pytest.mark.parametrize(("brokers", "held"), [(None, (3, 2)), (5, (3, 2)), (3, (3, 2)), (2, (2, 1)), (1, (1, 1))])
def test_a_spec_is_fitted_to_a_smaller_cluster(world: World, brokers: int | None, held: tuple[int, int]) -> None:
    spec = world.topic_spec("lists", "court").fitted(brokers)
    assert (spec.replication, spec.min_insync_replicas) == held
    assert spec.kafka_config()["min.insync.replicas"] == str(held[1])


@pytest.mark.parametrize(
    ("kind", "agency", "namespace", "reason"),
    [
        ("lists", "aviation", "concord", "no lists topic"),
        ("directives", "court", "concord", "no directives topic"),
        ("lists", None, "concord", "per agency"),
        ("registry", "court", "concord", "one shared topic"),
        ("audit", None, "concord", "unknown topic kind"),
        ("lists", "court", "bad namespace!", "bad topic namespace"),
        ("lists", "court", "", "bad topic namespace"),
    ],
)
def test_topic_name_misuse(world: World, kind: Any, agency: str | None, namespace: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        world.topic_name(kind, agency, namespace)


def test_world_round_trips_through_documents(world: World) -> None:
    assert world == _DEMO_WORLD  # the files and their plain-dict form load alike
    assert parse_world(world.to_documents()) == world
    assert pickle.loads(pickle.dumps(world)) == world  # noqa: S301 - our own bytes
    assert hash(world) == hash(parse_world(world.to_documents()))


def test_world_is_frozen(world: World) -> None:
    with pytest.raises(ValidationError):
        world.agencies["court"].name = "x"  # type: ignore[misc]  # the assignment a frozen model refuses
    with pytest.raises(TypeError):
        world.agencies["nobody"] = world.agencies["court"]  # type: ignore[index]  # read-only mapping, as above
    with pytest.raises(TypeError):
        world.mou("mou-food-safety", 1).visible_fields.pop("finance")  # type: ignore[attr-defined]  # as above


def test_unknown_program_is_a_caller_error(world: World) -> None:
    with pytest.raises(ValueError, match=r"unknown program 'court\.nobody'"):
        world.triggered_measures("court.nobody", NOW)


# ------------------------------------------------------------ validation errors


def test_unknown_implementing_agency_from_files_names_file_path_line(topics_copy: Path) -> None:
    path = topics_copy / FS
    text = path.read_text("utf-8")
    broken = text.replace("implementing_agency: securities", "implementing_agency: securites")
    path.write_text(broken, "utf-8")
    line = broken.splitlines().index("        implementing_agency: securites") + 1
    with pytest.raises(WorldInvalid) as caught:
        load_world(topics_copy)
    assert caught.value.problems == (
        Problem(
            file=FS, line=line, path="versions[0].measures[0].implementing_agency", reason="unknown agency 'securites'"
        ),
    )
    assert caught.value.context == {
        "file": FS,
        "path": "versions[0].measures[0].implementing_agency",
        "line": line,
    }


def test_measure_without_implementing_agency(docs: dict[str, Any]) -> None:
    del jd_version(docs)["measures"][1]["implementing_agency"]
    assert_problem(invalid(docs), JD, "versions[0].measures[1].implementing_agency", "missing required key")


def test_implementing_agency_must_implement(docs: dict[str, Any]) -> None:
    version = jd_version(docs)
    version["measures"][2]["implementing_agency"] = "court"
    assert_problem(
        invalid(docs),
        JD,
        "versions[0].measures[2].implementing_agency",
        "agency 'court' is not an implementer",
    )


def test_implementing_agency_must_sign(docs: dict[str, Any]) -> None:
    jd_version(docs)["signatories"].remove("rail")
    assert_problem(
        invalid(docs),
        JD,
        "versions[0].measures[1].implementing_agency",
        "'rail' implements this measure but is not a signatory",
    )


def test_trigger_owner_must_sign(docs: dict[str, Any]) -> None:
    docs[AG]["versions"][0]["signatories"] = ["customs"]
    assert_problem(
        invalid(docs),
        AG,
        "versions[0].signatories",
        "'tax' owns trigger program 'tax.a-grade-taxpayers' but is not a signatory",
    )


@pytest.mark.parametrize(
    ("file", "mutate", "path"),
    [
        (JD, lambda d: d[JD]["versions"][0]["signatories"].append("airline"), "versions[0].signatories[4]"),
        (
            JD,
            lambda d: d[JD]["versions"][0]["visible_fields"].update(airline=["identifiers"]),
            "versions[0].visible_fields.airline",
        ),
        ("programs.yaml", lambda d: d["programs.yaml"]["programs"][0].update(owner="airline"), "programs[0].owner"),
        (
            "topics.yaml",
            lambda d: d["topics.yaml"]["topics"]["lists"].update(overrides={"airline": {"partitions": 3}}),
            "topics.lists.overrides.airline",
        ),
    ],
)
def test_unknown_agency_anywhere(docs: dict[str, Any], file: str, mutate: Any, path: str) -> None:
    mutate(docs)
    assert_problem(invalid(docs), file, path, "unknown agency 'airline'")


def test_program_with_two_owners(docs: dict[str, Any]) -> None:
    docs["programs.yaml"]["programs"].append(dict(docs["programs.yaml"]["programs"][0], owner="market"))
    assert_problem(
        invalid(docs),
        "programs.yaml",
        "programs[3].owner",
        "program 'court.judgment-defaulters' has two owners: 'court' (programs[0]) and 'market'",
    )


def test_program_declared_twice(docs: dict[str, Any]) -> None:
    docs["programs.yaml"]["programs"].append(dict(docs["programs.yaml"]["programs"][2]))
    assert_problem(
        invalid(docs),
        "programs.yaml",
        "programs[3].program_id",
        "program 'tax.a-grade-taxpayers' declared twice (first at programs[2])",
    )


def test_program_owner_must_publish(docs: dict[str, Any]) -> None:
    docs["programs.yaml"]["programs"].append(
        {
            "program_id": "aviation.unruly-passengers",
            "owner": "aviation",
            "list_kind": "SANCTION",
            "title": "Unruly passengers",
            "legal_basis": "Civil Aviation Law",
        }
    )
    assert_problem(
        invalid(docs),
        "programs.yaml",
        "programs[3].owner",
        "agency 'aviation' does not publish",
    )


def test_program_id_names_its_owner(docs: dict[str, Any]) -> None:
    docs["programs.yaml"]["programs"][1]["owner"] = "court"
    assert_problem(
        invalid(docs),
        "programs.yaml",
        "programs[1].program_id",
        "owned by 'court', so its id must start with 'court.'",
    )


def test_unknown_trigger_program(docs: dict[str, Any]) -> None:
    docs[FS]["versions"][0]["trigger_programs"] = ["market.food-safety-serios"]
    assert_problem(
        invalid(docs),
        FS,
        "versions[0].trigger_programs[0]",
        "unknown program 'market.food-safety-serios'",
    )


def test_duplicate_measure_in_one_version(docs: dict[str, Any]) -> None:
    measures = jd_version(docs)["measures"]
    measures.append(dict(measures[0]))
    assert_problem(
        invalid(docs),
        JD,
        "versions[0].measures[3].measure_id",
        "duplicate measure 'aviation.no-air-tickets' (also measures[0])",
    )


def test_measure_id_names_its_implementing_agency(docs: dict[str, Any]) -> None:
    jd_version(docs)["measures"][0]["measure_id"] = "rail.no-air-tickets"
    assert_problem(
        invalid(docs),
        JD,
        "versions[0].measures[0].measure_id",
        "implemented by 'aviation', so its id must start with 'aviation.'",
    )


def test_measure_kind_must_fit_trigger_program(docs: dict[str, Any]) -> None:
    jd_version(docs)["measures"][2]["kind"] = "INCENT"
    problems = invalid(docs)
    assert_problem(
        problems,
        JD,
        "versions[0].measures[2].kind",
        "INCENT measures cannot be triggered by SANCTION programs (SANCTION triggers PUNISH)",
    )


def test_same_measure_cannot_change_kind_between_mous(docs: dict[str, Any]) -> None:
    docs[AG]["versions"][0]["measures"].append(
        {
            "measure_id": "finance.procurement-ban",
            "kind": "INCENT",
            "text": "Preferred bidder.",
            "implementing_agency": "finance",
            "legal_basis": "x",
            "applies_to": ["ORGANIZATION"],
        }
    )
    docs[AG]["versions"][0]["signatories"].append("finance")
    docs[AG]["versions"][0]["visible_fields"]["finance"] = ["identifiers"]
    assert_problem(
        invalid(docs),
        JD,
        "versions[0].measures[2].kind",
        "measure 'finance.procurement-ban' is INCENT in mou-a-grade-taxpayers v1 but PUNISH here",
    )


@pytest.mark.parametrize(
    ("value", "index"),
    [
        ("COMPANY", 0),
        ("person", 0),
        ("RELATED:", 1),
        ("RELATED:legal_representative", 1),
        ("RELATED:LEGAL-REPRESENTATIVE", 1),
        ("RELATED:_X", 1),
        ("related:LEGAL_REPRESENTATIVE", 1),
    ],
)
def test_bad_applies_to(docs: dict[str, Any], value: str, index: int) -> None:
    jd_version(docs)["measures"][0]["applies_to"][index] = value
    problems = invalid(docs)
    assert_problem(problems, JD, f"versions[0].measures[0].applies_to[{index}]", f"bad applies_to value {value!r}")
    assert len(problems) == 1  # one mistake, one problem


def test_applies_to_rejects_duplicates_and_empty(docs: dict[str, Any]) -> None:
    jd_version(docs)["measures"][0]["applies_to"] = ["PERSON", "PERSON"]
    jd_version(docs)["measures"][2]["applies_to"] = []
    problems = invalid(docs)
    assert_problem(problems, JD, "versions[0].measures[0].applies_to", "'PERSON' is listed twice")
    assert_problem(problems, JD, "versions[0].measures[2].applies_to", "at least 1 item")


def test_visible_fields_rules(docs: dict[str, Any]) -> None:
    fields = jd_version(docs)["visible_fields"]
    del fields["rail"]
    fields["aviation"] = ["names", "kind"]
    fields["finance"] = ["identifiers", "birthday"]
    fields["customs"] = ["identifiers"]
    problems = invalid(docs)
    assert_problem(problems, JD, "versions[0].visible_fields.finance[1]", "unknown subject field 'birthday'")
    # Shape problems come first; fix them to see the consistency problems.
    fields["finance"] = ["identifiers"]
    problems = invalid(docs)
    assert_problem(
        problems, JD, "versions[0].visible_fields", "no visible fields declared for implementing agency 'rail'"
    )
    assert_problem(problems, JD, "versions[0].visible_fields.aviation", "must include 'identifiers'")
    assert_problem(problems, JD, "versions[0].visible_fields.customs", "'customs' implements no measure")


def test_overlapping_mou_versions(docs: dict[str, Any]) -> None:
    v2 = copy.deepcopy(jd_version(docs))
    v2.update(version=2, valid_from=date(2020, 1, 1))
    docs[JD]["versions"].append(v2)
    assert_problem(
        invalid(docs),
        JD,
        "versions[1].valid_from",
        "version 2 (from 2020-01-01, open-ended) overlaps version 1 (from 2016-01-20, open-ended)",
    )
    # Ending version 1 one day after version 2 starts still overlaps by that day ...
    jd_version(docs)["valid_until"] = date(2020, 1, 2)
    assert_problem(invalid(docs), JD, "versions[1].valid_from", "overlaps version 1 (2016-01-20 to 2020-01-02)")
    # ... and a termination counts as an end too.
    jd_version(docs)["valid_until"] = None
    jd_version(docs)["terminated_on"] = date(2019, 12, 31)
    assert [m.version for m in parse_world(docs).mou_versions("mou-judgment-defaulters")] == [1, 2]


def test_adjacent_mou_versions_hand_over(docs: dict[str, Any]) -> None:
    v2 = copy.deepcopy(jd_version(docs))
    v2.update(version=2, valid_from=date(2020, 1, 1))
    jd_version(docs)["valid_until"] = date(2020, 1, 1)
    docs[JD]["versions"].append(v2)
    assert len(parse_world(docs).mou_versions("mou-judgment-defaulters")) == 2


def test_mou_versions_must_start_in_order(docs: dict[str, Any]) -> None:
    v2 = copy.deepcopy(jd_version(docs))
    v2.update(version=2, valid_from=date(2015, 1, 1), valid_until=date(2016, 1, 1))
    docs[JD]["versions"].append(v2)
    assert_problem(
        invalid(docs),
        JD,
        "versions[1].valid_from",
        "version 2 starts 2015-01-01, not after version 1 (2016-01-20)",
    )


def test_mou_version_numbers_unique(docs: dict[str, Any]) -> None:
    v2 = copy.deepcopy(jd_version(docs))
    v2.update(valid_from=date(2020, 1, 1))
    jd_version(docs)["valid_until"] = date(2020, 1, 1)
    docs[JD]["versions"].append(v2)
    assert_problem(invalid(docs), JD, "versions[1].version", "version 1 declared twice (also versions[0])")


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("valid_until", date(2016, 1, 20), "valid_until 2016-01-20 must be after valid_from 2016-01-20"),
        ("terminated_on", date(2016, 1, 19), "terminated_on 2016-01-19 is before valid_from 2016-01-20"),
        ("valid_from", 20160120, "expected a date (YYYY-MM-DD), got the number 20160120"),
        ("version", 0, "greater than or equal to 1"),
        ("version", "2", "valid integer"),
    ],
)
def test_bad_mou_version_fields(docs: dict[str, Any], key: str, value: Any, reason: str) -> None:
    jd_version(docs)[key] = value
    assert_problem(invalid(docs), JD, f"versions[0].{key}", reason)


def test_mou_file_named_after_its_id(docs: dict[str, Any]) -> None:
    docs["mous/mou-jd.yaml"] = docs.pop(JD)
    assert_problem(
        invalid(docs),
        "mous/mou-jd.yaml",
        "mou_id",
        "file declares MOU 'mou-judgment-defaulters' but is named mou-jd.yaml",
    )


def test_mou_id_only_at_top_of_file(docs: dict[str, Any]) -> None:
    jd_version(docs)["mou_id"] = "mou-judgment-defaulters"
    assert_problem(invalid(docs), JD, "versions[0].mou_id", "unknown key (mou_id is declared once")


def test_partitions_at_least_one(docs: dict[str, Any]) -> None:
    docs["topics.yaml"]["topics"]["directives"]["partitions"] = 0
    assert_problem(
        invalid(docs),
        "topics.yaml",
        "topics.directives.partitions",
        "greater than or equal to 1, got 0",
    )


def test_list_topics_share_partition_count(docs: dict[str, Any]) -> None:
    docs["topics.yaml"]["topics"]["lists"]["overrides"] = {"market": {"partitions": 6}}
    assert_problem(
        invalid(docs),
        "topics.yaml",
        "topics.lists.overrides.market.partitions",
        "lists, receipts, fanout_state topics must all have the same partition count (the fan-out "
        "co-partitions them): lists of market has 6, the list topics 3",
    )
    docs["topics.yaml"]["topics"]["lists"]["overrides"] = {}
    docs["topics.yaml"]["topics"]["receipts"]["overrides"] = {"rail": {"partitions": 4}}
    assert_problem(
        invalid(docs),
        "topics.yaml",
        "topics.receipts.overrides.rail.partitions",
        "lists, receipts, fanout_state topics must all have the same partition count (the fan-out "
        "co-partitions them): receipts of rail has 4, the list topics 3",
    )
    docs["topics.yaml"]["topics"]["receipts"]["overrides"] = {}
    # Other kinds may differ per agency.
    docs["topics.yaml"]["topics"]["lists"]["overrides"] = {"market": {"partitions": 3}}
    docs["topics.yaml"]["topics"]["directives"]["overrides"] = {"rail": {"partitions": 12}}
    world = parse_world(docs)
    assert world.topic_spec("directives", "rail").partitions == 12
    assert world.topic_spec("directives", "finance").partitions == 3


def test_partitions_are_declared_not_constant(docs: dict[str, Any]) -> None:
    for kind in ("lists", "receipts", "fanout_state"):
        docs["topics.yaml"]["topics"][kind]["partitions"] = 8
    assert {
        s.partitions for s in parse_world(docs).topic_specs() if s.kind in ("lists", "receipts", "fanout_state")
    } == {8}


@pytest.mark.parametrize(
    ("kind", "update", "path", "reason"),
    [
        ("lists", {"name": "{ns}.lists"}, "topics.lists.name", "must contain {agency}"),
        ("registry", {"name": "{ns}.registry.{agency}"}, "topics.registry.name", "must not contain {agency}"),
        ("receipts", {"name": "receipts.{agency}"}, "topics.receipts.name", "must contain {ns}"),
        ("receipts", {"name": "{ns}.receipts.{agency!r}"}, "topics.receipts.name", "only plain {ns} and {agency}"),
        ("quarantine", {"name": "{ns}/quarantine"}, "topics.quarantine.name", "not a legal Kafka topic name"),
        (
            "quarantine",
            {"name": "{ns}.registry"},
            "topics.registry.name",
            "would be both a quarantine and a registry topic",
        ),
        (
            "receipts",
            {"config": {"retention.ms": "5"}},
            'topics.receipts.config["retention.ms"]',
            "set retention_ms instead",
        ),
        ("registry", {"overrides": {"court": {"partitions": 2}}}, "topics.registry.overrides", "one shared topic"),
        (
            "lists",
            {"overrides": {"rail": {"partitions": 3}}},
            "topics.lists.overrides.rail",
            "agency 'rail' does not publish",
        ),
        ("lists", {"cleanup_policy": "forever"}, "topics.lists.cleanup_policy", "'delete' or 'compact'"),
        ("lists", {"retention_ms": 0}, "topics.lists.retention_ms", "-1 (keep forever) or positive"),
        ("lists", {"replication": "3"}, "topics.lists.replication", "valid integer"),
    ],
)
def test_bad_topic_templates(docs: dict[str, Any], kind: str, update: dict[str, Any], path: str, reason: str) -> None:
    docs["topics.yaml"]["topics"][kind].update(update)
    assert_problem(invalid(docs), "topics.yaml", path, reason)


def test_missing_topic_kind(docs: dict[str, Any]) -> None:
    del docs["topics.yaml"]["topics"]["quarantine"]
    assert_problem(invalid(docs), "topics.yaml", "topics", "missing topic kind 'quarantine'")


def test_missing_required_key(docs: dict[str, Any]) -> None:
    del docs["agencies.yaml"]["agencies"][3]["name"]
    assert_problem(invalid(docs), "agencies.yaml", "agencies[3].name", "missing required key")


def test_unknown_key(docs: dict[str, Any]) -> None:
    docs["agencies.yaml"]["agencies"][0]["colour"] = "red"
    jd_version(docs)["measures"][0]["severity"] = "high"
    problems = invalid(docs)
    assert_problem(problems, "agencies.yaml", "agencies[0].colour", "unknown key")
    assert_problem(problems, JD, "versions[0].measures[0].severity", "unknown key")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Court", "not a valid agency id"),
        ("court.enforcement", "not a valid agency id"),
        (ADMIN, "reserved"),
        ("concord", "reserved"),
    ],
)
def test_bad_agency_ids(docs: dict[str, Any], value: str, reason: str) -> None:
    docs["agencies.yaml"]["agencies"][0]["agency_id"] = value
    assert_problem(invalid(docs), "agencies.yaml", "agencies[0].agency_id", reason)


def test_agency_declared_twice(docs: dict[str, Any]) -> None:
    docs["agencies.yaml"]["agencies"].append(dict(docs["agencies.yaml"]["agencies"][4], name="Rail again"))
    assert_problem(
        invalid(docs),
        "agencies.yaml",
        "agencies[8].agency_id",
        "agency 'rail' declared twice (first at agencies[4])",
    )


def test_publishes_must_be_a_real_boolean(docs: dict[str, Any]) -> None:
    docs["agencies.yaml"]["agencies"][0]["publishes"] = "yes"
    assert_problem(invalid(docs), "agencies.yaml", "agencies[0].publishes", "valid boolean")


def test_every_problem_is_reported_at_once(docs: dict[str, Any]) -> None:
    docs[FS]["versions"][0]["measures"][0]["implementing_agency"] = "securites"
    docs["programs.yaml"]["programs"][0]["owner"] = "courts"
    with pytest.raises(WorldInvalid) as caught:
        parse_world(docs)
    problems = list(iter_problems(caught.value))
    assert len(problems) == 2
    assert problems == list(caught.value.problems)
    assert_problem(problems, "programs.yaml", "programs[0].owner", "unknown agency 'courts'")
    assert_problem(problems, FS, "versions[0].measures[0].implementing_agency", "unknown agency 'securites'")


def test_malformed_yaml_names_line(topics_copy: Path) -> None:
    path = topics_copy / "programs.yaml"
    lines = path.read_text("utf-8").splitlines()
    index = next(i for i, text in enumerate(lines) if "owner: market" in text)
    lines[index] = "    owner: [market"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(WorldInvalid) as caught:
        load_world(topics_copy)
    (problem,) = caught.value.problems
    assert problem.file == "programs.yaml" and problem.reason.startswith("malformed YAML")
    assert problem.line is not None and index + 1 <= problem.line <= index + 2
    assert caught.value.context["line"] == problem.line


def test_duplicate_yaml_key_names_line(topics_copy: Path) -> None:
    path = topics_copy / "agencies.yaml"
    text = path.read_text("utf-8")
    text = text.replace("    name: Ministry of Finance\n", "    name: Ministry of Finance\n    name: MoF\n")
    path.write_text(text, "utf-8")
    line = text.splitlines().index("    name: MoF") + 1
    with pytest.raises(WorldInvalid) as caught:
        load_world(topics_copy)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.reason) == ("agencies.yaml", line, "duplicate key")
    assert problem.path.startswith("agencies[") and problem.path.endswith("].name")


def test_shape_error_from_file_has_line(topics_copy: Path) -> None:
    path = topics_copy / "topics.yaml"
    text = path.read_text("utf-8").replace("partitions: 3", "partitions: three", 1)
    path.write_text(text, "utf-8")
    line = text.splitlines().index("    partitions: three") + 1
    with pytest.raises(WorldInvalid) as caught:
        load_world(topics_copy)
    assert_problem(caught.value.problems, "topics.yaml", "topics.lists.partitions", "Input should be a valid integer")
    assert [p.line for p in caught.value.problems] == [line]


def test_missing_empty_and_stray_files(topics_copy: Path) -> None:
    (topics_copy / "programs.yaml").unlink()
    assert load_problems(topics_copy) == [Problem(file="programs.yaml", reason="file is missing")]
    (topics_copy / "programs.yaml").write_text("# nothing yet\n", "utf-8")
    assert load_problems(topics_copy) == [Problem(file="programs.yaml", reason="file is empty")]
    shutil.copy(TOPICS / "programs.yaml", topics_copy / "programs.yaml")
    (topics_copy / "mous" / "mou-extra.yml").write_text("mou_id: mou-extra\n", "utf-8")
    assert load_problems(topics_copy) == [Problem(file="mous/mou-extra.yml", reason="MOU files must end in .yaml")]
    nowhere = topics_copy / "nowhere"
    assert load_problems(nowhere) == [Problem(file=str(nowhere), reason="world folder not found")]


def test_top_level_must_be_a_mapping(docs: dict[str, Any]) -> None:
    docs["agencies.yaml"] = docs["agencies.yaml"]["agencies"]
    assert invalid(docs) == [Problem(file="agencies.yaml", reason="expected a mapping, got list")]


# ---------------------------------------------------- versions and activity in time


def _two_versions(docs: dict[str, Any], switch: date) -> World:
    """mou-judgment-defaulters v1 until ``switch``, then v2 without the rail measure."""
    v1 = jd_version(docs)
    v1["valid_until"] = switch
    v2 = copy.deepcopy(v1)
    v2.update(version=2, valid_from=switch, valid_until=None)
    v2["measures"] = [m for m in v2["measures"] if m["implementing_agency"] != "rail"]
    del v2["visible_fields"]["rail"]
    docs[JD]["versions"].append(v2)
    return parse_world(docs)


def test_is_active_boundaries(world: World) -> None:
    mou = world.mou("mou-judgment-defaulters", 1)
    start = date(2016, 1, 20)
    assert not mou.is_active(utc(start - timedelta(days=1), 23, 59, 59, 999_999))
    assert mou.is_active(utc(start))
    # 07:59 in Beijing on the first day is still the day before in UTC.
    beijing = timezone(timedelta(hours=8))
    assert not mou.is_active(datetime(2016, 1, 20, 7, 59, tzinfo=beijing))
    assert mou.is_active(datetime(2016, 1, 20, 8, 0, tzinfo=beijing))
    with pytest.raises(ValueError, match="timezone-aware"):
        mou.is_active(datetime(2020, 1, 1))  # noqa: DTZ001 - the naive time is the point


@pytest.mark.parametrize("end_key", ["valid_until", "terminated_on"])
def test_end_dates_are_exclusive(world: World, end_key: str) -> None:
    end = date(2021, 6, 1)
    mou = world.mou("mou-judgment-defaulters", 1).model_copy(update={end_key: end})
    assert mou.ends_on == end
    assert mou.is_active(utc(end - timedelta(days=1), 23, 59, 59, 999_999))
    assert not mou.is_active(utc(end))
    assert not mou.is_active(utc(end + timedelta(days=400)))


def test_earlier_of_expiry_and_termination_wins(world: World) -> None:
    mou = world.mou("mou-food-safety", 1).model_copy(
        update={"valid_until": date(2030, 1, 1), "terminated_on": date(2025, 1, 1)}
    )
    assert mou.ends_on == date(2025, 1, 1)
    assert not mou.is_active(utc(date(2026, 1, 1)))


def test_current_version_switches_on_valid_from(docs: dict[str, Any]) -> None:
    switch = date(2024, 7, 1)
    world = _two_versions(docs, switch)
    before = utc(switch - timedelta(days=1), 23, 59, 59)
    after = utc(switch)
    assert [(m.mou_id, m.version) for m in world.current_mous(before)] == [
        ("mou-a-grade-taxpayers", 1),
        ("mou-food-safety", 1),
        ("mou-judgment-defaulters", 1),
    ]
    assert ("mou-judgment-defaulters", 2) in [(m.mou_id, m.version) for m in world.current_mous(after)]
    program = "court.judgment-defaulters"
    assert "rail.no-high-speed-rail" in [m.measure_id for _, m in world.triggered_measures(program, before)]
    measures_after = world.triggered_measures(program, after)
    assert [(mou.version, m.measure_id) for mou, m in measures_after] == [
        (2, "aviation.no-air-tickets"),
        (2, "finance.procurement-ban"),
    ]
    assert world.measures_for("rail", after) == []


def test_no_mou_before_its_first_version(world: World) -> None:
    assert world.current_mous(utc(date(2016, 1, 1))) == ()
    assert [m.mou_id for m in world.current_mous(utc(date(2016, 1, 20)))] == ["mou-judgment-defaulters"]
    assert world.triggered_measures("tax.a-grade-taxpayers", utc(date(2016, 6, 30), 23)) == []


def test_terminated_latest_version_does_not_revive_its_predecessor(docs: dict[str, Any]) -> None:
    switch = date(2024, 7, 1)
    docs_copy = copy.deepcopy(docs)
    _two_versions(docs_copy, switch)
    docs_copy[JD]["versions"][1]["terminated_on"] = date(2025, 1, 1)
    world = parse_world(docs_copy)
    assert [m.version for m in world.mou_versions("mou-judgment-defaulters")] == [1, 2]
    assert world.triggered_measures("court.judgment-defaulters", utc(date(2024, 12, 31))) != []
    assert world.triggered_measures("court.judgment-defaulters", utc(date(2025, 1, 1))) == []


def test_gap_between_versions_has_no_mou(docs: dict[str, Any]) -> None:
    v1 = jd_version(docs)
    v1["valid_until"] = date(2019, 1, 1)
    v2 = copy.deepcopy(v1)
    v2.update(version=2, valid_from=date(2020, 1, 1), valid_until=None)
    docs[JD]["versions"].append(v2)
    world = parse_world(docs)
    assert world.triggered_measures("court.judgment-defaulters", utc(date(2019, 6, 1))) == []
    assert {mou.version for mou, _ in world.triggered_measures("court.judgment-defaulters", NOW)} == {2}


@st.composite
def _version_periods(draw: st.DrawFn) -> tuple[list[tuple[date, date | None]], date]:
    """Ascending, non-overlapping periods (possibly with gaps), and a day to look at."""
    day = date(2016, 1, 1)
    periods: list[tuple[date, date | None]] = []
    for _ in range(draw(st.integers(1, 5))):
        day += timedelta(days=draw(st.integers(0, 30)))
        start = day
        length = draw(st.none() | st.integers(1, 60))
        if length is None:
            periods.append((start, None))
            break
        day = start + timedelta(days=length)
        periods.append((start, day))
    probe = date(2015, 12, 20) + timedelta(days=draw(st.integers(0, 400)))
    return periods, probe


@given(_version_periods())
def test_version_in_force_is_the_one_whose_period_holds_the_day(
    case: tuple[list[tuple[date, date | None]], date],
) -> None:
    periods, probe = case
    base = _DEMO_DOCS[JD]["versions"][0]
    versions = [
        Mou.model_validate(
            {**base, "mou_id": "mou-judgment-defaulters", "version": n + 1, "valid_from": start, "valid_until": end}
        )
        for n, (start, end) in enumerate(periods)
    ]
    for a in versions:
        assert not any(a.overlaps(b) for b in versions if b is not a)
    world = _DEMO_WORLD.model_copy(update={"mous": tuple(versions)})
    expected = [
        v.version for v in versions if v.valid_from <= probe and (v.valid_until is None or probe < v.valid_until)
    ]
    assert [m.version for m in world.current_mous(utc(probe, 12))] == expected
