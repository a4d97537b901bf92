"""The signed registry on the real broker: published by the admin, followed by an agency."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from services.cli import main
from services.core.principals import ADMIN, FANOUT
from services.core.registry import RegistryStale, admin_keyring, encode_value
from services.core.signing import Domain, Signer
from services.core.world import load_world
from services.governance.registry import follow_registry, publish_registry
from services.keystore import ensure_keys, load_keyring, load_signer
from tests.conftest import KafkaCluster
from tests.integration.support import write_operator_home
from tests.support import kafka_headers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(kafka_cluster: KafkaCluster, tmp_path: Path, unique_ns: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    write_operator_home(path, kafka_cluster, unique_ns)
    shutil.copytree(REPO_ROOT / "topics", tmp_path / "world")
    ensure_keys(path / "keys", [*sorted(load_world(tmp_path / "world").agencies), FANOUT, ADMIN])
    for name in [k for k in os.environ if k.startswith("CONCORD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CONCORD_HOME", str(path))
    monkeypatch.setenv("CONCORD_WORLD_DIR", str(tmp_path / "world"))
    assert main(["acl", "apply"]) == 0
    return path


async def test_an_agency_follows_the_published_registry(
    home: Path, kafka_cluster: KafkaCluster, unique_ns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["registry", "publish"]) == 0
    assert f"published registry serial 1 to {unique_ns}.registry" in capsys.readouterr().out
    world_dir = Path(os.environ["CONCORD_WORLD_DIR"])
    trust = admin_keyring(load_keyring(home / "keys"))

    follower = follow_registry(kafka_cluster.access("aviation"), unique_ns, trust, poll_ms=200)
    try:
        first = await asyncio.wait_for(follower.__anext__(), 30)
        assert first.serial == 1 and first.world == load_world(world_dir)
        court_keys = [k for k in first.keyring.public_keys() if k.agency == "court"]
        assert court_keys and court_keys[0].public_key == load_signer(home / "keys", "court").public_bytes()

        # A forged publication (written with the admin's credentials, signed by another key) is ignored.
        impostor = Signer.generate(ADMIN, trust.public_keys()[0].key_id)
        manifest = encode_value(
            {
                "kind": "manifest",
                "key": "manifest/registry",
                "serial": 99,
                "published_at": datetime.now(UTC).isoformat(),
                "records": {},
            }
        )
        producer = Producer(kafka_cluster.access(ADMIN).confluent_config(), logger=logging.getLogger("tests.rdkafka"))
        producer.produce(
            f"{unique_ns}.registry",
            key=b"manifest/registry",
            value=manifest,
            headers=kafka_headers(impostor.sign(Domain.REGISTRY, manifest).as_kafka()),
        )
        assert producer.flush(10) == 0

        # The next genuine publication, with an MOU terminated, arrives as a new snapshot.
        mou = world_dir / "mous" / "mou-food-safety.yaml"
        mou.write_text(mou.read_text().replace("terminated_on: null", "terminated_on: 2026-03-01"))
        publish_registry(
            kafka_cluster.access(ADMIN),
            unique_ns,
            load_world(world_dir),
            load_keyring(home / "keys"),
            load_signer(home / "keys", ADMIN),
        )
        second = await asyncio.wait_for(follower.__anext__(), 30)
        assert second.serial == 2 and second.world == load_world(world_dir)
        assert second.world.mou("mou-food-safety", 1).terminated_on is not None
    finally:
        await follower.aclose()


async def test_a_stale_registry_is_refused(home: Path, kafka_cluster: KafkaCluster, unique_ns: str) -> None:
    world = load_world(Path(os.environ["CONCORD_WORLD_DIR"]))
    publish_registry(
        kafka_cluster.access(ADMIN),
        unique_ns,
        world,
        load_keyring(home / "keys"),
        load_signer(home / "keys", ADMIN),
        at=datetime.now(UTC) - timedelta(days=2),
    )
    trust = admin_keyring(load_keyring(home / "keys"))
    follower = follow_registry(kafka_cluster.access("rail"), unique_ns, trust, max_age=timedelta(days=1))
    with pytest.raises(RegistryStale, match="older than the 86400s allowed"):
        await asyncio.wait_for(follower.__anext__(), 30)
    await follower.aclose()


async def test_an_empty_registry_is_refused(home: Path, kafka_cluster: KafkaCluster, unique_ns: str) -> None:
    trust = admin_keyring(load_keyring(home / "keys"))
    follower = follow_registry(kafka_cluster.access("finance"), unique_ns, trust)
    with pytest.raises(RegistryStale, match="no complete, verified registry publication"):
        await asyncio.wait_for(follower.__anext__(), 30)
    await follower.aclose()
