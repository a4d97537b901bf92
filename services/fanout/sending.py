"""How the fan-out signs and sends directives: one signature per send batch.

With batch signatures each implementing agency's directives wait, at most
``max_wait`` seconds or until ``max_records`` are waiting, and are then signed
together — one Ed25519 signature over the Merkle root of their digests — and sent
in the order they were made, each carrying its audit path
(:mod:`services.core.signing`).  A batch never mixes agencies: an agency's audit
paths commit only to its own directives.  Without batching every directive is
signed on its own and sent at once.

At-least-once: faust commits a source offset only after flushing its producer, and
a directive still waiting here has not reached the producer.  :meth:`guard` makes
the producer's flush first seal and send whatever waits here, so no offset is
committed while a directive it caused is still in this buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from services.core.signing import Domain, Signer, digest_of

Send = Callable[[str, bytes, bytes, int, list[tuple[str, bytes]]], Awaitable[Any]]


class DirectiveSender:
    """Signs and sends directives, per agency in batches (or one by one with ``batch=False``)."""

    def __init__(self, *, signer: Signer, send: Send, batch: bool = True, max_records: int = 512,
                 max_wait: float = 0.02) -> None:
        self.signer = signer
        self.batch = batch
        self.max_records = max_records
        self.max_wait = max_wait
        self._send = send
        self._waiting: dict[str, list[tuple[str, bytes, bytes, int, bytes]]] = {}
        self._opened: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self.batches = 0
        self.sent = 0

    def guard(self, producer: Any) -> None:
        """Make ``producer.flush()`` (which faust awaits before every offset commit) flush this first."""
        if getattr(producer, "_concord_guarded", False):
            return
        original = producer.flush

        async def flush() -> None:
            await self.flush()
            await original()

        producer.flush = flush
        producer._concord_guarded = True  # noqa: SLF001

    async def send(self, agency: str, topic: str, key: bytes, value: bytes, partition: int) -> None:
        if not self.batch:
            await self._send(topic, key, value, partition, self.signer.sign(Domain.DIRECTIVE, value).as_kafka())
            self.sent += 1
            return
        waiting = self._waiting.get(agency)
        if waiting is None:
            waiting = self._waiting[agency] = []
        if not waiting:
            self._opened[agency] = asyncio.get_running_loop().time()
        waiting.append((topic, key, value, partition, digest_of(value)))
        if len(waiting) >= self.max_records:
            await self._seal(agency)

    async def flush(self) -> None:
        """Seal and send every waiting batch."""
        for agency in list(self._waiting):
            await self._seal(agency)

    async def flush_due(self) -> None:
        """Seal and send the batches that have waited ``max_wait``."""
        now = asyncio.get_running_loop().time()
        for agency, opened in list(self._opened.items()):
            if self._waiting.get(agency) and now - opened >= self.max_wait:
                await self._seal(agency)

    async def run(self) -> None:
        """Seal batches as they come due, until cancelled."""
        while True:
            await asyncio.sleep(self.max_wait / 2)
            await self.flush_due()

    async def _seal(self, agency: str) -> None:
        batch = self._waiting.get(agency)
        if not batch:
            return
        self._waiting[agency] = []
        signed = self.signer.sign_digests(Domain.DIRECTIVE, [item[4] for item in batch])
        async with self._lock:  # batches leave in the order they were sealed
            for (topic, key, value, partition, _), headers in zip(batch, signed, strict=True):
                await self._send(topic, key, value, partition, headers.as_kafka())
        self.batches += 1
        self.sent += len(batch)
