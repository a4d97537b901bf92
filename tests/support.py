"""What every tier of the tests shares: waiting for a condition, holding one, and Kafka's header type.

Unit, integration and fault tests import these from here; no test module imports from another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeAlias, TypeVar

T = TypeVar("T")

KafkaHeaders: TypeAlias = list[tuple[str, str | bytes | None]]


def kafka_headers(headers: Iterable[tuple[str, bytes]]) -> KafkaHeaders:
    """Signed headers in confluent-kafka's header type (its list is invariant in the value's type)."""
    return list(headers)


def wait_for(
    what: str,
    probe: Callable[[], T],
    *,
    until: Callable[[T], object] = bool,
    timeout: float = 60.0,
    every: float = 0.25,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``probe`` every ``every`` seconds until ``until`` holds for what it returned; return that.

    ``until`` is truthiness unless given. An exception of a type in ``ignoring`` counts as a miss
    (a service not yet listening). Fails after ``timeout`` seconds, naming ``what`` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    got: T | None = None
    while True:
        try:
            got = probe()
        except ignoring:
            got = None
        else:
            if until(got):
                return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {got!r:.2000}")
        time.sleep(every)


def assert_stays(
    what: str, probe: Callable[[], T], *, holds: Callable[[T], object] = bool, for_s: float, every: float = 0.25
) -> None:
    """Call ``probe`` every ``every`` seconds for ``for_s`` seconds; ``holds`` must be true of every answer.

    Fails at the first answer it is not true of, naming ``what``, the answer and when it came.
    """
    started = time.monotonic()
    while True:
        got = probe()
        elapsed = time.monotonic() - started
        assert holds(got), f"{what} stopped holding after {elapsed:.1f}s: {got!r:.2000}"
        if elapsed >= for_s:
            return
        time.sleep(every)
