"""``concord status``: broker reachable, fan-out group alive, every subscriber healthy."""

from __future__ import annotations

import json
import ssl

import httpx
from confluent_kafka import ConsumerGroupState, KafkaException

from services.core.errors import ConcordError
from services.core.principals import OPS
from services.governance.admin import admin_client
from services.settings import Settings


def gather_status(settings: Settings) -> tuple[bool, list[str]]:
    lines: list[str] = []
    ok = True
    try:
        admin = admin_client(settings.access(OPS))
        md = admin.list_topics(timeout=10)
        lines.append(f"broker      ok        {len(md.brokers)} broker(s), {len(md.topics)} topic(s) visible")
    except (KafkaException, ConcordError) as exc:
        return False, [f"broker      DOWN      {exc}"]
    group = f"{settings.effective_namespace()}-fanout"
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        members = len(desc.members)
        live = desc.state == ConsumerGroupState.STABLE and members > 0
        ok &= live
        lines.append(
            f"fanout      {'ok' if live else 'DOWN':9} group {group}: {desc.state.name.lower()}, {members} worker(s)"
        )
    except KafkaException as exc:
        ok = False
        lines.append(f"fanout      DOWN      group {group}: {exc}")
    run = settings.layout.run
    fanout_run = settings.layout.service_file("fanout")
    if fanout_run.exists():
        url = json.loads(fanout_run.read_text()).get("url")
        try:
            r = httpx.get(f"{url}/healthz", timeout=3)
            h = r.json()
            lines.append(
                f"fanout web  {'ok' if r.status_code == 200 else h.get('status', '?').upper():9} {url} "
                f"{h.get('entries_held', 0)} entries held, {h.get('expiries_pending', 0)} expiries pending"
            )
            ok &= r.status_code == 200
        except (httpx.HTTPError, ValueError) as exc:
            ok = False
            lines.append(f"fanout web  DOWN      {url}: {exc.__class__.__name__}")
    found = sorted(run.glob("subscriber-*.json")) if run.exists() else []
    if not found:
        ok = False
        lines.append("subscribers DOWN      none registered under " + str(run))
    for f in found:
        agency = f.stem.removeprefix("subscriber-")
        info = json.loads(f.read_text())
        url = info.get("url")
        try:
            # The check API is TLS with the agency's own CA; /healthz needs no client identity.
            verify = ssl.create_default_context(cafile=info["ca"]) if info.get("ca") else True
            r = httpx.get(f"{url}/healthz", timeout=3, verify=verify)
            h = r.json()
            good = r.status_code == 200
            lines.append(
                f"subscriber  {'ok' if good else h.get('status', '?').upper():9} {agency:10} {url} "
                f"{h.get('active_directives', 0)} active, lag {h.get('lag')}"
            )
        except (httpx.HTTPError, ValueError) as exc:
            good = False
            lines.append(f"subscriber  DOWN      {agency:10} {url}: {exc.__class__.__name__}")
        ok &= good
    return ok, lines
