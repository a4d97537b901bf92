"""The ledger: what Concord itself applied last in one namespace.

A plan compares the declared world with the live cluster *and* with the ledger, so it can
tell a binding Concord granted and must now withdraw (and why it had been granted) from one
somebody added by hand.  The ledger is kept on a compacted topic by the shell
(:mod:`services.governance.ledger`); this module is its value and its wire form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from services.core.access import AclRule

LEDGER_FORMAT: Final = "concord.acl-ledger/v1"

_RULES = TypeAdapter(tuple[AclRule, ...])


class Ledger(BaseModel):
    """What Concord applied last in one namespace."""

    model_config = ConfigDict(frozen=True)

    format: Literal["concord.acl-ledger/v1"] = LEDGER_FORMAT
    namespace: str
    applied_at: datetime
    plan_fingerprint: str
    world_digest: str
    agencies: tuple[str, ...]
    bindings: tuple[AclRule, ...]
    draining: dict[str, datetime] = {}
    users_created: tuple[str, ...] = ()

    def content(self) -> dict[str, Any]:
        """What the ledger says, without when and by which plan: equal content, no new record."""
        doc = self.model_dump(mode="json", exclude={"applied_at", "plan_fingerprint"})
        doc["bindings"] = sorted(json.dumps(b, sort_keys=True) for b in doc["bindings"])
        return doc

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ledger:
        return cls.model_validate_json(raw)

    def binding(self, rule: AclRule) -> AclRule | None:
        """The ledger's copy of ``rule`` (it carries the grants it was applied for)."""
        return by_rule(self.bindings).get(rule)


def by_rule(rules: Iterable[AclRule]) -> dict[AclRule, AclRule]:
    """Each rule by its identity, to find the copy that carries its grants."""
    return {r: r for r in rules}


def rules_from_json(raw: Any) -> tuple[AclRule, ...]:
    return _RULES.validate_python(raw)
