"""Concord's own principals: the one place their names are written.

Every SCRAM user, ACL binding, credentials file, super-user list and signer that
stands for one of Concord's services names it through these constants; agencies are
principals too, named by their agency id (``topics/agencies.yaml``).

``concord-admin``   super user: ``concord acl apply``, ``concord registry publish``, key and
                    credential rotation, break-glass.  Holds no bindings, is never managed.
``concord-fanout``  the fan-out: reads list and receipts topics, writes directives, notices,
                    quarantine and its state changelog, in Kafka transactions.
``concord-ops``     operators' read-only view (``concord status``): describe, nothing more.
``concord-audit``   ``concord audit``: reads lists, directives, receipts and quarantine.
``concord-drift``   ``concord acl drift``: describes the cluster, reads the governance ledger.
``broker``          the embedded broker's own inter-broker user (PLAIN, not SCRAM).
"""

from __future__ import annotations

from collections.abc import Iterable

ADMIN = "concord-admin"
FANOUT = "concord-fanout"
OPS = "concord-ops"
AUDIT = "concord-audit"
DRIFT = "concord-drift"
BROKER = "broker"

#: Concord's service principals that the governance tool manages (bindings, SCRAM users).
SERVICE_PRINCIPALS: tuple[str, ...] = (FANOUT, OPS, AUDIT, DRIFT)

#: Every SCRAM user Concord itself needs, the admin first.
CONCORD_PRINCIPALS: tuple[str, ...] = (ADMIN, *SERVICE_PRINCIPALS)

#: Never throttled by client quotas: the fan-out carries everyone's traffic, the admin repairs.
UNTHROTTLED: tuple[str, ...] = (FANOUT, ADMIN)

#: Principals that hold signing keys besides the agencies.
SIGNING_PRINCIPALS: tuple[str, ...] = (FANOUT, ADMIN)


def all_principals(agencies: Iterable[str]) -> list[str]:
    """Concord's principals, then one per agency (sorted)."""
    return [*CONCORD_PRINCIPALS, *sorted(agencies)]
