"""A plan as a person reads it: by agency, then MOU, one line per change with its reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.core.governance_plan import Plan

_SYMBOL = {"add": "+", "remove": "-", "drain": "~", "unmanaged": "!"}


def summary(plan: Plan) -> str:
    """One line: how many of each change."""
    parts = [f"{len(plan.additions)} to add", f"{len(plan.removals)} to remove"]
    if plan.draining:
        parts.append(f"{len(plan.draining)} kept while draining")
    if plan.unmanaged:
        parts.append(f"{len(plan.unmanaged)} unmanaged (never touched)")
    if plan.topics_to_create or plan.topics_to_alter:
        parts.append(f"{len(plan.topics_to_create)} topic(s) to create, {len(plan.topics_to_alter)} to reconfigure")
    if plan.users_to_create:
        parts.append(f"{len(plan.users_to_create)} SCRAM user(s) to create")
    if plan.quotas:
        removed = sum(1 for q in plan.quotas if q.action == "remove")
        parts.append(f"{len(plan.quotas) - removed} quota value(s) to set, {removed} to remove")
    return f"Plan: {', '.join(parts)}; {plan.unchanged} binding(s) unchanged."


def render(plan: Plan, *, max_deletions: int | None = None) -> str:
    """The readable diff: by agency, then MOU, one line per binding with its reason."""
    lines = [
        (
            f"Concord access plan for namespace {plan.namespace!r} "
            f"(live state {plan.fingerprint[:16]}, world {plan.world_digest[:12]})"
        )
    ]
    if plan.ledger_applied_at is not None:
        lines.append(f"Last applied by Concord: {plan.ledger_applied_at.isoformat(timespec='seconds')}")
    else:
        lines.append("Last applied by Concord: never (no ledger in this namespace)")
    if plan.fitting:
        lines.append(plan.fitting)
    for owner, groups in plan.groups().items():
        lines.append("")
        lines.append(owner)
        for group, changes in groups.items():
            lines.append(f"  [{group}]")
            width = max(len(c.rule.short()) for c in changes)
            for c in changes:
                who = "" if c.action != "unmanaged" else f"{c.rule.principal} "
                lines.append(f"    {_SYMBOL[c.action]} {who}{c.rule.short():<{width}}  {c.reason}")
    if plan.topics:
        lines += ["", "topics"]
        sym = {"create": "+", "alter": "~", "report": "!"}
        width = max(len(t.name) for t in plan.topics)
        lines += [f"    {sym[t.action]} {t.name:<{width}}  {t.reason}" for t in plan.topics]
    if plan.users:
        lines += ["", "SCRAM users"]
        width = max(len(u.user) for u in plan.users)
        lines += [f"    {'+' if u.action == 'create' else '!'} {u.user:<{width}}  {u.reason}" for u in plan.users]
    if plan.quotas:
        lines += ["", "quotas"]
        width = max(len(q.short()) for q in plan.quotas)
        lines += [f"    {'+' if q.action == 'set' else '-'} {q.short():<{width}}  {q.reason}" for q in plan.quotas]
    if plan.drains:
        lines += ["", "draining"]
        for d in plan.drains:
            state = "withdrawn now" if d.withdrawn else "kept"
            since = f" (draining since {d.since.isoformat(timespec='seconds')})" if d.since else ""
            lines.append(f"    {d.agency}: {state}{since}: {d.detail}")
    lines += ["", summary(plan)]
    if not plan.has_changes() and plan.draining:
        lines.append(
            "Nothing to change now: the cluster matches the declared world, except for bindings "
            "kept until their agencies have drained."
        )
    elif not plan.has_changes():
        lines.append("Nothing to change: the cluster matches the declared world.")
    if max_deletions is not None and len(plan.removals) > max_deletions:
        lines.append(
            f"Apply will refuse: {len(plan.removals)} removals exceed the cap of {max_deletions} "
            "(--max-deletions N to allow more)."
        )
    return "\n".join(lines)
