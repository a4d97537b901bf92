"""The ``concord acl`` and ``concord registry`` commands.

``concord acl plan``   the readable diff (``--json`` for machines, ``--out FILE`` to save
                       it for a later ``apply --plan FILE``); exit 0.
``concord acl apply``  applies a saved plan if the cluster has not changed since, or
                       computes, shows and applies one; caps deletions; exit 0.
``concord acl drift``  exit 0 when the cluster matches the world, 1 with the
                       differences; ``--textfile`` and ``--metrics-port`` export gauges.  Runs as
                       ``concord-drift``, which may only describe and read the ledger.
``concord registry publish``  publishes the signed registry as concord-admin (``--every`` keeps
                       doing so).
``concord keys rotate | revoke | list``  an agency's signing keys; the registry is republished.
``concord credentials rotate --principal P``  a new SCRAM password, no gap in service.

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

from services.core.errors import ConcordError, ConfigError
from services.core.governance_plan import DEFAULT_MAX_DELETIONS, Plan
from services.core.principals import ADMIN, DRIFT

EXIT_DRIFT = 1


def _settings(args: argparse.Namespace) -> Any:
    from services.settings import Settings

    overrides: dict[str, Any] = {}
    if getattr(args, "world", None):
        overrides["world_dir"] = Path(args.world)
    return Settings(**overrides)


def _governance(args: argparse.Namespace, principal: str = ADMIN) -> Any:
    from services.core.world import load_world
    from services.governance.acl import Governance

    settings = _settings(args)
    return Governance(
        access=settings.access(principal),
        world=load_world(settings.world_dir),
        namespace=settings.effective_namespace(),
        credentials_dir=settings.credentials_path,
        measure_drains=principal == ADMIN,
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

    gov = _governance(args, args.principal)
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


def _publish_registry(settings: Any) -> Any:
    """One publication of the registry from the files: the world folder and the signed keyring."""
    from services.core.world import load_world
    from services.governance.registry import publish_registry
    from services.keystore import load_anchor, load_keyring, load_signer

    keys = settings.keys_path
    keyring = load_keyring(keys, anchor=load_anchor(keys, settings.anchor_path))
    signer = load_signer(keys, ADMIN, passphrase=settings.passphrase(), keyring=keyring)
    return publish_registry(
        settings.access(ADMIN), settings.effective_namespace(), load_world(settings.world_dir), keyring, signer
    )


def _say_published(pub: Any) -> None:
    print(
        f"published registry serial {pub.serial} to {pub.topic}: {pub.records} signed record(s), "
        f"{pub.tombstones} tombstone(s), at {pub.published_at.isoformat()}",
        flush=True,
    )


def cmd_registry_publish(args: argparse.Namespace) -> int:
    import signal

    settings = _settings(args)
    if args.every is None:
        _say_published(_publish_registry(settings))
        return 0
    # Republishing proves the registry current: services refuse one older than its maximum age.
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    while not stopping:
        try:
            _say_published(_publish_registry(settings))
        except ConcordError as exc:
            print(
                f"concord: registry not published ({exc}); trying again in {args.every:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        deadline = time.monotonic() + args.every
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.5, args.every))
    return 0


def _duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``12h`` or ``7d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 12h, 7d)") from None


def _republish(settings: Any, args: argparse.Namespace) -> None:
    if args.no_publish:
        print("the registry was not republished (--no-publish): `concord registry publish` carries the change")
        return
    _say_published(_publish_registry(settings))


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from services.keystore import rotate_key

    settings = _settings(args)
    new, old = rotate_key(
        settings.keys_path, args.agency, overlap=timedelta(seconds=args.overlap), passphrase=settings.passphrase()
    )
    print(f"{args.agency}: new key {new.key_id}, valid from {new.valid_from.isoformat()}")
    for k in old:
        until = k.valid_until.isoformat() if k.valid_until else "no end"
        print(f"{args.agency}: key {k.key_id} stays valid until {until} (the overlap)")
    _republish(settings, args)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from services.keystore import revoke_key

    settings = _settings(args)
    at = datetime.fromisoformat(args.at) if args.at else None
    if at is not None and at.tzinfo is None:
        raise ConfigError(f"--at {args.at}: give a time zone (e.g. {args.at}Z or {args.at}+08:00)")
    k = revoke_key(settings.keys_path, args.agency, args.key, at=at, passphrase=settings.passphrase())
    print(
        f"{args.agency}: key {k.key_id} revoked from {k.revoked_at.isoformat() if k.revoked_at else '?'}: records "
        "the broker appends from then on are refused"
    )
    _republish(settings, args)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from services.keystore import load_anchor, load_keyring, usable

    settings = _settings(args)
    keys = settings.keys_path
    ring = load_keyring(keys, anchor=load_anchor(keys, settings.anchor_path))
    now = datetime.now(UTC)
    for k in sorted(ring.public_keys(), key=lambda k: (k.agency, k.valid_from)):
        state = (
            "usable"
            if usable(k, now)
            else (
                "revoked"
                if k.revoked_at and k.revoked_at <= now
                else "not yet valid"
                if k.valid_from > now
                else "expired"
            )
        )
        until = k.valid_until.isoformat() if k.valid_until else "-"
        revoked = f" revoked {k.revoked_at.isoformat()}" if k.revoked_at else ""
        print(f"{k.agency:16} {k.key_id:34} {state:13} from {k.valid_from.isoformat()} until {until}{revoked}")
    return 0


def cmd_credentials_rotate(args: argparse.Namespace) -> int:
    from services.governance.credentials import rotate_password

    settings = _settings(args)
    path = rotate_password(settings.access(ADMIN), settings.credentials_path, args.principal)
    print(
        f"{args.principal}: new SCRAM password in force and saved to {path}; its running services use it for "
        "the connections they open from now on"
    )
    return 0


def add_commands(sub: Any) -> None:
    """Register ``acl`` and ``registry`` on the main parser's subcommands."""
    s = sub.add_parser("acl", help="topics, SCRAM users and ACLs compiled from the MOUs: plan, apply, drift")
    acl = s.add_subparsers(dest="acl_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--world", help="the topics/ folder to compile (default: CONCORD_WORLD_DIR or topics/)")

    def removals(p: argparse.ArgumentParser, max_deletions_help: str) -> None:
        """The guards on what a plan removes: a deletion limit and the agencies withdrawn without draining."""
        p.add_argument("--max-deletions", type=int, default=DEFAULT_MAX_DELETIONS, help=max_deletions_help)
        p.add_argument(
            "--force-withdraw",
            action="append",
            default=[],
            metavar="AGENCY",
            help="withdraw AGENCY's directive access without waiting for it to drain",
        )

    p = acl.add_parser("plan", help="show what apply would change, grouped by agency and MOU, with reasons")
    common(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--out", help="save the plan for `concord acl apply --plan FILE`")
    removals(p, "warn when the plan removes more bindings than this")
    p.set_defaults(fn=cmd_acl_plan)

    p = acl.add_parser("apply", help="apply a saved plan (refused if the cluster changed since), or plan and apply")
    common(p)
    p.add_argument("--plan", help="a plan saved by `concord acl plan --out FILE`")
    removals(p, f"refuse to remove more bindings than this (default {DEFAULT_MAX_DELETIONS})")
    p.set_defaults(fn=cmd_acl_apply)

    p = acl.add_parser("drift", help="exit 0 when the cluster matches the world, 1 with the differences")
    common(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--textfile", help="write the gauges here (node_exporter textfile collector)")
    p.add_argument("--metrics-port", type=int, help="serve the gauges on /metrics and keep checking")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between checks with --metrics-port")
    p.add_argument("--count", type=int, help="stop after this many checks (default: 1, or forever with a port)")
    p.add_argument(
        "--principal",
        default=DRIFT,
        help=f"who looks (default {DRIFT}: describes the cluster, reads the governance ledger)",
    )
    p.set_defaults(fn=cmd_acl_drift)

    s = sub.add_parser("registry", help="the signed registry of agencies, keys, programs and MOUs")
    reg = s.add_subparsers(dest="registry_command", required=True)
    p = reg.add_parser("publish", help="publish the registry from the files, signed by concord-admin")
    common(p)
    p.add_argument(
        "--every",
        type=_duration,
        metavar="DURATION",
        help="keep publishing at this interval (e.g. 1h), so services never find it older than its "
        "maximum age; files edited meanwhile go out with the next publication",
    )
    p.set_defaults(fn=cmd_registry_publish)

    s = sub.add_parser("keys", help="the agencies' signing keys: rotate, revoke, list (as concord-admin)")
    keys = s.add_subparsers(dest="keys_command", required=True)

    def publishing(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--no-publish", action="store_true", help="change the keyring file only")

    p = keys.add_parser("rotate", help="a new key valid from now; the current ones stay valid for an overlap")
    publishing(p)
    p.add_argument("--agency", required=True, help="whose key (an agency, concord-fanout or concord-admin)")
    p.add_argument(
        "--overlap",
        type=_duration,
        default=7 * 86400.0,
        metavar="DURATION",
        help="how long the current keys stay valid beside the new one (default 7d)",
    )
    p.set_defaults(fn=cmd_keys_rotate)

    p = keys.add_parser("revoke", help="refuse what a key signs from a time on (default now)")
    publishing(p)
    p.add_argument("--agency", required=True)
    p.add_argument("--key", required=True, help="the key id (`concord keys list`)")
    p.add_argument("--at", help="ISO 8601 time with zone from which it is revoked (default now)")
    p.set_defaults(fn=cmd_keys_revoke)

    p = keys.add_parser("list", help="every key with its validity window and revocation")
    common(p)
    p.set_defaults(fn=cmd_keys_list)

    s = sub.add_parser("credentials", help="SCRAM credentials, one file per principal")
    creds = s.add_subparsers(dest="credentials_command", required=True)
    p = creds.add_parser("rotate", help="a new SCRAM password for a principal, with no gap in service")
    p.add_argument("--principal", required=True)
    p.set_defaults(fn=cmd_credentials_rotate)
