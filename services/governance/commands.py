"""The ``concord acl`` and ``concord registry`` commands.

``concord acl plan``   the readable diff (``--json`` for machines, ``--out FILE`` to save
                       it for a later ``apply --plan FILE``); exit 0.
``concord acl apply``  applies a saved plan if the cluster has not changed since, or
                       computes, shows and applies one; caps deletions; exit 0.
``concord acl drift``  exit 0 when the cluster matches the world, 1 with the
                       differences; ``--textfile`` and ``--metrics-port`` export gauges.
``concord registry publish``  publishes the signed registry as concord-admin.

Refusals (a stale plan, too many deletions) are :class:`ConcordError`s: the CLI
prints them in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.core.access import ADMIN
from services.core.errors import ConfigError
from services.core.governance_plan import DEFAULT_MAX_DELETIONS, Plan

EXIT_DRIFT = 1


def _settings(args: argparse.Namespace) -> Any:
    from services.settings import Settings

    overrides: dict[str, Any] = {}
    if getattr(args, "world", None):
        overrides["world_dir"] = Path(args.world)
    return Settings(**overrides)


def _governance(args: argparse.Namespace) -> Any:
    from services.core.world import load_world
    from services.governance.acl import Governance

    settings = _settings(args)
    return Governance(
        access=settings.access(ADMIN),
        world=load_world(settings.world_dir),
        namespace=settings.effective_namespace(),
        credentials_file=settings.credentials_file,
        brokers=settings.cluster_size(),
    )


def cmd_acl_plan(args: argparse.Namespace) -> int:
    gov = _governance(args)
    plan = gov.plan(force_withdraw=args.force_withdraw)
    if args.out:
        Path(args.out).write_text(plan.to_json())
    if args.json:
        print(plan.to_json())
    else:
        print(plan.render(max_deletions=args.max_deletions))
        if args.out:
            print(
                f"Saved to {args.out}: `concord acl apply --plan {args.out}` applies exactly this, "
                "if the cluster has not changed meanwhile."
            )
    return 0


def cmd_acl_apply(args: argparse.Namespace) -> int:
    gov = _governance(args)
    if args.plan:
        path = Path(args.plan)
        if not path.exists():
            raise ConfigError(f"no such plan file: {path}")
        plan = Plan.from_json(path.read_text())
        print(f"Applying {path} (made {plan.created_at.isoformat()} against live state {plan.fingerprint[:16]})")
    else:
        plan = gov.plan(force_withdraw=args.force_withdraw)
    print(plan.render(max_deletions=args.max_deletions))
    result = gov.apply(plan, max_deletions=args.max_deletions)
    print(result.summary())
    return 0


def cmd_acl_drift(args: argparse.Namespace) -> int:
    from services.governance.drift import DriftMetrics, DriftReport

    gov = _governance(args)
    metrics = DriftMetrics.create()
    server = None
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        server, _thread = start_http_server(args.metrics_port, addr=args.metrics_host, registry=metrics.registry)
        print(f"serving /metrics on {args.metrics_host}:{server.server_port}", file=sys.stderr, flush=True)
    count = args.count if args.count is not None else (None if server is not None else 1)
    checks = 0
    in_sync = True
    try:
        while count is None or checks < count:
            if checks:
                time.sleep(args.interval)
            report = DriftReport.of(gov.plan())
            metrics.observe(report, datetime.now(UTC).timestamp())
            if args.textfile:
                metrics.write_textfile(Path(args.textfile))
            print(json.dumps(report.to_json(), indent=2) if args.json else report.render(), flush=True)
            in_sync = report.in_sync
            checks += 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0 if in_sync else EXIT_DRIFT


def cmd_registry_publish(args: argparse.Namespace) -> int:
    from services.core.world import load_world
    from services.governance.registry import publish_registry
    from services.keystore import load_keyring, load_signer

    settings = _settings(args)
    keyring = load_keyring(settings.keys_path)
    signer = load_signer(settings.keys_path, ADMIN)
    pub = publish_registry(
        settings.access(ADMIN), settings.effective_namespace(), load_world(settings.world_dir), keyring, signer
    )
    print(
        f"published registry serial {pub.serial} to {pub.topic}: {pub.records} signed record(s), "
        f"{pub.tombstones} tombstone(s), at {pub.published_at.isoformat()}"
    )
    return 0


def add_commands(sub: Any) -> None:
    """Register ``acl`` and ``registry`` on the main parser's subcommands."""
    s = sub.add_parser("acl", help="topics, SCRAM users and ACLs compiled from the MOUs: plan, apply, drift")
    acl = s.add_subparsers(dest="acl_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--world", help="the topics/ folder to compile (default: CONCORD_WORLD_DIR or topics/)")

    p = acl.add_parser("plan", help="show what apply would change, grouped by agency and MOU, with reasons")
    common(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--out", help="save the plan for `concord acl apply --plan FILE`")
    p.add_argument(
        "--max-deletions",
        type=int,
        default=DEFAULT_MAX_DELETIONS,
        help="warn when the plan removes more bindings than this",
    )
    p.add_argument(
        "--force-withdraw",
        action="append",
        default=[],
        metavar="AGENCY",
        help="withdraw AGENCY's directive access without waiting for it to drain",
    )
    p.set_defaults(fn=cmd_acl_plan)

    p = acl.add_parser("apply", help="apply a saved plan (refused if the cluster changed since), or plan and apply")
    common(p)
    p.add_argument("--plan", help="a plan saved by `concord acl plan --out FILE`")
    p.add_argument(
        "--max-deletions",
        type=int,
        default=DEFAULT_MAX_DELETIONS,
        help=f"refuse to remove more bindings than this (default {DEFAULT_MAX_DELETIONS})",
    )
    p.add_argument(
        "--force-withdraw",
        action="append",
        default=[],
        metavar="AGENCY",
        help="withdraw AGENCY's directive access without waiting for it to drain",
    )
    p.set_defaults(fn=cmd_acl_apply)

    p = acl.add_parser("drift", help="exit 0 when the cluster matches the world, 1 with the differences")
    common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--textfile", help="write the gauges here (node_exporter textfile collector)")
    p.add_argument("--metrics-port", type=int, help="serve the gauges on /metrics and keep checking")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between checks with --metrics-port")
    p.add_argument("--count", type=int, help="stop after this many checks (default: 1, or forever with a port)")
    p.set_defaults(fn=cmd_acl_drift)

    s = sub.add_parser("registry", help="the signed registry of agencies, keys, programs and MOUs")
    reg = s.add_subparsers(dest="registry_command", required=True)
    p = reg.add_parser("publish", help="publish the registry, signed by concord-admin")
    common(p)
    p.set_defaults(fn=cmd_registry_publish)
