"""``concord deploy render kubernetes``: what it renders from topics/, checked against the APIs that read it.

Core objects are validated against Kubernetes' own OpenAPI schemas (kubernetes-validate,
strict: no field the API does not know); the Strimzi resources against Strimzi's own API
model (``io.strimzi:api`` from Maven Central, resolved by ``deploy/local/strimzi/pom.xml``
into ``.local/strimzi/libs`` on first use, read by ``tests/deploy/StrimziModelCheck.java``
on the JDK). Every ACL binding ``concord acl plan`` compiles stands in exactly one
``KafkaUser``, and nothing else does; ``deploy/kubernetes/`` is exactly what the generator
writes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.core.access import compile_acls, scram_users
from services.core.governance_plan import desired_topics
from services.core.principals import ADMIN, SERVICE_PRINCIPALS
from services.core.world import World, load_world
from services.deploy import strimzi
from services.deploy.kubernetes import DeployOptions, render
from services.deploy.render import MARKER, read_sources, render_files, write
from services.settings import REPO_ROOT

pytestmark = pytest.mark.unit

EXAMPLE = REPO_ROOT / "deploy" / "kubernetes"
EXAMPLE_DATE = date(2026, 1, 1)  # deploy/kubernetes/ is rendered with --at 2026-01-01
K8S_VERSION = "1.33.0"
STRIMZI_POM = REPO_ROOT / "deploy" / "local" / "strimzi" / "pom.xml"
STRIMZI_LIBS = REPO_ROOT / ".local" / "strimzi" / "libs"
AT = datetime.combine(EXAMPLE_DATE, datetime.min.time(), tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(REPO_ROOT / "topics")


@pytest.fixture(scope="module")
def objects(world: World) -> dict[str, list[dict[str, Any]]]:
    return render(world, DeployOptions(), read_sources(REPO_ROOT / "topics"), AT)


def _all(objects: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [o for group in objects.values() for o in group]


def _of(objects: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [o for o in _all(objects) if o["kind"] == kind]


def test_every_core_object_is_valid_for_the_kubernetes_api(objects: dict[str, list[dict[str, Any]]]) -> None:
    core = [o for o in _all(objects) if not o["apiVersion"].startswith("kafka.strimzi.io/")]
    assert {o["kind"] for o in core} == {
        "Namespace",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "Deployment",
        "PersistentVolumeClaim",
        "NetworkPolicy",
    }
    for obj in core:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_schema_check_refuses_what_the_api_would() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "eighty"}], "selectr": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _strimzi_libs() -> Path:
    if not any(STRIMZI_LIBS.glob("api-*.jar")):
        mvn = shutil.which("mvn")
        assert mvn, "Maven (mvn) resolves Strimzi's API model: install it, or run `make strimzi`"
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(STRIMZI_POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={STRIMZI_LIBS}",
            ],
            check=True,
            timeout=900,
        )
    return STRIMZI_LIBS


def _strimzi_check(resources: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    java = shutil.which("java")
    assert java, "a JDK (java) reads Strimzi's API model"
    path = tmp_path / "resources.json"
    path.write_text(json.dumps(resources))
    classpath = ":".join(str(p) for p in sorted(_strimzi_libs().glob("*.jar")))
    return subprocess.run(
        [java, "-cp", classpath, str(REPO_ROOT / "tests" / "deploy" / "StrimziModelCheck.java"), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_strimzi_resources_are_read_by_strimzis_own_model(
    world: World, objects: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    resources = [o for o in _all(objects) if o["apiVersion"].startswith("kafka.strimzi.io/")]
    assert Counter(o["kind"] for o in resources) == Counter(
        {
            "Kafka": 1,
            "KafkaNodePool": 1,
            "KafkaTopic": len(world.topic_specs()),
            "KafkaUser": len(scram_users(world)) + 1,  # and the admin
        }
    )
    # one run for the good resources and three broken ones: the check must see each problem
    broken = json.loads(json.dumps(resources[:3]))
    kafka, pool, topic = (
        {**o, "metadata": {**o["metadata"], "name": "broken-" + o["metadata"]["name"]}} for o in broken
    )
    del kafka["spec"]["kafka"]["listeners"][0]["port"]
    pool["spec"]["roles"] = ["controler"]
    topic["spec"]["partitons"] = 3
    done = _strimzi_check([*resources, kafka, pool, topic], tmp_path)
    problems = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 1, done.stdout + done.stderr
    assert problems == [
        "Kafka/broken-concord .spec.kafka.listeners[0].port: required by GenericKafkaListener",
        'KafkaNodePool/broken-combined .spec.roles[0]: "controler" reads as null',
        f"KafkaTopic/broken-{topic['metadata']['name'][7:]} .spec.partitons: unknown field for KafkaTopicSpec",
    ], done.stdout + done.stderr


def test_every_binding_acl_plan_compiles_is_in_exactly_one_kafka_user(
    world: World, objects: dict[str, list[dict[str, Any]]]
) -> None:
    compiled = compile_acls(world, "concord", AT)
    users = _of(objects, "KafkaUser")
    granted = Counter(b for u in users for b in strimzi.acl_bindings(u))
    expected = Counter(
        (r.principal, r.resource_type, r.pattern_type, r.resource_name, r.operation, r.permission, r.host)
        for r in compiled
    )
    assert granted == expected
    assert max(granted.values()) == 1
    assert {u["metadata"]["name"] for u in users} == {*SERVICE_PRINCIPALS, ADMIN, *world.agencies}
    for u in users:
        assert u["spec"]["authentication"] == {"type": "scram-sha-512"}
        lines = u["metadata"].get("annotations", {}).get(strimzi.PROVENANCE, "")
        mine = [r for r in compiled if r.principal == f"User:{u['metadata']['name']}"]
        assert lines.splitlines() == [f"{r.short()}: {r.provenance}" for r in sorted(mine)]


def test_topics_and_the_cluster_carry_the_declared_replication(
    world: World, objects: dict[str, list[dict[str, Any]]]
) -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in _of(objects, "KafkaTopic")}
    assert set(topics) == {s.name for s in desired_topics(world, "concord")}
    for spec in desired_topics(world, "concord"):
        held = topics[spec.name]
        assert (held["partitions"], held["replicas"]) == (spec.partitions, 3)
        assert held["config"]["min.insync.replicas"] == "2" == spec.kafka_config()["min.insync.replicas"]
    (kafka,) = _of(objects, "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert config["unclean.leader.election.enable"] is False
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple", "superUsers": ["concord-admin"]}
    (pool,) = _of(objects, "KafkaNodePool")
    assert (pool["spec"]["replicas"], pool["spec"]["roles"]) == (3, ["controller", "broker"])


def test_workloads_per_agency_with_their_state_on_volumes(
    world: World, objects: dict[str, list[dict[str, Any]]]
) -> None:
    sets = {s["metadata"]["name"]: s for s in _of(objects, "StatefulSet")}
    fanout = sets.pop("concord-fanout")
    assert fanout["spec"]["replicas"] == world.topic_spec("lists", "court").partitions
    assert fanout["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "concord",
        "fanout",
        "worker",
        "--name",
        "$(POD_NAME)",
        "--state-dir",
        "/var/lib/concord/fanout",
        "--web-port",
        "8080",
    ]
    assert [c["metadata"]["name"] for c in fanout["spec"]["volumeClaimTemplates"]] == ["state"]
    assert set(sets) == {f"subscriber-{a.agency_id}" for a in world.implementers()}
    services = {s["metadata"]["name"] for s in _of(objects, "Service")}
    assert services == {"concord-fanout", *sets}
    for name, s in sets.items():
        assert [c["metadata"]["name"] for c in s["spec"]["volumeClaimTemplates"]] == ["store"]
        container = s["spec"]["template"]["spec"]["containers"][0]
        agency = name.removeprefix("subscriber-")
        assert container["command"][:5] == ["concord", "subscriber", "run", "--agency", agency]
        env = {e["name"]: e for e in container["env"]}
        assert env["CONCORD_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": agency, "key": "password"}
    adapters = {d["metadata"]["name"] for d in _of(objects, "Deployment")}
    assert adapters == {f"adapter-{a.agency_id}" for a in world.publishers()}
    assert {c["metadata"]["name"] for c in _of(objects, "PersistentVolumeClaim")} == {f"{a}-inbox" for a in adapters}
    fewer = render(world, DeployOptions(fanout_replicas=10), read_sources(REPO_ROOT / "topics"), AT)
    assert (
        next(s for s in _of(fewer, "StatefulSet") if s["metadata"]["name"] == "concord-fanout")["spec"]["replicas"] == 3
    )  # never more workers than list partitions


def test_each_agency_is_kept_to_its_own_traffic(world: World, objects: dict[str, list[dict[str, Any]]]) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _of(objects, "NetworkPolicy")}
    deny = policies.pop("concord-default-deny")
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    egress = policies.pop("concord-to-kafka")["egress"]
    assert egress[0]["to"][0]["podSelector"]["matchLabels"]["strimzi.io/kind"] == "Kafka"
    assert policies.pop("concord-metrics")["ingress"][0]["from"][0]["namespaceSelector"]
    assert set(policies) == {f"subscriber-{a.agency_id}-callers" for a in world.implementers()}
    for name, spec in policies.items():
        agency = name.removeprefix("subscriber-").removesuffix("-callers")
        assert spec["podSelector"]["matchLabels"]["concord/agency"] == agency
        peers = spec["ingress"][0]["from"]
        assert [next(iter(p.values()))["matchLabels"] for p in peers] == [{"concord/agency": agency}] * 2
    monitoring = {c["metadata"]["name"]: c for c in _of(objects, "ConfigMap")}
    assert (
        monitoring["concord-prometheus-rules"]["data"]["alerts.yml"]
        == (REPO_ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    )
    assert set(monitoring["concord-grafana-dashboards"]["data"]) == {
        p.name for p in (REPO_ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")
    }


def test_the_example_folder_is_exactly_what_the_generator_writes(world: World, tmp_path: Path) -> None:
    files = render_files(world, DeployOptions(), read_sources(REPO_ROOT / "topics"), EXAMPLE_DATE)
    held = {p.name: p.read_text() for p in EXAMPLE.glob("*.yaml")}
    assert sorted(held) == sorted(files), (
        "run: concord deploy render kubernetes --out deploy/kubernetes --at 2026-01-01"
    )
    for name, text in files.items():
        assert held[name] == text, f"deploy/kubernetes/{name} differs from the generator's output: render it again"
    # rendering into a folder removes what an earlier render wrote and this one does not, and only that
    (tmp_path / "40-subscriber-gone.yaml").write_text(MARKER + " --at 2025-01-01\n")
    (tmp_path / "mine.yaml").write_text("kind: Secret\n")
    write(tmp_path, files)
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == sorted([*files, "mine.yaml"])
    for name in files:
        assert yaml.safe_load_all((tmp_path / name).read_text())


def test_every_workload_holds_the_keyring_and_the_key_it_is_checked_against(
    objects: dict[str, list[dict[str, Any]]],
) -> None:
    workloads = [*_of(objects, "StatefulSet"), *_of(objects, "Deployment")]
    assert workloads
    for w in workloads:
        mounts = {m["mountPath"] for m in w["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert {"/etc/concord/keys/keyring.json", "/etc/concord/keys/registry-key.json"} <= mounts, w["metadata"]
