"""Kafka client quotas per principal, declared in ``topics/topics.yaml`` and planned like
ACLs: pure, no Kafka.

::

    quotas:
      defaults:                        # every agency (its User:<agency>, all of its clients)
        producer_byte_rate: 1_048_576  # bytes per second it may produce, per broker
        request_percentage: 100        # % of one broker request/network thread, per window
      principals:                      # overrides, by agency or Concord service principal
        court: {producer_byte_rate: 4_194_304}
        concord-ops: {request_percentage: 25}

Kafka enforces a quota set on the user entity ``User:<name>`` for all of that
principal's connections together, on each broker: a producer over its byte rate, or
a client over its share of request time, gets its responses delayed (and is muted
for that long), so one agency publishing flat out slows itself, not the broker's
threads, the fan-out or the other agencies.  Keys: ``producer_byte_rate``,
``consumer_byte_rate`` (bytes/s, at least 1 KiB/s) and ``request_percentage``
(above 0; 100 is one thread's time).

The fan-out and the admin are never throttled (:data:`services.core.world.UNTHROTTLED`): the fan-out
carries every agency's delistings, and the admin must always be able to repair.
A quota belongs to the principal, not to a namespace: two namespaces on one
cluster with the same agencies share it.

``concord acl plan`` shows every value to set or remove with its reason,
``apply`` sets them (:mod:`services.governance.quotas`), ``drift`` reports them:
a managed principal's quota that ``topics/`` does not declare is removed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.core.world import Quotas

QUOTA_KEYS = ("producer_byte_rate", "consumer_byte_rate", "request_percentage")


class QuotaChange(BaseModel):
    """One quota value to set or remove on ``User:<user>``."""

    model_config = ConfigDict(frozen=True)

    action: Literal["set", "remove"]
    user: str
    key: str
    value: float | None = None
    was: float | None = None
    reason: str

    def short(self) -> str:
        if self.action == "remove":
            return f"User:{self.user} {self.key} (was {_number(self.was)})"
        was = "" if self.was is None else f" (was {_number(self.was)})"
        return f"User:{self.user} {self.key} = {_number(self.value)}{was}"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def plan_quotas(
    quotas: Quotas,
    agencies: Collection[str],
    managed: Collection[str],
    live: Mapping[str, Mapping[str, float]],
) -> list[QuotaChange]:
    """Every quota value to set (missing or different) or remove (on a managed principal,
    not declared), with its reason.  ``managed`` names the users Concord may touch."""
    desired = quotas.desired(agencies)
    changes: list[QuotaChange] = []
    for user in sorted({*managed, *desired}):
        want = desired.get(user, {})
        have = live.get(user, {})
        for key in sorted({*want, *have}):
            if key in want:
                value, where = want[key]
                if have.get(key) != value:
                    changes.append(
                        QuotaChange(
                            action="set",
                            user=user,
                            key=key,
                            value=value,
                            was=have.get(key),
                            reason=f"declared in topics.yaml {where}",
                        )
                    )
            elif key in QUOTA_KEYS and user in managed:
                why = (
                    "not declared in topics.yaml (set by hand?)"
                    if user in agencies or user in desired
                    else "principal no longer declared: its quotas go with its access"
                )
                changes.append(QuotaChange(action="remove", user=user, key=key, was=have[key], reason=why))
    return changes
