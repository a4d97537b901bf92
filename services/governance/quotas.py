"""The cluster's client quotas: read and set per user (KIP-546's DescribeClientQuotas and
AlterClientQuotas), for ``concord acl plan / apply / drift``.

confluent-kafka's AdminClient has no client-quota calls (librdkafka does not implement
KIP-546 yet; confluent-kafka-python's pull request for them waits on librdkafka's), and
in KRaft mode quotas cannot be set through AlterConfigs.  aiokafka speaks the protocol:
it ships the DescribeClientQuotas request and its admin client authenticates (SASL/SCRAM
over TLS) and negotiates versions, so the only thing written here is the schema of
AlterClientQuotas v0 (API key 49), the version every broker since Kafka 2.6 accepts.

Both requests go to any broker: KRaft brokers forward the change to the controller.
:func:`alter_user_quotas` returns once a DescribeClientQuotas shows the change, which
is when brokers enforce it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import DescribeClientQuotasRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Float64, Int16, Int32, Schema, String

from services.core.errors import BrokerUnavailable
from services.core.quotas import QuotaChange
from services.kafka_access import KafkaAccess

_USER = "user"
_MATCH_ANY = 2  # DescribeClientQuotas: any entity of the type (0 exact name, 1 the default entity)
TIMEOUT = 30.0


class AlterClientQuotasResponse_v0(Response):  # type: ignore[misc]  # noqa: N801 - aiokafka's names; untyped base
    API_KEY = 49
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "entries",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("entity", Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8")))),
            ),
        ),
    )


class AlterClientQuotasRequest_v0(RequestStruct):  # type: ignore[misc]  # noqa: N801 - as above
    API_KEY = 49
    API_VERSION = 0
    RESPONSE_TYPE = AlterClientQuotasResponse_v0
    SCHEMA = Schema(
        (
            "entries",
            Array(
                ("entity", Array(("entity_type", String("utf-8")), ("entity_name", String("utf-8")))),
                ("ops", Array(("key", String("utf-8")), ("value", Float64), ("remove", Boolean))),
            ),
        ),
        ("validate_only", Boolean),
    )


AlterClientQuotasRequestStruct: TypeAlias = AlterClientQuotasRequest_v0


class AlterClientQuotasRequest(Request[AlterClientQuotasRequestStruct]):  # type: ignore[misc]  # untyped base
    API_KEY = 49

    def __init__(self, entries: list[Any], validate_only: bool = False) -> None:
        self._entries = entries
        self._validate_only = validate_only

    def build(self, request_struct_class: type[AlterClientQuotasRequestStruct]) -> AlterClientQuotasRequestStruct:
        return request_struct_class(self._entries, self._validate_only)


async def _with_admin(access: KafkaAccess, request: Request[Any]) -> Any:
    admin = AIOKafkaAdminClient(**access.aiokafka_kwargs(), request_timeout_ms=int(TIMEOUT * 1000))
    try:
        await admin.start()
        client = admin._client  # noqa: SLF001 - aiokafka's admin has no public call for client quotas
        node = client.get_random_node()
        return await client.send(node, request)
    finally:
        await admin.close()


def _run(access: KafkaAccess, request: Request[Any], what: str) -> Any:
    """Send ``request`` from synchronous code, also when this thread already runs an event loop
    (the governance commands are synchronous; a caller inside a loop gets a thread of its own)."""

    def send() -> Any:
        return asyncio.run(_with_admin(access, request))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    try:
        if not running:
            return send()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="concord-quotas") as pool:
            return pool.submit(send).result()
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot {what}: {exc!r}") from None


def describe_user_quotas(access: KafkaAccess) -> dict[str, dict[str, float]]:
    """Every named user's quotas on the cluster: user -> key -> value (defaults and client-id
    quotas are not Concord's and are left out)."""
    resp = _run(access, DescribeClientQuotasRequest([(_USER, _MATCH_ANY, None)], False), "read client quotas")
    if resp.error_code:
        raise BrokerUnavailable(f"cannot read client quotas: error {resp.error_code}: {resp.error_message}")
    out: dict[str, dict[str, float]] = {}
    for entity, values in resp.entries:
        if len(entity) == 1 and entity[0][0] == _USER and entity[0][1] is not None:
            out[entity[0][1]] = {name: float(value) for name, value in values}
    return out


def alter_user_quotas(access: KafkaAccess, changes: Iterable[QuotaChange], timeout: float = TIMEOUT) -> int:
    """Set and remove the given quota values; return how many, once the cluster describes them."""
    by_user: dict[str, list[tuple[str, float, bool]]] = {}
    for c in changes:
        by_user.setdefault(c.user, []).append((c.key, float(c.value or 0.0), c.action == "remove"))
    if not by_user:
        return 0
    entries = [([(_USER, user)], ops) for user, ops in sorted(by_user.items())]
    resp = _run(access, AlterClientQuotasRequest(entries), "set client quotas")
    failed = [f"User:{entity[0][1]}: error {code}: {message}" for code, message, entity in resp.entries if code]
    if failed:
        raise BrokerUnavailable("cannot set client quotas: " + "; ".join(failed))
    _await_quotas(access, by_user, timeout)
    return sum(len(ops) for ops in by_user.values())


def _await_quotas(access: KafkaAccess, wanted: Mapping[str, list[tuple[str, float, bool]]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        live = describe_user_quotas(access)
        if all(
            (key not in live.get(user, {})) if remove else live.get(user, {}).get(key) == value
            for user, ops in wanted.items()
            for key, value, remove in ops
        ):
            return
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"client quotas not in force {timeout:.0f}s after they were set")
        time.sleep(0.1)
