"""``concord``: the command line.

Errors a user can act on are printed as one line naming the agency, record or
setting involved, with exit status 2 (1 means "records were invalid"); a fault of
Concord's own is one line too, with exit status 70.  A traceback is printed only
with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from services.core.errors import ConcordError, ConfigError, RecordInvalid
from services.core.principals import AUDIT

if TYPE_CHECKING:  # imported lazily at run time, so that `concord --help` starts fast
    from services.adapter.sources import ReadLimits
    from services.core.world import World
    from services.settings import Settings
    from services.subscriber.identity import SubscriberHome

EXIT_INVALID = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 70  # a fault of Concord's own (EX_SOFTWARE); --debug shows the traceback


def _settings() -> Settings:
    from services.settings import Settings

    return Settings()


def _world(settings: Settings) -> World:
    from services.core.world import load_world

    return load_world(settings.world_dir)


def _require_agency(world: World, agency: str, *, role: str) -> None:
    a = world.agencies.get(agency)
    if a is None:
        raise ConfigError(f"unknown agency {agency!r}; known: {', '.join(sorted(world.agencies))}")
    if role == "publishes" and not a.publishes:
        raise ConfigError(f"agency {agency!r} does not publish lists")
    if role == "implements" and not a.implements:
        raise ConfigError(f"agency {agency!r} does not implement measures")


# --- validate / publish --------------------------------------------------------


def _limits(settings: Settings, args: argparse.Namespace) -> ReadLimits:
    return settings.read_limits(
        max_line_bytes=args.max_line_bytes,
        max_depth=args.max_depth,
        max_file_bytes=getattr(args, "max_file_bytes", None),
    )


def _limit_flags(p: argparse.ArgumentParser, *, inbox: bool = False) -> None:
    p.add_argument(
        "--max-line-bytes",
        type=int,
        metavar="N",
        help="refuse a line (CSV: a record) longer than N bytes unread (default 262144, CONCORD_MAX_LINE_BYTES)",
    )
    p.add_argument(
        "--max-depth",
        type=int,
        metavar="N",
        help="refuse JSON nested deeper than N objects and arrays (default 16, at most 200, CONCORD_MAX_JSON_DEPTH)",
    )
    if inbox:
        p.add_argument(
            "--max-file-bytes",
            type=int,
            metavar="N",
            help="move a dropped file larger than N bytes to failed/ unread (default 8 GiB, CONCORD_MAX_FILE_BYTES)",
        )


def cmd_validate(args: argparse.Namespace) -> int:
    from services.adapter import commands

    settings = _settings()
    world = _world(settings)
    _require_agency(world, args.agency, role="publishes")
    return commands.validate(
        world=world, agency=args.agency, file=args.file, mapping=args.mapping, limits=_limits(settings, args)
    )


def cmd_publish(args: argparse.Namespace) -> int:
    from services.adapter import commands
    from services.governed import snapshot_once

    settings = _settings()
    access = settings.access(args.agency)
    # With a registry: its world and keys, and nothing is published while it is stale.
    world, keyring = snapshot_once(settings, access)
    _require_agency(world, args.agency, role="publishes")
    return commands.publish(
        settings=settings,
        world=world,
        agency=args.agency,
        file=args.file,
        mapping=args.mapping,
        ledger=args.ledger,
        signatures=args.signatures,
        limits=_limits(settings, args),
        keyring=keyring,
        access=access,
    )


def cmd_adapter_run(args: argparse.Namespace) -> int:
    from services.adapter import commands
    from services.governed import governance

    settings = _settings()
    access = settings.access(args.agency)
    gov = governance(settings, access, f"adapter-{args.agency}")
    if gov.world is None:
        raise ConfigError("no signed registry to publish by")
    _require_agency(gov.world, args.agency, role="publishes")
    if args.metrics_port is not None:
        from services.ops.adapter_metrics import serve_inbox_metrics

        port = serve_inbox_metrics(
            args.agency, Path(args.inbox), args.metrics_port, args.metrics_host, registry=gov.watch
        )
        print(f"serving /metrics and /healthz on {args.metrics_host}:{port}", file=sys.stderr, flush=True)
    try:
        return commands.run_inbox(
            settings=settings,
            world=gov.world,
            agency=args.agency,
            inbox=args.inbox,
            mapping=args.mapping,
            ledger=args.ledger,
            poll=args.poll,
            signatures=args.signatures,
            limits=_limits(settings, args),
            keyring=gov.keyring,
            access=access,
            registry=gov.watch,
            signer_for=gov.signer_for(settings, args.agency) if gov.watch is not None else None,
        )
    finally:
        if gov.watch is not None:
            gov.watch.stop()


# --- services ------------------------------------------------------------------


def cmd_fanout_worker(args: argparse.Namespace) -> int:
    from services.core.codec import default_registry
    from services.core.principals import FANOUT
    from services.fanout.app import FanoutConfig
    from services.fanout.worker import run_worker
    from services.governed import governance
    from services.keystore import keyed_hash_secret

    settings = _settings()
    logging.getLogger("concord").setLevel(args.loglevel.upper())
    state_dir = Path(args.state_dir) if args.state_dir else settings.layout.fanout_state(args.name)
    access = settings.access(FANOUT)
    gov = governance(settings, access, "fanout")
    if gov.world is None or gov.keyring is None:
        raise ConfigError("no signed registry to route by")
    signer_for = gov.signer_for(settings, FANOUT)
    cfg = FanoutConfig(
        access=access,
        world=gov.world,
        keyring=gov.keyring,
        schemas=default_registry(),
        signer=signer_for(gov.keyring),
        namespace=settings.effective_namespace(),
        name=args.name,
        state_dir=state_dir,
        web_port=args.web_port,
        batch_signatures=args.signatures == "batch",
        key_secret=keyed_hash_secret(settings.keys_path, FANOUT),
        registry=gov.watch,
        signer_for=signer_for if gov.watch is not None else None,
    )
    return run_worker(cfg)


def _subscriber_home(settings: Settings, agency: str) -> SubscriberHome:
    from services.subscriber.identity import SubscriberHome

    return SubscriberHome.of(settings.home, agency)


def _query_log_path(settings: Settings, args: argparse.Namespace) -> Path:
    return Path(args.query_log) if args.query_log else settings.layout.query_log(args.agency)


def cmd_subscriber_run(args: argparse.Namespace) -> int:
    from services.core.codec import default_registry
    from services.core.signing import Keyring, Signer
    from services.core.world import Retention
    from services.governed import governance
    from services.subscriber.api import RequestLimits
    from services.subscriber.clients import load_clients
    from services.subscriber.querylog import QueryLog, ensure_key
    from services.subscriber.runner import ServeOptions, run
    from services.subscriber.service import SubscriberService
    from services.subscriber.store import DirectiveStore

    settings = _settings()
    ns = settings.effective_namespace()
    access = settings.access(args.agency)
    # With a registry, the API does not wait for it: it answers `unknown` until the feed has taken
    # the first publication and caught up.
    gov = governance(settings, access, f"subscriber-{args.agency}", wait=10.0)
    world = gov.world
    if world is not None:
        _require_agency(world, args.agency, role="implements")
    retention = world.retention if world is not None else Retention()
    home = _subscriber_home(settings, args.agency)
    clients = load_clients(Path(args.clients) if args.clients else home.clients)
    certfile = Path(args.tls_cert) if args.tls_cert else home.server
    client_ca = Path(args.client_ca) if args.client_ca else home.ca
    for what, path in (("--tls-cert", certfile), ("--client-ca", client_ca)):
        if not path.exists():
            raise ConfigError(f"{what}: {path} does not exist (the local setup issues it: `make run`)")
    key = ensure_key(Path(args.query_log_key) if args.query_log_key else home.query_log_key)
    retention_days = args.query_log_retention or retention.query_log_days
    querylog = QueryLog(_query_log_path(settings, args), key, retention_s=retention_days * 86400)
    db = Path(args.db) if args.db else settings.layout.store(args.agency)
    signer_for = gov.signer_for(settings, args.agency)

    def topics_for(w: World) -> tuple[str, str]:
        return (
            w.topic_name("directives", args.agency, namespace=ns),
            w.topic_name("receipts", args.agency, namespace=ns),
        )

    directives, receipts = topics_for(world) if world is not None else ("", "")
    svc = SubscriberService(
        agency=args.agency,
        access=access,
        store=DirectiveStore(db, args.agency),
        keyring=gov.keyring or Keyring(),
        schemas=default_registry(),
        # Until the registry's first publication names the agency's key, no receipt is signed.
        signer=signer_for(gov.keyring) if gov.keyring is not None else Signer.generate(args.agency, "none"),
        directive_topic=directives,
        receipts_topic=receipts,
        stale_after=args.stale_after,
        progress_threshold=args.progress_threshold,
        world=world,
        lifted_retention_days=retention.lifted_directives_days,
        registry=gov.watch,
        signer_for=signer_for if gov.watch is not None else None,
        topics_for=topics_for,
    )
    limits = RequestLimits(max_body=args.max_body, body_timeout=args.request_timeout)
    try:
        run(
            svc,
            clients,
            querylog,
            ServeOptions(
                certfile=certfile,
                client_ca=client_ca,
                host=args.host,
                port=args.port,
                metrics_port=args.metrics_port,
                limits=limits,
            ),
        )
    finally:
        if gov.watch is not None:
            gov.watch.stop()
    return 0


def cmd_subscriber_queries(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from services.core.identifiers import query_identifier
    from services.subscriber.querylog import QueryLog

    settings = _settings()
    home = _subscriber_home(settings, args.agency)
    key_path = Path(args.query_log_key) if args.query_log_key else home.query_log_key
    log_path = _query_log_path(settings, args)
    for what, path in (("query-log key", key_path), ("query log", log_path)):
        if not path.exists():
            raise ConfigError(f"no {what} at {path} (has the subscriber of {args.agency!r} run here?)")
    log = QueryLog(log_path, key_path.read_bytes())
    try:
        # The value as a check would have looked it up: with each scheme the question may have named.
        values = {query_identifier(args.id, scheme)[0] for scheme in (None, "CN_RIC", "CN_USCC")} | {args.id}
        rows = log.about(values)
    finally:
        log.close()
    for r in rows:
        when = datetime.fromtimestamp(r.at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if args.json:
            print(
                json.dumps(
                    {
                        "at": when,
                        "client": r.client,
                        "scope": r.scope,
                        "route": r.route,
                        "scheme": r.scheme,
                        "measure": r.measure,
                        "answer": r.answer,
                        "measures": list(r.measures),
                    }
                )
            )
        else:
            print(
                f"{when}  {r.client:16} {r.scope:22} {r.route:8} {r.answer:10} "
                f"{','.join(r.measures) or '-'}{'  measure=' + r.measure if r.measure else ''}"
            )
    if not args.json:
        print(f"{len(rows)} quer{'y' if len(rows) == 1 else 'ies'} about this identifier", file=sys.stderr)
    return 0


def cmd_subscriber_client_key(args: argparse.Namespace) -> int:
    from services.subscriber.clients import new_api_key

    key, hashed = new_api_key(args.name)
    print(f"give the client this key (shown once): {key}", file=sys.stderr)
    print(f'api_key: "{hashed}"')
    return 0


def _service_urls(settings: Settings) -> dict[str, str]:
    run = settings.layout.run
    urls: dict[str, str] = {}
    for f in sorted(run.glob("subscriber-*.json")) if run.exists() else []:
        data = json.loads(f.read_text())
        if data.get("url"):
            urls[f.stem.removeprefix("subscriber-")] = str(data["url"])
    return urls


def cmd_check(args: argparse.Namespace) -> int:
    import os

    from services.subscriber.client import CheckClient, Identity

    settings = _settings()
    url = args.url or _service_urls(settings).get(args.agency)
    if not url:
        raise ConfigError(f"no running subscriber for {args.agency!r} (start `make run`, or pass --url)")
    home = _subscriber_home(settings, args.agency)
    api_key = os.environ.get("CONCORD_API_KEY")
    if args.api_key_file:
        api_key = Path(args.api_key_file).read_text().strip()
    cert = Path(args.cert) if args.cert else (None if api_key else home.client_cert("operator"))
    ca = Path(args.ca) if args.ca else home.ca
    if cert is not None and not cert.exists():
        raise ConfigError(f"no client certificate at {cert}: pass --cert, --api-key-file or set CONCORD_API_KEY")
    identity = Identity(ca=ca if ca.exists() else None, cert=cert, api_key=api_key)
    with CheckClient(url, identity, timeout=10, agency=args.agency, allow_unknown=args.allow_unknown) as client:
        answer = client.check(args.id, scheme=args.scheme, measure=args.measure, at=args.at)
    print(json.dumps(answer.model_dump(mode="json", exclude_none=True), ensure_ascii=False, indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from services.ops.status import gather_status

    ok, lines = gather_status(_settings())
    for line in lines:
        print(line)
    return 0 if ok else EXIT_INVALID


def cmd_audit(args: argparse.Namespace) -> int:
    from services.core.codec import default_registry
    from services.governed import snapshot_once
    from services.ops.audit import run_audit

    settings = _settings()
    access = settings.access(args.principal)
    world, keyring = snapshot_once(settings, access)
    stores = {}
    data = settings.layout.data
    if args.stores and data.exists():
        stores = {p.stem: p for p in sorted(data.glob("*.sqlite")) if p.stem in world.agencies}
    report = asyncio.run(
        run_audit(
            access=access,
            world=world,
            namespace=settings.effective_namespace(),
            keyring=keyring,
            schemas=default_registry(),
            stores=stores,
        )
    )
    for line in report.lines():
        print(line)
    return 0 if report.clean else EXIT_INVALID


def cmd_deploy_render(args: argparse.Namespace) -> int:
    from datetime import UTC, date, datetime

    from services.deploy.kubernetes import DeployOptions
    from services.deploy.render import read_sources, render_files, write
    from services.deploy.strimzi import ClusterOptions

    settings = _settings()
    world = _world(settings)
    try:
        on = date.fromisoformat(args.at) if args.at else datetime.now(UTC).date()
    except ValueError:
        raise ConfigError(f"--at {args.at!r}: expected a date like 2026-01-31") from None
    opts = DeployOptions(
        cluster=ClusterOptions(name=args.cluster, namespace=args.k8s_namespace, brokers=args.brokers),
        kafka_namespace=settings.namespace,
        image=args.image,
        fanout_replicas=args.fanout_replicas,
    )
    files = render_files(world, opts, read_sources(settings.world_dir, runbook_base=args.runbook_base), on)
    written = write(Path(args.out), files)
    print(f"wrote {len(written)} files to {args.out} (`kubectl apply -k {args.out}`)")
    return 0


def cmd_subject_report(args: argparse.Namespace) -> int:
    from services.core.codec import default_registry
    from services.core.errors import SignatureInvalid
    from services.core.subject_report import Asked
    from services.keystore import load_keyring
    from services.ops import subject_report

    settings = _settings()
    keyring = load_keyring(settings.keys_path)
    if args.verify:
        try:
            headers = subject_report.verify(subject_report.read_document(Path(args.verify)), keyring)
        except SignatureInvalid as exc:
            print(f"{args.verify}: NOT VALID: {exc.reason}: {exc.message}")
            return EXIT_INVALID
        print(f"{args.verify}: valid, signed by {headers.agency} (key {headers.key_id})")
        return 0
    world = _world(settings)
    asked = Asked.parse(args.id, args.scheme)
    chosen = subject_report.signer_for(world, settings.keys_path, args.as_agency) if args.as_agency else None
    report = asyncio.run(
        subject_report.build_report(
            access=settings.access(args.principal),
            world=world,
            namespace=settings.effective_namespace(),
            keyring=keyring,
            schemas=default_registry(),
            asked=asked,
        )
    )
    signer = chosen or subject_report.signer_for(world, settings.keys_path, None, report)
    doc = subject_report.sign(report, signer)
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    if args.out:
        subject_report.save(Path(args.out), text)
    else:
        sys.stdout.write(text)
    if args.html:
        subject_report.save(Path(args.html), subject_report.render_html(doc, world))
    print(
        f"{len(report.listings)} listing(s), {len(report.in_force)} measure(s) in force, {len(report.lifted)} "
        f"lifted; signed by {signer.agency} (key {signer.key_id})",
        file=sys.stderr,
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from services.demo import run_local

    return run_local(stay=not args.once, home=Path(args.home), brokers=args.brokers)


# --- parser --------------------------------------------------------------------


def _query_log_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--query-log", help="the query log (default <home>/data/<agency>-queries.sqlite)")
    p.add_argument("--query-log-key", help="its HMAC key (default <home>/subscribers/<agency>/query-log.key)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="concord", description="Concord inter-agency data exchange")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    mapping_help = "YAML mapping that reads FILE as CSV (see deploy/examples/court-mapping.yaml)"
    ledger_help = "what was already published (default <home>/adapter/<agency>.sqlite)"
    signatures_help = (
        "batch: one signature per batch of records (up to 512, or 50 ms), each record carrying its "
        "Merkle audit path (default); single: one signature per record"
    )
    s = sub.add_parser("validate", help="check a JSON Lines (or CSV) file without publishing (no broker needed)")
    s.add_argument("--agency", required=True)
    s.add_argument("file")
    s.add_argument("--mapping", help=mapping_help)
    _limit_flags(s)
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("publish", help="validate, sign and publish a JSON Lines (or CSV) file, or - for stdin")
    s.add_argument("--agency", required=True)
    s.add_argument("file")
    s.add_argument("--mapping", help=mapping_help)
    s.add_argument("--ledger", help=ledger_help)
    s.add_argument("--signatures", choices=("batch", "single"), default="batch", help=signatures_help)
    _limit_flags(s)
    s.set_defaults(fn=cmd_publish)

    s = sub.add_parser("adapter", help="the publishing agency's adapter")
    ads = s.add_subparsers(dest="adapter_command", required=True)
    a = ads.add_parser("run", help="publish every file renamed into a drop folder, until SIGTERM or Ctrl-C")
    a.add_argument("--agency", required=True)
    a.add_argument("--inbox", required=True, help="the drop folder (done/ and failed/ are made inside it)")
    a.add_argument("--mapping", help="YAML mapping for the .csv files dropped in")
    a.add_argument("--ledger", help=ledger_help)
    a.add_argument("--poll", type=float, default=0.5, help="seconds between looks at the folder")
    a.add_argument("--metrics-port", type=int, help="serve Prometheus metrics of the inbox on /metrics")
    a.add_argument("--metrics-host", default="127.0.0.1")
    a.add_argument("--signatures", choices=("batch", "single"), default="batch", help=signatures_help)
    _limit_flags(a, inbox=True)
    a.set_defaults(fn=cmd_adapter_run)

    s = sub.add_parser("check", help="ask an agency's running subscriber whether an ID is restricted")
    s.add_argument("--agency", required=True)
    s.add_argument("id")
    s.add_argument("--measure")
    s.add_argument("--scheme")
    s.add_argument("--at", help="ISO 8601 time with zone")
    s.add_argument("--url", help="subscriber URL (default: the local one)")
    s.add_argument("--cert", help="this client's key and certificate, PEM (default: the local setup's operator)")
    s.add_argument("--api-key-file", help="a file holding this client's API key (or set CONCORD_API_KEY)")
    s.add_argument("--ca", help="the CA that issued the subscriber's certificate (default: the local agency CA)")
    s.add_argument(
        "--allow-unknown",
        action="store_true",
        help="print an `unknown` answer instead of failing (the subscriber is not known to be current)",
    )
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("status", help="is the broker, the fan-out and every subscriber healthy?")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser(
        "audit", help="prove from the logs that every required measure is held and every lifted one lifted"
    )
    s.add_argument(
        "--principal",
        default=AUDIT,
        help=f"who reads the logs (default {AUDIT}: reads lists, directives, receipts, quarantine)",
    )
    s.add_argument("--stores", action="store_true", help="also audit the local subscribers' stores")
    s.set_defaults(fn=cmd_audit)

    s = sub.add_parser(
        "subject-report",
        help="a signed account, for a person or organisation, of every listing and measure that applies to them, "
        "what was lifted and why, and how removal works (JSON, and a readable HTML page)",
    )
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--id", help="the identifier (normalised as a check normalises it)")
    what.add_argument("--verify", metavar="FILE", help="check a saved report's signature: exit 0 valid, 1 not")
    s.add_argument("--scheme", help="match only identifiers of this scheme (e.g. CN_RIC)")
    s.add_argument(
        "--as",
        dest="as_agency",
        metavar="AGENCY",
        help="the agency producing and signing the report (default: the listing agency of its first listing)",
    )
    s.add_argument("--principal", default="concord-admin", help="who reads the logs (needs READ on them)")
    s.add_argument("--out", metavar="FILE", help="write the signed JSON here (default: standard output)")
    s.add_argument("--html", metavar="FILE", help="also write the readable page here")
    s.set_defaults(fn=cmd_subject_report)

    s = sub.add_parser("fanout", help="the fan-out")
    fs = s.add_subparsers(dest="fanout_command", required=True)
    w = fs.add_parser("worker", help="run a fan-out worker")
    w.add_argument(
        "--name",
        default="worker",
        help="this worker's name, unique in the group: its transactional id and state folder",
    )
    w.add_argument("--state-dir", help="where its state partitions live (default <home>/fanout/<name>)")
    w.add_argument("--web-port", type=int, default=None, help="serve /metrics, /healthz and /coverage")
    w.add_argument("--loglevel", default="INFO")
    w.add_argument(
        "--signatures",
        choices=("batch", "single"),
        default="batch",
        help="batch: sign the directives of each send batch once, over their Merkle root (default); "
        "single: one signature per directive",
    )
    w.set_defaults(fn=cmd_fanout_worker)

    s = sub.add_parser("subscriber", help="an implementing agency's subscriber")
    ss = s.add_subparsers(dest="subscriber_command", required=True)
    r = ss.add_parser("run", help="follow the agency's directives and serve the check API")
    r.add_argument("--agency", required=True)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=8443, help="the check API (TLS)")
    r.add_argument("--metrics-port", type=int, help="also serve /metrics in plain HTTP on this port (Prometheus)")
    r.add_argument("--db", help="SQLite store path (default <home>/data/<agency>.sqlite)")
    r.add_argument(
        "--stale-after",
        type=float,
        default=30.0,
        help="seconds without a confirmed round trip to the broker, or without a fan-out heartbeat on "
        "every partition, after which answers are `unknown` and /healthz 503",
    )
    r.add_argument(
        "--progress-threshold",
        type=int,
        default=5000,
        help="show bootstrap progress when more directives than this are waiting at start",
    )
    r.add_argument("--clients", help="the clients file (default <home>/subscribers/<agency>/clients.yaml)")
    r.add_argument(
        "--tls-cert", help="the API's key and certificate, PEM (default <home>/subscribers/<agency>/server.pem)"
    )
    r.add_argument(
        "--client-ca", help="the CA of the clients' certificates (default <home>/subscribers/<agency>/ca.pem)"
    )
    r.add_argument("--max-body", type=int, default=256 * 1024, help="largest request body accepted, in bytes")
    r.add_argument("--request-timeout", type=float, default=10.0, help="seconds a request body may take to arrive")
    _query_log_args(r)
    r.add_argument(
        "--query-log-retention",
        type=float,
        help="days a query is kept in the log (default: retention.query_log_days of topics.yaml)",
    )
    r.set_defaults(fn=cmd_subscriber_run)

    q = ss.add_parser(
        "queries", help="who asked this agency's subscriber about an identifier, when, and what they were told"
    )
    q.add_argument("--agency", required=True)
    q.add_argument("--id", required=True, help="the identifier (normalised as a check normalises it)")
    q.add_argument("--json", action="store_true", help="one JSON object per query")
    _query_log_args(q)
    q.set_defaults(fn=cmd_subscriber_queries)

    k = ss.add_parser(
        "client-key",
        help="a new API key for a client: the key (give it to the client) and the hash for the clients file",
    )
    k.add_argument("--name", required=True, help="the client's name in the clients file")
    k.set_defaults(fn=cmd_subscriber_client_key)

    s = sub.add_parser("run", help="set up and run the local exchange with the demo scenario")
    s.add_argument("--once", action="store_true", help="exit after the scenario (make demo)")
    s.add_argument("--home", default=".local")
    s.add_argument(
        "--brokers",
        type=int,
        choices=(1, 3),
        default=1,
        help="Kafka nodes to run: 1 (default), or 3 for a cluster with three replicas of every topic",
    )
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("deploy", help="deployment generated from topics/")
    ds = s.add_subparsers(dest="deploy_command", required=True)
    r = ds.add_parser("render", help="write the deployment's manifests")
    rs = r.add_subparsers(dest="deploy_target", required=True)
    k = rs.add_parser(
        "kubernetes",
        help="Strimzi resources (Kafka, topics, users with their ACLs) and Concord's "
        "workloads, config, monitoring and network policies",
    )
    k.add_argument("--out", required=True, help="folder to write (kubectl apply -k FOLDER)")
    k.add_argument("--at", help="the ACLs of the MOUs in force on this date (default today, UTC)")
    k.add_argument("--image", default="concord:0.1.0", help="Concord's container image")
    k.add_argument("--k8s-namespace", default="concord", help="the Kubernetes namespace")
    k.add_argument("--cluster", default="concord", help="the Strimzi Kafka cluster's name")
    k.add_argument("--brokers", type=int, default=3, help="Kafka nodes (each a broker and a KRaft controller)")
    k.add_argument("--fanout-replicas", type=int, help="fan-out workers (default and at most: the list partitions)")
    k.add_argument(
        "--runbook-base",
        help="absolute URL of the docs site the alerts' runbook links point into "
        "(default: as deploy/prometheus/alerts.yml has them, from mkdocs.yml's site_url)",
    )
    k.set_defaults(fn=cmd_deploy_render)

    from services.governance.commands import add_commands as add_governance_commands

    add_governance_commands(sub)  # acl plan|apply|drift, registry publish
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return int(args.fn(args))
    except ConcordError as exc:
        if args.debug:
            raise
        print(f"concord: {exc}", file=sys.stderr)
        return EXIT_INVALID if isinstance(exc, RecordInvalid) else EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"concord: unexpected error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
