"""Draining: withdrawal of an agency's feed waits until its directives have reached it.

When an agency loses the READ on its directive topic (its last MOU ended), the LIFTs the
fan-out emits for what it still applies must reach it first.  A plan keeps the agency's
feed bindings as *draining* until :func:`drain_status` says the topic is drained: no
directive key still ends in an APPLY in force (the fan-out has lifted everything) and the
agency's receipts name the last directive of every partition (a subscriber reads each
partition in order, so a receipt for the last record proves it read everything before it).
A record the subscriber could not decode is receipted under :func:`unreadable_id`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.core.access import AclRule, compile_acls, feed_topics, principal
from services.core.acl_scope import managed_scope
from services.core.cluster_state import LiveState
from services.core.world import World


@dataclass(frozen=True)
class FeedRecord:
    """One record of an agency's directive topic, as much as draining needs of it."""

    partition: int
    offset: int
    directive_id: str
    key: str | None = None
    action: str | None = None  # APPLY | LIFT; None when the record is unreadable
    valid_until: datetime | None = None


@dataclass(frozen=True)
class DrainStatus:
    agency: str
    drained: bool
    detail: str
    outstanding: int = 0
    unreceipted: tuple[int, ...] = ()
    ends: tuple[tuple[int, int], ...] = ()

    def fingerprint_part(self) -> list[Any]:
        return [self.drained, self.outstanding, list(self.unreceipted), [list(e) for e in self.ends]]


def unreadable_id(topic: str, partition: int, offset: int) -> str:
    """The id a subscriber's REJECTED receipt names for a record it could not decode."""
    return f"unreadable:{topic}:{partition}:{offset}"


def drain_status(
    agency: str, topic: str, records: Iterable[FeedRecord], receipted: Collection[str], now: datetime
) -> DrainStatus:
    """Whether ``agency`` has received everything its directive topic still holds for it.

    Drained when no key's latest directive is an APPLY still in force (an APPLY past its
    ``valid_until`` counts as ended: the subscriber never enforces it) and the last
    record of every partition has a receipt (receipts are keyed by directive id).
    """
    latest: dict[str, FeedRecord] = {}
    last: dict[int, FeedRecord] = {}
    for rec in records:
        if rec.key is not None:
            held = latest.get(rec.key)
            if held is None or rec.offset > held.offset:
                latest[rec.key] = rec
        held = last.get(rec.partition)
        if held is None or rec.offset > held.offset:
            last[rec.partition] = rec
    outstanding = sum(
        1 for r in latest.values() if r.action == "APPLY" and (r.valid_until is None or r.valid_until > now)
    )
    unreceipted = tuple(sorted(p for p, r in last.items() if r.directive_id not in receipted))
    ends = tuple(sorted((p, r.offset + 1) for p, r in last.items()))
    problems = []
    if outstanding:
        problems.append(f"{outstanding} directive(s) of {topic} still APPLY; waiting for the fan-out's LIFTs")
    if unreceipted:
        parts = ", ".join(str(p) for p in unreceipted)
        problems.append(f"no receipt from {agency} for the last directive of partition(s) {parts}")
    if problems:
        detail = "; ".join(problems)
    elif not last:
        detail = f"{topic} holds no directives"
    else:
        where = ", ".join(f"p{p}@{end}" for p, end in ends)
        detail = f"drained: {agency}'s receipts cover {topic} to its end ({where})"
    return DrainStatus(agency, not problems, detail, outstanding, unreceipted, ends)


def drain_candidates(world: World, namespace: str, at: datetime, live: LiveState) -> tuple[str, ...]:
    """Agencies that hold READ on their directive topic although no MOU grants it any more."""
    scope = managed_scope(world, namespace, live.ledger)
    desired = set(compile_acls(world, namespace, at))
    out = []
    for agency in scope.agencies:
        directives, _ = feed_topics(world, namespace, agency)
        read = AclRule(principal(agency), "TOPIC", "LITERAL", directives, "READ")
        if read in live.acls and read not in desired:
            out.append(agency)
    return tuple(out)
