"""Whole adapter jobs — validate a source, publish a source — for the CLI and the inbox.

A source is a file or standard input (``-``), read as JSON Lines or, with a mapping,
as CSV: a mapping means CSV (the inbox hands its mapping to ``.csv`` files only),
and a ``.csv`` name without a mapping is refused rather than misread as JSON.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from services.adapter.csv_mapping import CsvMapping
from services.adapter.csv_source import read_csv
from services.adapter.ledger import Ledger
from services.adapter.publish import (
    BatchPolicy,
    Publisher,
    Report,
    RowProblem,
    check_row,
    kafka_producer,
    publish_rows,
    size_problem,
    write_rejects,
)
from services.adapter.sources import DEFAULT_LIMITS, ReadLimits, Row, is_csv, read_jsonl, rows_in_thread
from services.core.codec import SchemaRegistry, default_registry
from services.core.errors import ConfigError
from services.core.signing import Signer
from services.core.world import World
from services.kafka_access import KafkaAccess

EXAMPLE_MAPPING = "deploy/examples/court-mapping.yaml"
DEFAULT_BATCH = BatchPolicy()


@dataclass(frozen=True)
class Source:
    path: str  # "-" is standard input
    mapping: CsvMapping | None = None
    limits: ReadLimits = DEFAULT_LIMITS
    handle: IO[bytes] | None = field(default=None, compare=False)  # already open (the inbox's descriptor)

    @property
    def is_stream(self) -> bool:
        return self.path == "-"

    def rejects_path(self) -> Path | None:
        return None if self.is_stream else Path(self.path + ".rejects.jsonl")


def resolve_source(
    path: str, mapping: CsvMapping | None, limits: ReadLimits = DEFAULT_LIMITS, handle: IO[bytes] | None = None
) -> Source:
    if mapping is None and is_csv(path):
        raise ConfigError(
            f"{path} is a CSV file: pass --mapping MAPPING.yaml to say how its columns become "
            f"records (see {EXAMPLE_MAPPING})"
        )
    if path != "-" and handle is None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"no such file: {path}")
        if not p.is_file():
            raise ConfigError(f"{path} is not a regular file (to read a stream, pass - and pipe it in)")
    return Source(path, mapping, limits, handle)


@contextmanager
def _binary(src: Source) -> Iterator[IO[bytes]]:
    if src.handle is not None:
        yield src.handle
    elif src.is_stream:
        yield sys.stdin.buffer
    else:
        try:
            raw = open(src.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigError(f"cannot read {src.path}: {exc.strerror or exc}") from None
        with raw:
            yield raw


@contextmanager
def open_rows(src: Source) -> Iterator[Iterator[Row]]:
    """The rows of a source, read within its limits; the file is closed when the block ends
    (not a handle passed in).  A read error mid-file is a ConfigError naming the file."""
    with _binary(src) as raw:
        if src.mapping is None:
            yield _reading(read_jsonl(raw, src.limits), src.path)
            return
        text = src.mapping.wrap(raw)
        try:
            yield _reading(read_csv(text, src.mapping, file=src.path, limits=src.limits), src.path)
        finally:
            text.detach()  # the binary file is closed by whoever opened it, not by the wrapper


def _reading(rows: Iterator[Row], path: str) -> Iterator[Row]:
    try:
        yield from rows
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def validate_source(
    src: Source, *, agency: str, world: World, on_reject: Callable[[RowProblem], None] | None = None
) -> Report:
    """Check every row without publishing (no broker)."""
    report = Report(file=src.path, on_reject=on_reject)
    schemas = default_registry()
    with open_rows(src) as rows:
        for row in rows:
            ev = check_row(row, agency=agency, world=world, report=report)
            too_big = size_problem(schemas.encode_model(ev)) if ev is not None else None
            if too_big is not None:
                report.valid -= 1
                report.reject(row.line, [too_big], row.text)
    return report


@asynccontextmanager
async def open_publisher(
    *,
    access: KafkaAccess,
    agency: str,
    topic: str,
    signer: Signer,
    schemas: SchemaRegistry,
    ledger_path: Path,
    batch: BatchPolicy | None = DEFAULT_BATCH,
) -> AsyncIterator[Publisher]:
    """A publisher signing in batches by default (``batch=None``: one signature per record)."""
    with Ledger(ledger_path, topic=topic) as ledger:
        async with Publisher(
            producer=kafka_producer(access),
            agency=agency,
            topic=topic,
            signer=signer,
            schemas=schemas,
            ledger=ledger,
            batch=batch,
        ) as pub:
            yield pub


async def publish_source(
    src: Source,
    *,
    publisher: Publisher,
    world: World,
    rejects_path: Path | None = None,
    on_reject: Callable[[RowProblem], None] | None = None,
    say: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Report:
    """Validate and publish a source; rejected rows are written to ``rejects_path``.

    A stream is read on a thread, so records are sent as their lines arrive.  When
    ``stop`` is set, reading ends and what was read is still published.
    """
    report = Report(file=src.path, on_reject=on_reject)
    if src.is_stream:

        def rows() -> Iterator[Row]:
            with open_rows(src) as it:
                yield from it

        await publish_rows(rows_in_thread(rows), publisher=publisher, world=world, report=report, say=say, stop=stop)
    else:
        with open_rows(src) as it:
            await publish_rows(it, publisher=publisher, world=world, report=report, say=say, stop=stop)
    if rejects_path is not None:
        if report.rejected:
            write_rejects(rejects_path, report.rejected)
            report.rejects_path = rejects_path
        else:
            rejects_path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink, from an earlier run of the file
    return report
