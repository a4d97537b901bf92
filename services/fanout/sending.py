"""How the fan-out signs directives: one signature per batch of an agency's directives.

With batch signatures an implementing agency's directives wait, until ``max_records``
are waiting or the Kafka transaction they belong to is about to commit, and are then
signed together — one Ed25519 signature over the Merkle root of their digests — and
produced in the order they were made, each carrying its audit path
(:mod:`services.core.signing`).  A batch never mixes agencies: an agency's audit paths
commit only to its own directives.  Without batching every directive is signed on its
own and produced at once.

The engine calls :meth:`DirectiveSealer.seal_all` before it commits a transaction, so a
directive never waits here across a commit: its source offset and the entry's new
state commit together with it, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable

from services.core.signing import Domain, Signer, digest_of

Produce = Callable[[str, bytes, bytes, int, list[tuple[str, bytes]]], None]


class DirectiveSealer:
    """Signs and produces directives, per agency in batches (or one by one with ``batch=False``)."""

    def __init__(
        self,
        *,
        signer: Signer,
        produce: Produce,
        batch: bool = True,
        max_records: int = 512,
        domain: Domain = Domain.DIRECTIVE,
    ) -> None:
        self.signer = signer
        self.domain = domain
        self.batch = batch
        self.max_records = max_records
        self._produce = produce
        self._waiting: dict[str, list[tuple[str, bytes, bytes, int, bytes]]] = {}
        self.batches = 0
        self.sent = 0

    def add(self, agency: str, topic: str, key: bytes, value: bytes, partition: int) -> None:
        if not self.batch:
            self._produce(topic, key, value, partition, self.signer.sign(self.domain, value).as_kafka())
            self.sent += 1
            return
        waiting = self._waiting.setdefault(agency, [])
        waiting.append((topic, key, value, partition, digest_of(value)))
        if len(waiting) >= self.max_records:
            self._seal(agency)

    def waiting(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    def seal_all(self) -> None:
        """Sign and produce every waiting batch."""
        for agency in list(self._waiting):
            self._seal(agency)

    def discard(self) -> None:
        """The transaction aborted: what waits here will be made again when its records are."""
        self._waiting.clear()

    def _seal(self, agency: str) -> None:
        batch = self._waiting.pop(agency, None)
        if not batch:
            return
        signed = self.signer.sign_digests(self.domain, [item[4] for item in batch])
        for (topic, key, value, partition, _), headers in zip(batch, signed, strict=True):
            self._produce(topic, key, value, partition, headers.as_kafka())
        self.batches += 1
        self.sent += len(batch)
