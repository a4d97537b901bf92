"""Proof that the exchange did what the lists require: a pure comparison.

The state every implementing agency must hold *now* does not depend on history:
for each entry, the latest accepted version decides which measures apply today
(:func:`services.core.routing.desired_directives`).  So an audit replays nothing;
it takes the latest event per entry from the evidential list topics, computes the
directives that must be in force, and compares them with what is held — in the
compacted directive topics, or in an agency's own store.

Findings:

``MISSING``   a measure that must apply is not held as an APPLY (a listing did not arrive)
``UNLIFTED``  an APPLY is held that nothing requires any more and is still within its
              validity window (a delisting, expiry or MOU change did not arrive)
``DIFFERENT`` held, but for another target, under another MOU version or with another
              validity window than required
``EXPIRED_APPLY`` an APPLY past its ``valid_until`` whose LIFT has not arrived; the
              subscriber already answers "clear" for it, so it restricts nobody
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.core.models import ListEntryEvent, TargetSubject
from services.core.routing import desired_directives
from services.core.verification import masked_ref
from services.core.world import World


@dataclass(frozen=True)
class Held:
    """What a holder (a directive topic or an agency's store) has for one key."""

    action: str
    subscriber: str
    mou_id: str
    mou_version: int
    valid_until: datetime | None
    valid_from: datetime | None = None  # compared when known
    target: TargetSubject | None = None  # compared when known


@dataclass(frozen=True)
class Finding:
    kind: str
    key: str
    subscriber: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind:13} {self.subscriber:10} {masked(self.key)}: {self.detail}"


def masked(key: str) -> str:
    """A directive key as a person may read it in a report: the identifier it names left out."""
    head, _, ref = key.rpartition("|")
    return f"{head}|{masked_ref(ref)}" if head else masked_ref(ref)


def latest_events(events: Iterable[tuple[str, ListEntryEvent]]) -> dict[tuple[str, str], ListEntryEvent]:
    """The highest version of every entry, by (origin agency, entry id)."""
    latest: dict[tuple[str, str], ListEntryEvent] = {}
    for origin, ev in events:
        held = latest.get((origin, ev.entry_id))
        if held is None or ev.version > held.version:
            latest[(origin, ev.entry_id)] = ev
    return latest


def required(
    latest: Mapping[tuple[str, str], ListEntryEvent], world: World, now: datetime
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for (origin, _), ev in latest.items():
        out.update(desired_directives(origin, ev, world, now))
    return out


def compare(
    required_now: Mapping[str, Mapping[str, object]],
    held: Mapping[str, Held],
    now: datetime,
    subscriber: str | None = None,
) -> list[Finding]:
    """Every way ``held`` differs from what is required at ``now`` (optionally for one subscriber)."""
    findings: list[Finding] = []
    for key, spec in sorted(required_now.items()):
        if subscriber is not None and spec["subscriber"] != subscriber:
            continue
        h = held.get(key)
        who = str(spec["subscriber"])
        if h is None or h.action != "APPLY":
            state = "nothing" if h is None else h.action
            findings.append(Finding("MISSING", key, who, f"required APPLY, held {state}"))
        elif (h.mou_id, h.mou_version, h.valid_until) != (spec["mou_id"], spec["mou_version"], spec["valid_until"]):
            findings.append(
                Finding(
                    "DIFFERENT",
                    key,
                    who,
                    f"required {spec['mou_id']} v{spec['mou_version']} until {spec['valid_until']}, "
                    f"held {h.mou_id} v{h.mou_version} until {h.valid_until}",
                )
            )
        elif h.valid_from is not None and h.valid_from != spec["valid_from"]:
            findings.append(
                Finding("DIFFERENT", key, who, f"required from {spec['valid_from']}, held from {h.valid_from}")
            )
        elif h.target is not None and h.target != spec["target"]:
            parts = [
                p
                for p in ("kind", "role", "identifiers", "names")
                if getattr(h.target, p) != getattr(spec["target"], p)
            ]
            findings.append(Finding("DIFFERENT", key, who, f"held for another target ({', '.join(parts)} differ)"))
    for key, h in sorted(held.items()):
        if h.action != "APPLY" or key in required_now:
            continue
        if subscriber is not None and h.subscriber != subscriber:
            continue
        if h.valid_until is not None and h.valid_until <= now:
            findings.append(Finding("EXPIRED_APPLY", key, h.subscriber, f"valid until {h.valid_until}, no LIFT yet"))
        else:
            findings.append(Finding("UNLIFTED", key, h.subscriber, "APPLY held but no longer required"))
    return findings


def audit(
    events: Iterable[tuple[str, ListEntryEvent]],
    held: Mapping[str, Held],
    world: World,
    now: datetime,
    subscriber: str | None = None,
) -> list[Finding]:
    return compare(required(latest_events(events), world, now), held, now, subscriber)
