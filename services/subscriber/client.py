"""A small client for agency systems that ask a subscriber's check API.

    identity = Identity(ca=Path("ca.pem"), cert=Path("counter.pem"))      # or api_key="counter-key.<secret>"
    with CheckClient("https://127.0.0.1:8443", identity, agency="aviation") as c:
        if c.check("110105196204121235", measure="aviation.no-air-tickets").restricted:
            refuse_ticket()

    async with AsyncCheckClient(url, identity) as c:
        results = await c.check_many(ids)

The subscriber answers known clients only, over TLS: an :class:`Identity` names the
agency's CA (which issued the subscriber's certificate) and either the client's
certificate (key and certificate in one PEM file) or its API key.

Answers are the service's own types (:mod:`services.subscriber.types`), validated
on arrival.  Errors, each naming the agency and the URL asked:

    ConcordError
    └── SubscriberError            anything that went wrong asking a subscriber
        ├── SubscriberUnavailable      no answer: refused, timed out, reset  (retriable)
        ├── SubscriberFailed           a 5xx, or an answer that is not the API's  (retriable)
        │   └── SubscriberNotCurrent   the answer is ``unknown``: the store is not known to be current
        ├── QuestionRejected           a 4xx: the question itself is wrong (bad id, naive `at`)
        │   ├── NotAuthorized              401 / 403: no identity, or not this scope
        │   └── RateLimited                429: over the client's rate; ``retry_after`` seconds  (retriable)
        └── EntryNotFound              ``entry()`` of an entry the store has never held (404)

A check whose answer is ``unknown`` (bootstrapping, the feed not confirmed by the
broker, no fan-out heartbeat) raises :class:`SubscriberNotCurrent`, which carries
the answer: a caller that can act on "unknown" itself passes ``allow_unknown=True``
and reads ``status``.  Never treat ``unknown`` as clear.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from services.core.errors import ConcordError
from services.subscriber.types import MAX_BULK, BulkCheckResult, CheckResult, EntryHistory, Health

__all__ = [
    "AsyncCheckClient",
    "CheckClient",
    "CheckResult",
    "EntryNotFound",
    "Health",
    "Identity",
    "NotAuthorized",
    "QuestionRejected",
    "RateLimited",
    "SubscriberError",
    "SubscriberFailed",
    "SubscriberNotCurrent",
    "SubscriberUnavailable",
]

M = TypeVar("M", bound=BaseModel)

BULK_LIMIT = MAX_BULK  # ids per POST /v1/check, as the API declares


class SubscriberError(ConcordError):
    def __init__(self, message: str, *, agency: str | None, url: str, status: int | None = None) -> None:
        who = f"subscriber of {agency!r} at {url}" if agency else f"subscriber at {url}"
        super().__init__(f"{who}: {message}", status=status)
        self.agency = agency
        self.url = url
        self.status = status


class SubscriberUnavailable(SubscriberError):
    retriable: ClassVar[bool] = True


class SubscriberFailed(SubscriberError):
    retriable: ClassVar[bool] = True


class SubscriberNotCurrent(SubscriberFailed):
    """The subscriber answered ``unknown``; ``results`` holds what it answered."""

    def __init__(self, message: str, *, agency: str | None, url: str, results: Sequence[CheckResult]) -> None:
        super().__init__(message, agency=agency, url=url, status=200)
        self.results = list(results)


class QuestionRejected(SubscriberError):
    pass


class NotAuthorized(QuestionRejected):
    pass


class RateLimited(QuestionRejected):
    retriable: ClassVar[bool] = True

    def __init__(
        self, message: str, *, agency: str | None, url: str, status: int | None = None, retry_after: float = 1.0
    ) -> None:
        super().__init__(message, agency=agency, url=url, status=status)
        self.retry_after = retry_after


class EntryNotFound(SubscriberError):
    pass


@dataclass(frozen=True)
class Identity:
    """How a client proves who it is: the agency's CA, and its certificate or its API key."""

    ca: Path | None = None
    cert: Path | None = None
    api_key: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert))
        return ctx

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def _params(value: str, scheme: str | None, measure: str | None, at: datetime | str | None) -> dict[str, str]:
    params = {"id": value}
    if scheme is not None:
        params["scheme"] = scheme
    if measure is not None:
        params["measure"] = measure
    if at is not None:
        params["at"] = _at(at)
    return params


def _at(at: datetime | str) -> str:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("`at` must carry a time zone")
        return at.isoformat()
    return at


def _bulk(ids: Sequence[str], scheme: str | None, measure: str | None, at: datetime | str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"ids": list(ids)}
    if scheme is not None:
        body["scheme"] = scheme
    if measure is not None:
        body["measure"] = measure
    if at is not None:
        body["at"] = _at(at)
    return body


def _entry_path(entry_id: str) -> str:
    return "/v1/entries/" + quote(entry_id, safe="/")


def _chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    for v in ids:
        chunk.append(v)
        if len(chunk) == BULK_LIMIT:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Base:
    def __init__(self, base_url: str, agency: str | None, allow_unknown: bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.agency = agency
        self.allow_unknown = allow_unknown

    def _current(self, results: list[CheckResult], allow_unknown: bool | None) -> list[CheckResult]:
        allow = self.allow_unknown if allow_unknown is None else allow_unknown
        if not allow and any(r.status == "unknown" for r in results):
            raise SubscriberNotCurrent(
                "answered unknown: its store is not known to be current (see its /healthz)",
                agency=self.agency,
                url=self.base_url,
                results=results,
            )
        return results

    def _error(self, cls: type[SubscriberError], message: str, status: int | None = None) -> SubscriberError:
        return cls(message, agency=self.agency, url=self.base_url, status=status)

    def _transport_error(self, exc: httpx.HTTPError) -> SubscriberError:
        return self._error(SubscriberUnavailable, f"no answer ({type(exc).__name__}: {exc})")

    def _read(self, r: httpx.Response, model: type[M], *, ok: tuple[int, ...] = (200,)) -> M:
        if r.status_code not in ok:
            detail = r.text[:300]
            if r.status_code == 404 and model is EntryHistory:
                raise self._error(EntryNotFound, detail, r.status_code)
            if r.status_code == 429:
                try:
                    wait = float(r.headers.get("retry-after", "1"))
                except ValueError:
                    wait = 1.0
                raise RateLimited(
                    f"answered 429: {detail}", agency=self.agency, url=self.base_url, status=429, retry_after=wait
                )
            if r.status_code in (401, 403):
                raise self._error(NotAuthorized, f"answered {r.status_code}: {detail}", r.status_code)
            cls = QuestionRejected if 400 <= r.status_code < 500 else SubscriberFailed
            raise self._error(cls, f"answered {r.status_code}: {detail}", r.status_code)
        try:
            return model.model_validate_json(r.content)
        except ValidationError as exc:
            raise self._error(
                SubscriberFailed, f"answer is not a {model.__name__}: {exc.errors()[0]['msg']}", r.status_code
            ) from None


class CheckClient(_Base):
    """Synchronous client (one ``httpx.Client``, connections kept alive)."""

    def __init__(
        self,
        base_url: str,
        identity: Identity | None = None,
        timeout: float = 5.0,
        *,
        agency: str | None = None,
        allow_unknown: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, agency, allow_unknown)
        identity = identity or Identity()
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            verify=identity.ssl_context(),
            headers=identity.headers(),
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

    def check(
        self,
        value: str,
        scheme: str | None = None,
        measure: str | None = None,
        at: datetime | str | None = None,
        *,
        allow_unknown: bool | None = None,
    ) -> CheckResult:
        """Is identifier ``value`` restricted (for ``measure``, at ``at``; default: any measure, now)?

        Raises :class:`SubscriberNotCurrent` on an ``unknown`` answer unless ``allow_unknown``."""
        r = self._send("GET", "/v1/check", params=_params(value, scheme, measure, at))
        return self._current([self._read(r, CheckResult)], allow_unknown)[0]

    def check_many(
        self,
        ids: Iterable[str],
        scheme: str | None = None,
        measure: str | None = None,
        at: datetime | str | None = None,
        *,
        allow_unknown: bool | None = None,
    ) -> list[CheckResult]:
        """One answer per id, in order (sent in requests of up to 1,000 ids)."""
        out: list[CheckResult] = []
        for chunk in _chunks(ids):
            r = self._send("POST", "/v1/check", json=_bulk(chunk, scheme, measure, at))
            out.extend(self._read(r, BulkCheckResult).results)
        return self._current(out, allow_unknown)

    def entry(self, entry_id: str) -> dict[str, Any]:
        """The directive history of an entry (``origin/entry_id`` or a bare entry id)."""
        return self._read(self._send("GET", _entry_path(entry_id)), EntryHistory).model_dump()

    def health(self) -> Health:
        """The subscriber's own view of its freshness; a 503 (starting, degraded) is still an answer."""
        return self._read(self._send("GET", "/healthz"), Health, ok=(200, 503))


class AsyncCheckClient(_Base):
    """Asynchronous client (one ``httpx.AsyncClient``); the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        identity: Identity | None = None,
        timeout: float = 5.0,
        *,
        agency: str | None = None,
        allow_unknown: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, agency, allow_unknown)
        identity = identity or Identity()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            verify=identity.ssl_context(),
            headers=identity.headers(),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None

    async def check(
        self,
        value: str,
        scheme: str | None = None,
        measure: str | None = None,
        at: datetime | str | None = None,
        *,
        allow_unknown: bool | None = None,
    ) -> CheckResult:
        r = await self._send("GET", "/v1/check", params=_params(value, scheme, measure, at))
        return self._current([self._read(r, CheckResult)], allow_unknown)[0]

    async def check_many(
        self,
        ids: Iterable[str],
        scheme: str | None = None,
        measure: str | None = None,
        at: datetime | str | None = None,
        *,
        allow_unknown: bool | None = None,
    ) -> list[CheckResult]:
        out: list[CheckResult] = []
        for chunk in _chunks(ids):
            r = await self._send("POST", "/v1/check", json=_bulk(chunk, scheme, measure, at))
            out.extend(self._read(r, BulkCheckResult).results)
        return self._current(out, allow_unknown)

    async def entry(self, entry_id: str) -> dict[str, Any]:
        return self._read(await self._send("GET", _entry_path(entry_id)), EntryHistory).model_dump()

    async def health(self) -> Health:
        return self._read(await self._send("GET", "/healthz"), Health, ok=(200, 503))
