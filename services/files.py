"""Writing Concord's own files so that no reader ever sees half of one, nor a secret readable by others.

Every write goes to a uniquely named temporary file beside its target (``.<name>.<random>.tmp``,
a name the inbox and Prometheus's file discovery ignore), created with its final mode from its
first byte, flushed to disk, then renamed over the target: a reader sees the old file or the new
one.  The temporary file is removed if anything fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PRIVATE = 0o600
PUBLIC = 0o644


def private_folder(folder: Path) -> None:
    """``folder`` and its parents exist; ``folder`` itself is readable by its owner alone (0700)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)


@contextlib.contextmanager
def _staged(path: Path, mode: int) -> Iterator[tuple[IO[bytes], Path]]:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write(f: IO[bytes], data: bytes | str) -> None:
    f.write(data.encode() if isinstance(data, str) else data)
    f.flush()
    os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes | str, *, mode: int = PUBLIC) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8) in one rename; the file has ``mode``."""
    with _staged(path, mode) as (f, tmp):
        _write(f, data)
        tmp.replace(path)


def write_private(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` in one rename; the file is 0600 from its first byte."""
    write_atomic(path, data, mode=PRIVATE)


def create_private(path: Path, data: bytes | str) -> None:
    """Create ``path`` holding ``data``, 0600 from its first byte; FileExistsError if it exists.

    The file appears whole or not at all (a hard link of the finished temporary file), so two
    processes creating it at once never read each other's half-written bytes.
    """
    with _staged(path, PRIVATE) as (f, tmp):
        _write(f, data)
        os.link(tmp, path)
