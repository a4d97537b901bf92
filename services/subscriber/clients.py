"""Who may ask a subscriber, what they may see, and how often: the clients file.

The operator declares every client system in one YAML file (``--clients``), read
when the subscriber starts.  A client proves who it is with a TLS client
certificate issued by the agency's own CA (its common name names the client), or
with an API key; either way it gets exactly the scopes and the rate its entry says.

```yaml
# <home>/subscribers/<agency>/clients.yaml
clients:
  - name: counter-beijing-01        # who it is, as the query log names it
    scopes: [check]                 # check: restricted or not, and which measures
    rate: 200/second                # limits' notation; several with ';' ("50/second; 100000/day")
    certificate: counter-beijing-01 # the subject common name of its client certificate
  - name: audit-office
    scopes: [check, details, entries]   # details: MOU, entry, origin, validity; entries: /v1/entries
    rate: 20/second
    api_key: "$argon2id$v=19$m=65536,t=3,p=4$..."   # `concord subscriber client-key` prints one
```

- ``name``: letters, digits and ``._-``; unique.  ``scopes``: any of ``check``,
  ``details``, ``entries``.  ``rate``: requests per period (default ``100/second``),
  over which the client gets 429 with ``Retry-After``.
- exactly one of ``certificate`` (a common name; the TLS handshake already proved the
  certificate was issued by the CA the subscriber trusts) and ``api_key`` (the
  Argon2id hash of the key's secret, never the key).  An API key is sent as
  ``Authorization: Bearer <name>.<secret>``.

Argon2id (argon2-cffi) makes a stolen clients file useless for guessing keys, and
each verification costs ~100 ms: verified keys are remembered for the process's
life under an HMAC of the presented key with a key of the process, compared in
constant time, and verifications run off the event loop, two at a time, so that
wrong keys cannot stall the checks of everyone else.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from services.core.documents import YamlInvalid, read_yaml
from services.core.errors import ConfigError

__all__ = ["Client", "ClientSpec", "Clients", "Scope", "api_key_hash", "load_clients", "new_api_key"]

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
DEFAULT_RATE = "100/second"
_HASHER = PasswordHasher()


class Scope(StrEnum):
    CHECK = "check"
    DETAILS = "details"
    ENTRIES = "entries"


class ClientSpec(BaseModel):
    """One client system, as the clients file declares it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    scopes: Annotated[tuple[Scope, ...], Field(min_length=1)]
    rate: str = DEFAULT_RATE
    certificate: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    api_key: str | None = None

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate such as '100/second' or '50/second; 10000/day'") from None
        return value

    @field_validator("api_key")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("$argon2id$"):
            raise ValueError(
                "must be the Argon2id hash of the key's secret (`concord subscriber client-key`), never the key itself"
            )
        return value

    @model_validator(mode="after")
    def _one_identity(self) -> ClientSpec:
        if (self.certificate is None) == (self.api_key is None):
            raise ValueError("give exactly one of `certificate` (a common name) and `api_key` (a hash)")
        return self


class ClientsFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clients: tuple[ClientSpec, ...]

    @model_validator(mode="after")
    def _unique(self) -> ClientsFile:
        for what, values in (
            ("name", [c.name for c in self.clients]),
            ("certificate", [c.certificate for c in self.clients if c.certificate]),
        ):
            seen: set[str] = set()
            for i, v in enumerate(values):
                if v in seen:
                    raise ValueError(f"clients[{i}]: {what} {v!r} is declared twice")
                seen.add(v)
        return self


@dataclass(frozen=True, slots=True)
class Client:
    """A client that has proved who it is: what the API serves it."""

    name: str
    scopes: frozenset[Scope]
    limits: tuple[RateLimitItem, ...]

    @property
    def details(self) -> bool:
        return Scope.DETAILS in self.scopes

    @property
    def scope(self) -> str:
        """The scopes, as the query log records them."""
        return ",".join(sorted(self.scopes))


def load_clients(path: Path) -> Clients:
    """Read the clients file; every problem is a ConfigError naming the file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the clients file: {exc.strerror}", file=path) from None
    try:
        doc = read_yaml(text, str(path))
    except YamlInvalid as exc:
        only = exc.problems[0]
        raise ConfigError(str(only), file=only.file, path=only.path or None, line=only.line) from None
    try:
        parsed = ClientsFile.model_validate(doc.value)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        line = doc.line(loc)
        where = ".".join(str(p) for p in loc) or "<file>"
        raise ConfigError(f"{path}:{line}: {where}: {first['msg']}") from None
    return Clients(parsed.clients)


def new_api_key(name: str) -> tuple[str, str]:
    """A fresh key for client ``name``: ``(the key to give the client, the hash for the clients file)``."""
    secret = secrets.token_urlsafe(32)
    return f"{name}.{secret}", api_key_hash(secret)


def api_key_hash(secret: str) -> str:
    return _HASHER.hash(secret)


class Clients:
    """The declared clients, their identities checked and their rates counted."""

    def __init__(self, specs: tuple[ClientSpec, ...] | list[ClientSpec]) -> None:
        self._by_name: dict[str, ClientSpec] = {c.name: c for c in specs}
        self._clients: dict[str, Client] = {
            c.name: Client(c.name, frozenset(c.scopes), tuple(parse_many(c.rate))) for c in specs
        }
        self._by_cert: dict[str, Client] = {
            c.certificate: self._clients[c.name] for c in specs if c.certificate is not None
        }
        self._pepper = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[bytes, Client]] = {}
        self._failed: dict[bytes, float] = {}
        self._verifying = asyncio.Semaphore(2)
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def __len__(self) -> int:
        return len(self._clients)

    def names(self) -> list[str]:
        return sorted(self._clients)

    def by_certificate(self, common_name: str | None) -> Client | None:
        """The client whose certificate (already verified against the agency's CA) bears this name."""
        return self._by_cert.get(common_name) if common_name is not None else None

    def _digest(self, presented: str) -> bytes:
        return hmac.digest(self._pepper, presented.encode("utf-8", "surrogatepass"), hashlib.sha256)

    def remembered_key(self, presented: str) -> Client | None:
        """The client of a key verified before (no Argon2 work), else None."""
        digest = self._digest(presented)
        hit = self._verified.get(digest)
        if hit is not None and hmac.compare_digest(hit[0], digest):
            return hit[1]
        return None

    async def by_api_key(self, presented: str) -> Client | None:
        """The client this key belongs to, or None (unknown client, wrong secret, malformed key)."""
        known = self.remembered_key(presented)
        if known is not None:
            return known
        digest = self._digest(presented)
        now = time.monotonic()
        if self._failed.get(digest, 0.0) > now:
            return None
        name, dot, secret = presented.partition(".")
        spec = self._by_name.get(name)
        if not dot or spec is None or spec.api_key is None:
            return None
        async with self._verifying:
            known = self.remembered_key(presented)  # verified meanwhile, for a request of the same client
            if known is not None:
                return known
            ok = await asyncio.to_thread(_verify, spec.api_key, secret)
        if not ok:
            if len(self._failed) > 10_000:
                self._failed = {d: t for d, t in self._failed.items() if t > now}
            self._failed[digest] = now + 60.0
            return None
        client = self._clients[name]
        self._verified[digest] = (digest, client)
        return client

    def admit(self, client: Client) -> float | None:
        """Count one request of ``client``: None if within its rate, else the seconds to wait (Retry-After)."""
        limiter = self._limiter
        for item in client.limits:
            if not limiter.hit(item, client.name):
                reset = limiter.get_window_stats(item, client.name).reset_time
                return max(1.0, math.ceil(reset - time.time()))
        return None

    def specs(self) -> Mapping[str, ClientSpec]:
        return dict(self._by_name)


def _verify(encoded: str, secret: str) -> bool:
    try:
        return _HASHER.verify(encoded, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
