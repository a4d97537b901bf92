"""The adapter's commands: ``concord validate``, ``concord publish``, ``concord adapter run``.

``services/cli.py`` parses arguments and builds settings; the work happens here.
Refused rows are printed as they are found, one line per problem,
``FILE:LINE: field.path: message``, so a long stream shows them at once.  Progress
and summaries go to standard error as well; standard output stays empty.

Exit status: 0 when every record was published (or already was), 1 when rows were
refused, 2 for errors a person must fix (see ``services/cli.py``), 130 when a
publish of a file was interrupted before its end (publish it again: the ledger
skips what was already sent).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.adapter.csv_mapping import CsvMapping, load_mapping
from services.adapter.inbox import Inbox, InboxRunner
from services.adapter.jobs import open_publisher, publish_source, resolve_source, validate_source
from services.adapter.ledger import default_ledger_path
from services.adapter.publish import BatchPolicy, Report, RowProblem
from services.adapter.sources import DEFAULT_LIMITS, ReadLimits
from services.core.signing import Keyring, Signer
from services.core.world import World
from services.governance.registry import RegistryWatch
from services.kafka_access import KafkaAccess

EXIT_INVALID = 1
EXIT_INTERRUPTED = 130


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_reject(r: RowProblem) -> None:
    for line in r.lines():
        print(line, file=sys.stderr, flush=True)


def _mapping(path: str | None) -> CsvMapping | None:
    return load_mapping(Path(path)) if path else None


class _RepeatFilter(logging.Filter):
    """Show a repeated log message once per ``window`` seconds, with how often it recurred.

    While a broker is down aiokafka retries its metadata requests without pause and
    logs every refused connection — thousands of lines a second on a terminal that
    should show the publish's progress.
    """

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage())
        now = time.monotonic()
        shown, hidden = self._last.get(key, (-self.window, 0))
        if now - shown < self.window:
            self._last[key] = (shown, hidden + 1)
            return False
        if hidden:
            record.msg = f"{record.getMessage()} (and {hidden} more like it in the last {now - shown:.0f}s)"
            record.args = ()
        self._last[key] = (now, 0)
        return True


def _quiet_repeats() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RepeatFilter) for f in handler.filters):
            handler.addFilter(_RepeatFilter())


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop_on_signals(loop: asyncio.AbstractEventLoop) -> asyncio.Event:
    """The first SIGTERM or Ctrl-C ends the work in progress cleanly; a second one aborts."""
    stop = asyncio.Event()

    def first() -> None:
        stop.set()
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)  # back to the defaults
        _say("concord: stopping once the work in hand is published (signal again to abort)")

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, first)
    return stop


def validate(*, world: World, agency: str, file: str, mapping: str | None, limits: ReadLimits = DEFAULT_LIMITS) -> int:
    src = resolve_source(file, _mapping(mapping), limits)
    report = validate_source(src, agency=agency, world=world, on_reject=_print_reject)
    _say(f"{file}: {report.valid} valid, {len(report.rejected)} invalid")
    return EXIT_INVALID if report.rejected else 0


SIGNATURES = ("batch", "single")


def _publisher_kwargs(
    settings: Any,
    world: World,
    agency: str,
    ledger: str | None,
    signatures: str = "batch",
    keyring: Keyring | None = None,
    access: KafkaAccess | None = None,
) -> dict[str, Any]:
    from services.core.codec import default_registry
    from services.keystore import load_signer

    if signatures not in SIGNATURES:
        raise ValueError(f"signatures must be one of {SIGNATURES}")
    return {
        "batch": BatchPolicy() if signatures == "batch" else None,
        "access": access or settings.access(agency),
        "agency": agency,
        "topic": world.topic_name("lists", agency, namespace=settings.effective_namespace()),
        "signer": load_signer(settings.keys_path, agency, passphrase=settings.passphrase(), keyring=keyring),
        "schemas": default_registry(),
        "ledger_path": Path(ledger) if ledger else default_ledger_path(settings.home, agency),
    }


def publish(
    *,
    settings: Any,
    world: World,
    agency: str,
    file: str,
    mapping: str | None,
    ledger: str | None,
    signatures: str = "batch",
    limits: ReadLimits = DEFAULT_LIMITS,
    keyring: Keyring | None = None,
    access: KafkaAccess | None = None,
) -> int:
    src = resolve_source(file, _mapping(mapping), limits)
    kw = _publisher_kwargs(settings, world, agency, ledger, signatures, keyring, access)
    _quiet_repeats()

    async def go() -> Report:
        stop = _stop_on_signals(asyncio.get_running_loop())
        async with open_publisher(**kw) as pub:
            return await publish_source(
                src,
                publisher=pub,
                world=world,
                rejects_path=src.rejects_path(),
                on_reject=_print_reject,
                say=_say,
                stop=stop,
            )

    report = asyncio.run(go())
    where = f"; rejects in {report.rejects_path}" if report.rejects_path else ""
    _say(
        f"{agency}: published {report.published} to {kw['topic']}, {report.already_published} already "
        f"published, rejected {len(report.rejected)}{where}"
    )
    if report.interrupted and not src.is_stream:
        _say(
            f"{agency}: interrupted after {report.rows} records of {file}; publish it again to send the rest "
            "(records already sent are skipped)"
        )
        return EXIT_INTERRUPTED
    return EXIT_INVALID if report.rejected else 0


def run_inbox(
    *,
    settings: Any,
    world: World,
    agency: str,
    inbox: str,
    mapping: str | None,
    ledger: str | None,
    poll: float,
    signatures: str = "batch",
    limits: ReadLimits = DEFAULT_LIMITS,
    keyring: Keyring | None = None,
    access: KafkaAccess | None = None,
    registry: RegistryWatch | None = None,
    signer_for: Callable[[Keyring], Signer] | None = None,
) -> int:
    """Publish what is dropped in ``inbox``; with ``registry``, follow it: new worlds and keys are taken
    between files, and nothing is published while it is stale."""
    box = Inbox(Path(inbox), limits)
    box.prepare()
    csv_mapping = _mapping(mapping)
    kw = _publisher_kwargs(settings, world, agency, ledger, signatures, keyring, access)
    credentials = kw["access"].watch_credentials()
    _quiet_repeats()

    async def go() -> None:
        stop = _stop_on_signals(asyncio.get_running_loop())
        async with open_publisher(**kw) as pub:
            serial = registry.snapshot.serial if registry is not None and registry.snapshot is not None else None

            def gate() -> str | None:
                nonlocal serial
                if credentials is not None:
                    password = credentials.changed()
                    if password is not None:
                        pub.refresh_credentials(kw["access"].with_password(password))
                        _say(f"[{agency}] the credentials changed: connections opened from now on use them")
                if registry is None:
                    return None
                snapshot = registry.snapshot
                if snapshot is not None and snapshot.serial != serial:
                    serial = snapshot.serial
                    runner.world = snapshot.world
                    if signer_for is not None:
                        signer = signer_for(snapshot.keyring)
                        if signer.key_id != pub.signer.key_id:
                            _say(f"[{agency}] signing with key {signer.key_id} from registry serial {serial}")
                        pub.signer = signer
                status = registry.status()
                return None if status.fresh else status.reason

            runner = InboxRunner(box, publisher=pub, world=world, mapping=csv_mapping, say=_say, poll=poll, gate=gate)
            await runner.run(stop)

    asyncio.run(go())
    return 0
