"""Does a directive follow from the publisher's record and the MOUs?  The subscriber's own check.

An implementing agency acts on nothing it cannot check itself.  The fan-out's signature
says the exchange issued a directive, the publisher's says the listing is genuine; this
module says whether *this* directive is what routing makes of *that* listing under the
MOU versions in force when it was issued — recomputed with the same pure routing core
the fan-out runs (:mod:`services.core.routing`).  The fan-out is trusted for timeliness,
not for content: a directive that targets another person than the record names, carries
a longer validity than the record and the MOU allow, names another MOU version or
measure kind, or lifts a standing listing, is refused with its own reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.models import Action, Directive, ListEntryEvent
from services.core.reasons import Reason
from services.core.routing import desired_directives
from services.core.world import World


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    detail: str


def verify_routing(d: Directive, event: ListEntryEvent, world: World) -> Refusal | None:
    """None if ``d`` is exactly what routing makes of ``event`` for its key at ``d.issued_at``.

    ``event`` is the publisher's record ``d`` carries, already verified as genuine.  An APPLY
    must equal, field for field, the directive the routing core wants for its key then; a
    LIFT is justified when the record (a delisting, a later version without the subject) or
    the MOUs and the clock at that time no longer call for the key.
    """
    if (d.entry_id, d.entry_version, d.program) != (event.entry_id, event.version, event.program):
        return Refusal(
            Reason.SOURCE_MISMATCH,
            f"directive names {d.entry_id} v{d.entry_version} ({d.program}), its record is "
            f"{event.entry_id} v{event.version} ({event.program})",
        )
    want = desired_directives(d.origin_agency, event, world, d.issued_at).get(d.key)
    if d.action is Action.LIFT:
        if want is None:
            return None
        return Refusal(
            Reason.UNJUSTIFIED_LIFT,
            f"{d.measure_id} for {masked_ref(d.subject_ref)} still follows from {d.entry_id} v{d.entry_version} "
            f"under {want['mou_id']} v{want['mou_version']} at {d.issued_at:%Y-%m-%dT%H:%M:%SZ}",
        )
    if want is None:
        why = (
            f"{d.entry_id} v{d.entry_version} is {event.event_type.value}"
            if event.ends_entry
            else f"no MOU in force at {d.issued_at:%Y-%m-%dT%H:%M:%SZ} calls for {d.measure_id} "
            f"on {masked_ref(d.subject_ref)}"
        )
        return Refusal(Reason.NOT_ROUTED, why)
    if d.target != want["target"]:
        return Refusal(
            Reason.TARGET_MISMATCH,
            f"{d.measure_id} on {d.entry_id} v{d.entry_version}: the target's "
            f"{_differs(d.target, want['target'])} differ from what the record names",
        )
    if (d.subscriber, d.measure_kind) != (want["subscriber"], want["measure_kind"]):
        return Refusal(
            Reason.MEASURE_MISMATCH,
            f"{d.measure_id} is a {want['measure_kind']} measure of {want['subscriber']}, not a "
            f"{d.measure_kind} measure of {d.subscriber}",
        )
    if (d.mou_id, d.mou_version) != (want["mou_id"], want["mou_version"]):
        return Refusal(
            Reason.MOU_MISMATCH,
            f"{d.measure_id} is under {want['mou_id']} v{want['mou_version']} then, not {d.mou_id} v{d.mou_version}",
        )
    if (d.valid_from, d.valid_until) != (want["valid_from"], want["valid_until"]):
        return Refusal(
            Reason.WINDOW_MISMATCH,
            f"{d.measure_id} applies {_span(want['valid_from'], want['valid_until'])}, not "
            f"{_span(d.valid_from, d.valid_until)}",
        )
    return None


def masked_ref(ref: str) -> str:
    """A subject reference (``ROLE:SCHEME:VALUE``) without the identifier it names."""
    if ref.count(":") >= 2:
        role, scheme, _ = ref.split(":", 2)
        return f"{role}:{scheme}:*"
    return ref


def _differs(got: object, want: object) -> str:
    """Which parts of a target differ, named without their values (identifiers and names never go
    into logs or receipts)."""
    parts = [p for p in ("kind", "role", "identifiers", "names") if getattr(got, p, None) != getattr(want, p, None)]
    return ", ".join(parts) or "content"


def _span(start: object, end: object) -> str:
    return f"from {start} until {end if end is not None else 'no end'}"
