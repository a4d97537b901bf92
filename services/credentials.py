"""SCRAM credentials: one file per principal, read only by the service that is that principal.

Layout (``<home>/credentials/`` by default, ``CONCORD_CREDENTIALS_DIR`` elsewhere)::

    <principal>.json        {"username": ..., "password": ...}, mode 0600 from its first byte
    <principal>.json.new    a rotation in progress: the password being given to the broker

The folder is 0700.  A file any other user may read is refused: a password that others can
read is not a secret.  No password ever goes on a command line (``ps`` shows those) or into a
shared file; ``CONCORD_USERNAME``/``CONCORD_PASSWORD`` in a service's environment apply to the
one user they name (:meth:`services.settings.Settings.access`).

**Rotation** (:func:`rotate_password`, ``concord credentials rotate --principal P``): the new
password is written to ``P.json.new``, then given to the broker (an upsert of the SCRAM
credential), then moved over ``P.json``.  A crash between leaves the new password in the
``.new`` file, never a user nobody can log in as.  Kafka authenticates a connection once, when
it opens, so the connections a running service holds keep working; the service watches its file
(:class:`CredentialsWatch`) and uses the new password for every connection it opens afterwards
(librdkafka: ``set_sasl_credentials``; aiokafka: its client's login), so there is no gap.
"""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.core.errors import ConfigError
from services.files import private_folder, write_private

SUFFIX = ".json"
PENDING = ".json.new"


def new_password() -> str:
    """A random SCRAM password (URL-safe characters: no quoting needed anywhere)."""
    return secrets.token_urlsafe(24)


def credentials_path(folder: Path, principal: str) -> Path:
    if not principal or "/" in principal or principal.startswith("."):
        raise ConfigError(f"not a principal name: {principal!r}")
    return folder / f"{principal}{SUFFIX}"


def _encode(principal: str, password: str) -> bytes:
    return json.dumps({"username": principal, "password": password}, indent=2).encode() + b"\n"


def write_credentials(folder: Path, principal: str, password: str) -> Path:
    private_folder(folder)
    path = credentials_path(folder, principal)
    write_private(path, _encode(principal, password))
    return path


def _read(path: Path, principal: str) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"no credentials for principal {principal!r} at {path}", principal=principal) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} may be read by other users (mode {stat.S_IMODE(st.st_mode):04o}): `chmod 600 {path}`",
            principal=principal,
        )
    try:
        doc: Any = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a credentials file ({exc})", principal=principal) from None
    if not isinstance(doc, dict) or doc.get("username") != principal or not isinstance(doc.get("password"), str):
        raise ConfigError(f'{path}: expected {{"username": {principal!r}, "password": ...}}', principal=principal)
    return str(doc["password"])


def read_password(folder: Path, principal: str) -> str:
    """``principal``'s password from its own file, or a ConfigError saying what is wrong."""
    return _read(credentials_path(folder, principal), principal)


def has_credentials(folder: Path, principal: str) -> bool:
    return credentials_path(folder, principal).exists()


def ensure_credentials(folder: Path, principals: Iterable[str], *, legacy: Path | None = None) -> dict[str, str]:
    """Every principal's password, making a file for each one that has none.

    ``legacy`` (a shared ``credentials.json`` of an older local setup) is split into one file
    per principal, keeping its passwords (the broker knows them), and then removed.
    """
    private_folder(folder)
    old: dict[str, str] = {}
    if legacy is not None and legacy.exists():
        data = json.loads(legacy.read_text())
        old = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        for name, password in old.items():
            if not has_credentials(folder, name):
                write_credentials(folder, name, password)
        legacy.unlink()
    out: dict[str, str] = {}
    for name in principals:
        if not has_credentials(folder, name):
            write_credentials(folder, name, new_password())
        out[name] = read_password(folder, name)
    return out


def pending_path(folder: Path, principal: str) -> Path:
    return folder / f"{principal}{PENDING}"


def begin_rotation(folder: Path, principal: str) -> str:
    """A new password for ``principal``, saved as pending (see the module's docstring)."""
    private_folder(folder)
    pending = pending_path(folder, principal)
    password = new_password()
    write_private(pending, _encode(principal, password))
    return password


def finish_rotation(folder: Path, principal: str) -> Path:
    """The broker has the pending password: it becomes the principal's password."""
    pending = pending_path(folder, principal)
    path = credentials_path(folder, principal)
    pending.replace(path)
    return path


@dataclass
class CredentialsWatch:
    """Notices when a principal's credentials file changes (a rotation) and reads the new password."""

    path: Path
    principal: str
    _seen: tuple[int, int] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def changed(self) -> str | None:
        """The new password if the file changed since last asked, else None."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return None
        self._seen = stamp
        return _read(self.path, self.principal)
