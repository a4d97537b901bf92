"""``concord``: the command line.

Errors a user can act on are printed as one line naming the agency, record or
setting involved, with exit status 2 (1 means "records were invalid"); a traceback
is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from services.core.errors import ConcordError, ConfigError

EXIT_INVALID = 1
EXIT_ERROR = 2


def _settings():  # type: ignore[no-untyped-def]
    from services.settings import Settings

    return Settings()


def _world(settings):  # type: ignore[no-untyped-def]
    from services.core.world import load_world

    return load_world(settings.world_dir)


def _require_agency(world, agency: str, *, role: str) -> None:  # type: ignore[no-untyped-def]
    a = world.agencies.get(agency)
    if a is None:
        raise ConfigError(f"unknown agency {agency!r}; known: {', '.join(sorted(world.agencies))}")
    if role == "publishes" and not a.publishes:
        raise ConfigError(f"agency {agency!r} does not publish lists")
    if role == "implements" and not a.implements:
        raise ConfigError(f"agency {agency!r} does not implement measures")


# --- validate / publish --------------------------------------------------------


def _open_input(path: str):  # type: ignore[no-untyped-def]
    if path == "-":
        return sys.stdin
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"no such file: {path}")
    return p.open(encoding="utf-8")


def cmd_validate(args: argparse.Namespace) -> int:
    from services.adapter.publish import Report, check_rows
    from services.adapter.sources import read_jsonl

    settings = _settings()
    world = _world(settings)
    _require_agency(world, args.agency, role="publishes")
    report = Report()
    with _open_input(args.file) as f:
        for _ in check_rows(read_jsonl(f), file=args.file, agency=args.agency, world=world, report=report):
            pass
    for r in report.rejected:
        for line in r.lines():
            print(line, file=sys.stderr)
    print(f"{args.file}: {report.accepted} valid, {len(report.rejected)} invalid", file=sys.stderr)
    return EXIT_INVALID if report.rejected else 0


def cmd_publish(args: argparse.Namespace) -> int:
    from services.adapter.publish import Publisher, Report, check_rows, write_rejects
    from services.adapter.sources import read_jsonl
    from services.core.codec import default_registry
    from services.keystore import load_signer

    settings = _settings()
    world = _world(settings)
    _require_agency(world, args.agency, role="publishes")
    access = settings.access(args.agency)
    signer = load_signer(settings.keys_path, args.agency)
    topic = world.topic_name("lists", args.agency, namespace=settings.effective_namespace())
    report = Report()

    async def go() -> int:
        async with Publisher(access=access, agency=args.agency, topic=topic, signer=signer,
                             schemas=default_registry()) as pub:
            with _open_input(args.file) as f:
                events = (ev for _, ev in check_rows(read_jsonl(f), file=args.file, agency=args.agency,
                                                     world=world, report=report))
                return await pub.publish(events)

    report.published = asyncio.run(go())
    for r in report.rejected:
        for line in r.lines():
            print(line, file=sys.stderr)
    if report.rejected and args.file != "-":
        report.rejects_path = Path(args.file + ".rejects.jsonl")
        write_rejects(report.rejects_path, report.rejected)
    where = f"; rejects in {report.rejects_path}" if report.rejects_path else ""
    print(f"{args.agency}: published {report.published} to {topic}, rejected {len(report.rejected)}{where}",
          file=sys.stderr)
    return EXIT_INVALID if report.rejected else 0


# --- services ------------------------------------------------------------------


def cmd_fanout_worker(args: argparse.Namespace) -> int:
    import faust

    from services.core.codec import default_registry
    from services.core.intake import FANOUT_PRINCIPAL
    from services.fanout.app import Fanout, FanoutConfig
    from services.keystore import load_keyring, load_signer

    settings = _settings()
    cfg = FanoutConfig(
        access=settings.access(FANOUT_PRINCIPAL), world=_world(settings),
        keyring=load_keyring(settings.keys_path), schemas=default_registry(),
        signer=load_signer(settings.keys_path, FANOUT_PRINCIPAL), namespace=settings.effective_namespace(),
        web_port=args.web_port,
    )
    fanout = Fanout(cfg)
    worker = faust.Worker(fanout.app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def cmd_subscriber_run(args: argparse.Namespace) -> int:
    import uvicorn

    from services.core.codec import default_registry
    from services.keystore import load_keyring, load_signer
    from services.subscriber.api import build_api
    from services.subscriber.service import SubscriberService
    from services.subscriber.store import DirectiveStore

    settings = _settings()
    world = _world(settings)
    _require_agency(world, args.agency, role="implements")
    ns = settings.effective_namespace()
    db = Path(args.db) if args.db else settings.home / "data" / f"{args.agency}.sqlite"
    svc = SubscriberService(
        agency=args.agency, access=settings.access(args.agency), store=DirectiveStore(db, args.agency),
        keyring=load_keyring(settings.keys_path), schemas=default_registry(),
        signer=load_signer(settings.keys_path, args.agency),
        directive_topic=world.topic_name("directives", args.agency, namespace=ns),
        receipts_topic=world.topic_name("receipts", args.agency, namespace=ns),
        stale_after=args.stale_after,
    )
    server = uvicorn.Server(uvicorn.Config(build_api(svc), host=args.host, port=args.port, log_level="warning",
                                           access_log=False))

    async def go() -> None:
        await svc.start()
        feed = asyncio.create_task(svc.run())
        try:
            await server.serve()
        finally:
            await svc.stop()
            feed.cancel()
            await asyncio.gather(feed, return_exceptions=True)
            svc.store.close()

    asyncio.run(go())
    return 0


def _service_urls(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    run = settings.home / "run"
    urls = {}
    for f in sorted(run.glob("subscriber-*.json")) if run.exists() else []:
        data = json.loads(f.read_text())
        if data.get("url"):
            urls[f.stem.removeprefix("subscriber-")] = data["url"]
    return urls


def cmd_check(args: argparse.Namespace) -> int:
    import httpx

    settings = _settings()
    url = args.url or _service_urls(settings).get(args.agency)
    if not url:
        raise ConfigError(f"no running subscriber for {args.agency!r} (start `make run`, or pass --url)")
    params = {"id": args.id}
    for k in ("scheme", "measure", "at"):
        if getattr(args, k):
            params[k] = getattr(args, k)
    try:
        r = httpx.get(f"{url}/v1/check", params=params, timeout=10)
    except httpx.HTTPError as exc:
        raise ConfigError(f"subscriber of {args.agency!r} at {url} does not answer: {exc}") from None
    if r.status_code != 200:
        raise ConfigError(f"subscriber of {args.agency!r} answered {r.status_code}: {r.text}")
    print(json.dumps(r.json(), ensure_ascii=False, indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from services.ops.status import gather_status

    ok, lines = gather_status(_settings())
    for line in lines:
        print(line)
    return 0 if ok else EXIT_INVALID


def cmd_run(args: argparse.Namespace) -> int:
    from services.demo import run_local

    return run_local(stay=not args.once, home=Path(args.home))


# --- parser --------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="concord", description="Concord inter-agency data exchange")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="check a JSON Lines file without publishing (no broker needed)")
    s.add_argument("--agency", required=True)
    s.add_argument("file")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("publish", help="validate, sign and publish a JSON Lines file (or - for stdin)")
    s.add_argument("--agency", required=True)
    s.add_argument("file")
    s.set_defaults(fn=cmd_publish)

    s = sub.add_parser("check", help="ask an agency's running subscriber whether an ID is restricted")
    s.add_argument("--agency", required=True)
    s.add_argument("id")
    s.add_argument("--measure")
    s.add_argument("--scheme")
    s.add_argument("--at", help="ISO 8601 time with zone")
    s.add_argument("--url", help="subscriber URL (default: the local one)")
    s.set_defaults(fn=cmd_check)

    s = sub.add_parser("status", help="is the broker, the fan-out and every subscriber healthy?")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser("fanout", help="the fan-out")
    fs = s.add_subparsers(dest="fanout_command", required=True)
    w = fs.add_parser("worker", help="run a fan-out worker")
    w.add_argument("--web-port", type=int, default=None)
    w.add_argument("--loglevel", default="INFO")
    w.set_defaults(fn=cmd_fanout_worker)

    s = sub.add_parser("subscriber", help="an implementing agency's subscriber")
    ss = s.add_subparsers(dest="subscriber_command", required=True)
    r = ss.add_parser("run", help="follow the agency's directives and serve the check API")
    r.add_argument("--agency", required=True)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, default=8080)
    r.add_argument("--db", help="SQLite store path (default <home>/data/<agency>.sqlite)")
    r.add_argument("--stale-after", type=float, default=30.0, help="seconds before health turns degraded")
    r.set_defaults(fn=cmd_subscriber_run)

    s = sub.add_parser("run", help="set up and run the local exchange with the demo scenario")
    s.add_argument("--once", action="store_true", help="exit after the scenario (make demo)")
    s.add_argument("--home", default=".local")
    s.set_defaults(fn=cmd_run)
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
        return EXIT_INVALID if exc.__class__.__name__ == "RecordInvalid" else EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
