"""``concord acl plan | apply | drift``: the I/O around the pure planner.

Reads the live state as the admin, measures draining agencies, hands everything
to :func:`services.core.governance_plan.make_plan`, and applies a plan in an order
that never leaves a principal with less than it needs or more than it may have for
longer than necessary: users, then topics, then new bindings (waiting until the
broker enforces them), then removals (waiting until they are gone), then client
quotas (:mod:`services.governance.quotas`), then the ledger.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from services.core.acl_scope import Scope
from services.core.cluster_state import LiveState
from services.core.draining import DrainStatus, drain_candidates
from services.core.errors import BrokerUnavailable
from services.core.governance_plan import (
    DEFAULT_MAX_DELETIONS,
    Plan,
    PlanRefused,
    check_deletions,
    check_fresh,
    live_fingerprint,
    make_plan,
)
from services.core.world import World
from services.credentials import ensure_credentials
from services.governance.admin import (
    TIMEOUT,
    admin_client,
    create_scram_users,
    delete_acls,
    ensure_acls,
    live_acls,
    scram_users,
    set_topic_configs,
    topic_states,
)
from services.governance.drain import measure_drain
from services.governance.ledger import ensure_ledger_topic, read_ledger, write_ledger
from services.governance.quotas import alter_user_quotas, describe_user_quotas
from services.kafka_access import KafkaAccess


@dataclass(frozen=True)
class ApplyResult:
    acls_added: int = 0
    acls_removed: int = 0
    topics_created: tuple[str, ...] = ()
    topics_reconfigured: tuple[str, ...] = ()
    users_created: tuple[str, ...] = ()
    ledger_written: bool = False
    quotas_changed: int = 0

    def changed(self) -> bool:
        return bool(
            self.acls_added
            or self.acls_removed
            or self.topics_created
            or self.topics_reconfigured
            or self.users_created
            or self.quotas_changed
        )

    def summary(self) -> str:
        return (
            f"Applied: {self.acls_added} binding(s) added, {self.acls_removed} removed, "
            f"{len(self.topics_created)} topic(s) created, {len(self.topics_reconfigured)} reconfigured, "
            f"{len(self.users_created)} SCRAM user(s) created, {self.quotas_changed} quota value(s) changed"
            + ("; ledger recorded." if self.ledger_written else "; ledger unchanged.")
        )


@dataclass
class Governance:
    """One namespace of one cluster, seen and changed by the admin."""

    access: KafkaAccess
    world: World
    namespace: str
    credentials_dir: Path  # one credentials file per principal
    brokers: int | None = None  # a cluster smaller than topics/ declares replicas for (TopicSpec.fitted)
    # Whether draining agencies' directive and receipts topics are read (the admin's plan does;
    # the drift check, which may only describe, reports those agencies as not measured).
    measure_drains: bool = True
    _admin: AdminClient | None = field(default=None, init=False, repr=False)

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = admin_client(self.access)
        return self._admin

    # --- reading ------------------------------------------------------------------

    def read_live(self) -> LiveState:
        ledger, revision = read_ledger(self.access, self.namespace)
        scope = Scope.of(self.namespace, ())
        return LiveState(
            acls=tuple(live_acls(self.admin)),
            topics=topic_states(self.admin, scope.in_namespace),
            users=scram_users(self.admin),
            ledger=ledger,
            ledger_revision=revision,
            quotas=describe_user_quotas(self.access),
        )

    def measure(self, agencies: Collection[str]) -> dict[str, DrainStatus]:
        if not self.measure_drains:
            return {
                a: DrainStatus(
                    a, False, f"drain state not measured by {self.access.username} (`concord acl plan` measures it)"
                )
                for a in sorted(agencies)
            }
        return {a: measure_drain(self.access, self.world, self.namespace, a) for a in sorted(agencies)}

    def plan(self, *, at: datetime | None = None, force_withdraw: Collection[str] = ()) -> Plan:
        at = at or datetime.now(UTC)
        live = self.read_live()
        drains = self.measure(drain_candidates(self.world, self.namespace, at, live))
        return make_plan(
            self.world, self.namespace, at, live, drains, force_withdraw=force_withdraw, brokers=self.brokers
        )

    def fingerprint_for(self, plan: Plan) -> tuple[str, LiveState]:
        """The live fingerprint as ``plan`` computed it: same scope, same draining agencies."""
        live = self.read_live()
        drains = self.measure([d.agency for d in plan.drains])
        return live_fingerprint(live, plan.scope, drains), live

    # --- changing -----------------------------------------------------------------

    def apply(self, plan: Plan, *, max_deletions: int = DEFAULT_MAX_DELETIONS) -> ApplyResult:
        """Apply ``plan`` if the cluster is still as it was when the plan was made."""
        if plan.namespace != self.namespace:
            raise PlanRefused(f"the plan is for namespace {plan.namespace!r}, not {self.namespace!r}")
        check_deletions(plan, max_deletions)
        fingerprint, live = self.fingerprint_for(plan)
        check_fresh(plan, fingerprint)

        users = self._create_users([u.user for u in plan.users_to_create])
        created = self._create_topics(plan)
        reconfigured = {t.name: dict(t.config) for t in plan.topics_to_alter}
        set_topic_configs(self.admin, reconfigured)
        added = ensure_acls(self.admin, [c.rule for c in plan.additions])
        removed = delete_acls(self.admin, [c.rule for c in plan.removals])
        quotas = alter_user_quotas(self.access, plan.quotas)

        # Recorded whenever this apply changed something (an audit trail of applies) or the
        # ledger's content differs; an apply that changes nothing writes nothing.
        ledger = plan.ledger(datetime.now(UTC), users, previous=live.ledger)
        changed = bool(users or created or reconfigured or added or removed or quotas)
        written = changed or live.ledger is None or live.ledger.content() != ledger.content()
        if written:
            registry = self.world.topic_spec("registry", namespace=self.namespace).fitted(self.brokers)
            ensure_ledger_topic(self.admin, self.namespace, registry.replication, registry.min_insync_replicas)
            write_ledger(self.access, ledger)
        return ApplyResult(
            len(added), len(removed), tuple(created), tuple(sorted(reconfigured)), tuple(users), written, quotas
        )

    def _create_topics(self, plan: Plan) -> list[str]:
        specs = [t.spec for t in plan.topics_to_create if t.spec is not None]
        if not specs:
            return []
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.kafka_config())
            for s in specs
        ]
        made = []
        for name, fut in self.admin.create_topics(new, request_timeout=TIMEOUT).items():
            try:
                fut.result()
                made.append(name)
            except Exception as exc:  # noqa: BLE001 - KafkaException carries the code we test
                code = exc.args[0].code() if exc.args and hasattr(exc.args[0], "code") else None
                if code != 36:  # TOPIC_ALREADY_EXISTS: someone else was quicker
                    raise BrokerUnavailable(f"cannot create topic {name}: {exc}") from None
        return sorted(made)

    def _create_users(self, users: list[str]) -> list[str]:
        """Create SCRAM users, saving each password before the broker knows it.

        A principal that already has a credentials file keeps its password (it may have been
        handed to the agency before its user existed); the others get a new one, each in a
        file of its own (:mod:`services.credentials`).  Writing the file first means a crash can
        never leave a user nobody can log in as.
        """
        if not users:
            return []
        passwords = ensure_credentials(self.credentials_dir, users)
        return create_scram_users(self.admin, passwords)
