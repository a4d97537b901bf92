"""``concord credentials rotate --principal P``: a new SCRAM password with no gap in service.

The order (:mod:`services.credentials` has why): the new password is saved as pending, given
to the broker, tried (a login with it must succeed), and only then moved over the principal's
credentials file, which the running service watches.  Connections it already holds stay
authenticated (Kafka authenticates a connection when it opens); the ones it opens afterwards
use the new password.
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._scram import (  # the package re-exports them without declaring it
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from services.core.errors import BrokerUnavailable
from services.credentials import begin_rotation, finish_rotation
from services.kafka_access import KafkaAccess

SCRAM_ITERATIONS = 8192
TIMEOUT = 30.0


def set_scram_password(
    admin: AdminClient, access: KafkaAccess, user: str, password: str, timeout: float = TIMEOUT
) -> None:
    """Give ``user`` a new SCRAM-SHA-512 password; return once a login with it succeeds."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upsert: list[UserScramCredentialAlteration] = [UserScramCredentialUpsertion(user, info, password.encode())]
    for fut in admin.alter_user_scram_credentials(upsert, request_timeout=TIMEOUT).values():
        try:
            fut.result()
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot change the SCRAM password of {user}: {exc}") from None
    login = access.as_principal(user, password)
    deadline = time.monotonic() + timeout
    while True:
        probe = AdminClient({**login.confluent_config(), "reconnect.backoff.max.ms": 200})
        try:
            probe.list_topics(timeout=5)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"the new password of {user} is not in force after {timeout:.0f}s: {exc}"
                ) from None
        else:
            return
        time.sleep(0.2)


def rotate_password(admin_access: KafkaAccess, folder: Path, principal: str) -> Path:
    """Rotate ``principal``'s SCRAM password (as the admin); return its credentials file."""
    password = begin_rotation(folder, principal)
    admin = AdminClient(admin_access.confluent_config())
    set_scram_password(admin, admin_access, principal, password)
    return finish_rotation(folder, principal)
