"""`concord acl plan | apply | drift` against the real broker, through the CLI's own entry point.

Each test gets its own namespace, home folder (concord.json, credentials/, keys)
and a copy of topics/ it may change, so nothing collides with other tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError
from confluent_kafka.admin import AdminClient

from services.cli import main
from services.core.access import AclRule
from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.models import Directive, SourceRecord
from services.core.principals import ADMIN, FANOUT
from services.core.routing import Accepted, EntryState, on_record, on_tick
from services.core.signing import Domain
from services.core.world import World, load_world
from services.credentials import credentials_path, read_password
from services.governance.admin import admin_client, ensure_acls, live_acls
from services.governance.drain import measure_drain
from services.kafka_access import KafkaAccess
from services.keystore import ensure_keys, load_keyring, load_signer
from services.subscriber.service import SubscriberService
from services.subscriber.store import DirectiveStore
from tests.conftest import KafkaCluster
from tests.integration.support import write_operator_home
from tests.unit.factories import entry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30.0


@dataclass
class Home:
    path: Path
    ns: str
    world: Path
    cluster: KafkaCluster
    capsys: pytest.CaptureFixture[str]

    def concord(self, *args: str) -> tuple[int, str, str]:
        """Run ``concord ARGS --world <this test's world>`` in-process; (status, stdout, stderr)."""
        self.capsys.readouterr()
        extra = ["--world", str(self.world)] if args[0] in ("acl", "registry") else []
        code = main([*args, *extra])
        out, err = self.capsys.readouterr()
        return code, out, err

    def admin(self) -> AdminClient:
        return admin_client(self.cluster.access(ADMIN))

    def load(self) -> World:
        return load_world(self.world)

    def managed_acls(self) -> set[AclRule]:
        return {r for r in live_acls(self.admin()) if self.ns in r.resource_name}


@pytest.fixture
def home(
    kafka_cluster: KafkaCluster,
    tmp_path: Path,
    unique_ns: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Home:
    path = tmp_path / "home"
    write_operator_home(path, kafka_cluster, unique_ns)
    world = tmp_path / "world"
    shutil.copytree(REPO_ROOT / "topics", world)
    ensure_keys(path / "keys", [*sorted(load_world(world).agencies), FANOUT, ADMIN])
    for name in [k for k in os.environ if k.startswith("CONCORD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CONCORD_HOME", str(path))
    return Home(path, unique_ns, world, kafka_cluster, capsys)


def _hand_acl(home: Home, rule: AclRule) -> None:
    ensure_acls(home.admin(), [rule])


# --------------------------------------------------------------------------- apply, plan, drift


def test_apply_twice_changes_nothing_the_second_time(home: Home) -> None:
    code, out, _ = home.concord("acl", "apply")
    assert code == 0, out
    declared = len(load_world(home.world).topic_specs(home.ns))
    assert re.search(rf"Applied: \d+ binding\(s\) added, 0 removed, {declared} topic\(s\) created", out)
    assert "ledger recorded." in out
    before = home.managed_acls()

    code, out, _ = home.concord("acl", "apply")
    assert code == 0
    assert "Nothing to change" in out
    assert (
        "Applied: 0 binding(s) added, 0 removed, 0 topic(s) created, 0 reconfigured, 0 SCRAM user(s) "
        "created, 0 quota value(s) changed; ledger unchanged." in out
    )
    assert home.managed_acls() == before

    code, out, _ = home.concord("acl", "drift")
    assert code == 0 and "In sync." in out


def test_plan_is_grouped_by_agency_and_mou_with_reasons_and_as_json(home: Home) -> None:
    code, out, _ = home.concord("acl", "plan")
    assert code == 0
    lines = out.splitlines()
    finance = lines.index("finance")
    assert "  [mou-food-safety v1 + mou-judgment-defaulters v1]" in lines[finance : finance + 12]
    assert re.search(
        rf"\+ ALLOW READ TOPIC {home.ns}\.directives\.finance +grant: mou-food-safety v1 "
        r"finance\.procurement-ban; mou-judgment-defaulters v1 finance\.procurement-ban",
        out,
    )
    code, out, _ = home.concord("acl", "plan", "--json")
    plan = json.loads(out)
    assert plan["namespace"] == home.ns and len(plan["fingerprint"]) == 64
    assert {c["action"] for c in plan["acls"]} == {"add"}


def test_a_hand_added_binding_on_a_managed_principal_shows_in_drift_and_plan(home: Home, tmp_path: Path) -> None:
    assert home.concord("acl", "apply")[0] == 0
    snoop = AclRule("User:court", "TOPIC", "LITERAL", f"{home.ns}.directives.rail", "READ")
    _hand_acl(home, snoop)

    textfile = tmp_path / "drift.prom"
    code, out, _ = home.concord("acl", "drift", "--textfile", str(textfile))
    assert code == 1
    assert f"extra acl: User:court ALLOW READ TOPIC {home.ns}.directives.rail" in out
    metrics = textfile.read_text()
    assert f'concord_acl_drift_extra{{kind="acl",namespace="{home.ns}"}} 1.0' in metrics
    assert f'concord_acl_drift_missing{{kind="acl",namespace="{home.ns}"}} 0.0' in metrics

    code, out, _ = home.concord("acl", "plan")
    assert re.search(
        rf"court\n  \[not declared\]\n    - ALLOW READ TOPIC {home.ns}\.directives\.rail +revoke: "
        "not declared in topics/ and never applied by Concord",
        out,
    )

    code, _, err = home.concord("acl", "apply", "--max-deletions", "0")
    assert code == 2 and "more than the cap of 0" in err
    assert snoop in home.managed_acls()

    assert home.concord("acl", "apply")[0] == 0
    assert snoop not in home.managed_acls()
    assert home.concord("acl", "drift")[0] == 0


def test_an_unmanaged_principal_is_reported_and_never_touched(home: Home) -> None:
    stranger = AclRule("User:stranger", "TOPIC", "LITERAL", f"{home.ns}.lists.court", "READ")
    _hand_acl(home, stranger)
    code, out, _ = home.concord("acl", "apply")
    assert code == 0
    assert re.search(
        rf"! User:stranger ALLOW READ TOPIC {home.ns}\.lists\.court +principal User:stranger is not "
        "managed by Concord; reported, never touched",
        out,
    )
    assert home.concord("acl", "apply")[0] == 0
    assert stranger in home.managed_acls()

    code, out, _ = home.concord("acl", "drift", "--json")
    report = json.loads(out)
    assert code == 0 and report["in_sync"]
    assert report["counts"]["unmanaged"] == 1
    assert report["unmanaged"]["acl"][0].startswith(f"User:stranger ALLOW READ TOPIC {home.ns}.lists.court")


def test_a_stale_plan_is_refused_and_a_fresh_one_applies(home: Home, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    code, out, _ = home.concord("acl", "plan", "--out", str(plan_file))
    assert code == 0 and plan_file.exists()

    _hand_acl(home, AclRule("User:stranger", "TOPIC", "LITERAL", f"{home.ns}.registry", "READ"))
    code, _, err = home.concord("acl", "apply", "--plan", str(plan_file))
    assert code == 2
    assert "the cluster changed since this plan was made" in err
    assert not {r for r in home.managed_acls() if r.principal != "User:stranger"}

    assert home.concord("acl", "plan", "--out", str(plan_file))[0] == 0
    code, out, _ = home.concord("acl", "apply", "--plan", str(plan_file))
    assert code == 0, out
    assert "ledger recorded." in out
    assert home.concord("acl", "drift")[0] == 0


def test_drift_serves_its_gauges_on_a_metrics_port(home: Home) -> None:
    assert home.concord("acl", "apply")[0] == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCORD_")}
    env["CONCORD_HOME"] = str(home.path)
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "acl",
            "drift",
            "--world",
            str(home.world),
            "--metrics-port",
            "0",
            "--count",
            "3",
            "--interval",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            port = None
            while port is None:
                line = proc.stderr.readline()
                assert line, "drift exited before serving metrics"
                m = re.search(r"serving /metrics on 127\.0\.0\.1:(\d+)", line)
                port = int(m.group(1)) if m else None
            deadline = time.monotonic() + WAIT_S
            body = ""
            while f'namespace="{home.ns}"' not in body and time.monotonic() < deadline:
                time.sleep(0.2)
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert f'concord_acl_drift_missing{{kind="acl",namespace="{home.ns}"}} 0.0' in body
            assert f'concord_acl_drift_extra{{kind="acl",namespace="{home.ns}"}} 0.0' in body
            assert f'concord_acl_drift_unmanaged{{kind="acl",namespace="{home.ns}"}}' in body
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
            assert out.count("In sync.") == 3
        finally:
            if proc.poll() is None:
                proc.kill()


# --------------------------------------------------------------------------- MOUs come and go

NEW_MOU = """\
mou_id: {mou_id}
versions:
  - version: 1
    title: Memorandum on restricting judgment defaulters in {agency}'s field
    document_no: Test [2026] No. 7
    signatories: [court, {agency}]
    valid_from: 2020-01-01
    valid_until: null
    terminated_on: {terminated_on}
    trigger_programs: [court.judgment-defaulters]
    measures:
      - measure_id: {agency}.market-ban
        kind: PUNISH
        text: Barred from acting as a director, supervisor or senior manager.
        implementing_agency: {agency}
        legal_basis: Test law, Art. 1
        applies_to: [ORGANIZATION]
    visible_fields:
      {agency}: [kind, names, identifiers]
"""


def _write_mou(home: Home, agency: str, *, terminated_on: str = "null") -> str:
    mou_id = f"mou-{agency}-defaulters"
    (home.world / "mous" / f"{mou_id}.yaml").write_text(
        NEW_MOU.format(mou_id=mou_id, agency=agency, terminated_on=terminated_on)
    )
    return mou_id


async def _produce_directives(access: KafkaAccess, topic: str, home: Home, directives: list[Directive]) -> None:
    schemas = default_registry()
    fanout = load_signer(home.path / "keys", FANOUT)
    producer = AIOKafkaProducer(**access.aiokafka_kwargs(), acks="all")
    await producer.start()
    try:
        for d in directives:
            value = schemas.encode_model(d)
            await producer.send_and_wait(
                topic, value, key=d.key.encode(), headers=fanout.sign(Domain.DIRECTIVE, value).as_kafka()
            )
    finally:
        await producer.stop()


async def _can_read(access: KafkaAccess, topic: str, group: str) -> bool:
    consumer = AIOKafkaConsumer(
        topic, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False, **access.aiokafka_kwargs()
    )
    try:
        await asyncio.wait_for(consumer.start(), WAIT_S)
        await asyncio.wait_for(consumer.getone(), WAIT_S)
    except TopicAuthorizationFailedError:
        return False
    else:
        return True
    finally:
        await consumer.stop()


def _listing(home: Home, world: World) -> tuple[EntryState, list[Directive]]:
    """The court's example listing, routed by ``world``: the entry state and its directives."""
    court = load_signer(home.path / "keys", "court")
    event = entry()
    sealed = seal_record(event, default_registry())
    signed = court.sign(Domain.LIST_RECORD, sealed.commitments)
    source = SourceRecord(
        topic=f"{home.ns}.lists.court",
        partition=0,
        offset=0,
        agency="court",
        key_id=court.key_id,
        signature=signed.signature,
        record=sealed.commitments,
        disclosures=sealed.disclosures,
    )
    tr = on_record(
        None, Accepted(origin="court", event=event, source=source, digest=signed.digest), world, datetime.now(UTC)
    )
    assert tr.state is not None, "a listing routed leaves an entry state"
    return tr.state, list(tr.emitted)


async def _wait_drained(home: Home, agency: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while True:
        status = measure_drain(home.cluster.access(ADMIN), home.load(), home.ns, agency)
        if status.drained:
            return status.detail
        if time.monotonic() > deadline:
            raise AssertionError(f"{agency} did not drain: {status.detail}")
        await asyncio.sleep(0.5)


async def test_a_new_mou_grants_access_and_its_termination_withdraws_it_after_draining(
    home: Home, tmp_path: Path
) -> None:
    # securities implements nothing in a world without the food-safety MOU.
    (home.world / "mous" / "mou-food-safety.yaml").unlink()
    assert home.concord("acl", "apply")[0] == 0
    securities = home.cluster.access("securities")
    fanout = home.cluster.access(FANOUT)
    directives_topic = f"{home.ns}.directives.securities"
    group = f"{home.ns}-securities.check"
    assert not await _can_read(securities, directives_topic, group)

    # A new MOU gives securities a measure: the plan says so, apply grants it.
    mou_id = _write_mou(home, "securities")
    code, out, _ = home.concord("acl", "plan")
    assert re.search(
        rf"securities\n(?:  .*\n)*  \[{mou_id} v1\]\n(?:    .*\n)*    \+ ALLOW READ TOPIC "
        rf"{re.escape(directives_topic)} +grant: {mou_id} v1 securities\.market-ban",
        out,
    ), out
    assert home.concord("acl", "apply")[0] == 0

    # The fan-out routes a listing to securities; its subscriber applies it and sends a receipt.
    state, emitted = _listing(home, home.load())
    mine = [d for d in emitted if d.subscriber == "securities"]
    assert len(mine) == 1
    await _produce_directives(fanout, directives_topic, home, mine)
    assert await _can_read(securities, directives_topic, group)
    keys = home.path / "keys"
    svc = SubscriberService(
        agency="securities",
        access=securities,
        store=DirectiveStore(tmp_path / "securities.sqlite", "securities"),
        keyring=load_keyring(keys),
        schemas=default_registry(),
        signer=load_signer(keys, "securities"),
        directive_topic=directives_topic,
        receipts_topic=f"{home.ns}.receipts.securities",
        progress=False,
    )
    await svc.start()
    feed = asyncio.create_task(svc.run())
    try:
        # The MOU is terminated today: the APPLY is still in force, so access is kept, draining.
        _write_mou(home, "securities", terminated_on=datetime.now(UTC).date().isoformat())
        code, out, _ = home.concord("acl", "apply")
        assert code == 0
        assert re.search(
            rf"~ ALLOW READ TOPIC {re.escape(directives_topic)} +kept until securities has drained "
            rf"its directives \(was: {mou_id} v1 securities\.market-ban\)",
            out,
        ), out
        assert re.search(
            rf"securities: kept \(draining since .*\): 1 directive\(s\) of "
            rf"{re.escape(directives_topic)} still APPLY; waiting for the fan-out's LIFTs",
            out,
        ), out
        assert "0 removed" in out
        assert await _can_read(securities, directives_topic, group)

        # The fan-out lifts (MOU changed); once securities' receipt covers the LIFT, apply withdraws.
        lifted = on_tick(state, home.load(), datetime.now(UTC)).emitted
        lifts = [d for d in lifted if d.subscriber == "securities"]
        assert [d.action.value for d in lifts] == ["LIFT"] and lifts[0].cause.value == "MOU_CHANGED"
        await _produce_directives(fanout, directives_topic, home, lifts)
        detail = await _wait_drained(home, "securities")
        assert detail.startswith(f"drained: securities's receipts cover {directives_topic} to its end")
    finally:
        await svc.stop()
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        svc.store.close()

    code, out, _ = home.concord("acl", "apply")
    assert code == 0
    assert re.search(
        rf"- ALLOW READ TOPIC {re.escape(directives_topic)} +withdraw: no longer granted \(was: "
        rf"{mou_id} v1 securities\.market-ban\); drained: ",
        out,
    ), out
    assert "4 removed" in out
    assert not await _can_read(securities, directives_topic, group)
    assert home.concord("acl", "drift")[0] == 0


async def test_a_new_agency_gets_a_scram_user_and_its_feed(home: Home) -> None:
    agency = "x" + home.ns[1:]
    agencies = home.world / "agencies.yaml"
    agencies.write_text(
        agencies.read_text()
        + f"""\
  - agency_id: {agency}
    name: Test port authority
    publishes: false
    implements: true
"""
    )
    mou_id = _write_mou(home, agency)
    code, out, _ = home.concord("acl", "apply")
    assert code == 0, out
    assert re.search(rf"\+ {agency} +agency without a SCRAM user", out)
    assert "1 SCRAM user(s) created" in out
    creds_file = credentials_path(home.path / "credentials", agency)
    assert creds_file.stat().st_mode & 0o777 == 0o600
    password = read_password(home.path / "credentials", agency)

    topic = f"{home.ns}.directives.{agency}"
    await _produce_directives(
        home.cluster.access(FANOUT), topic, home, [d for d in _listing(home, home.load())[1] if d.subscriber == agency]
    )
    newcomer = KafkaAccess(bootstrap=home.cluster.bootstrap, ca_file=home.cluster.ca_file).as_principal(
        agency, password
    )
    assert await _can_read(newcomer, topic, f"{home.ns}-{agency}.store")
    assert not await _can_read(newcomer, f"{home.ns}.directives.aviation", f"{home.ns}-{agency}.store")
    code, out, _ = home.concord("acl", "plan")
    assert "Nothing to change" in out and mou_id not in out
