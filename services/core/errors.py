"""Every error Concord raises on purpose derives from :class:`ConcordError`.

    ConcordError
    ├── RecordInvalid          a record breaks a rule (carries FieldProblem items)
    ├── CodecError             bytes that are not a record Concord can read
    │   ├── NotSingleObject        missing the Avro single-object marker
    │   ├── UnknownFingerprint     schema fingerprint not in schemas/
    │   └── UndecodableBody        body does not decode with the named schema
    ├── SignatureInvalid       signature missing, forged, wrong key or agency
    ├── WorldInvalid           topics/ declarations malformed or inconsistent
    ├── ConfigError            settings missing or wrong (credentials, CA, paths)
    └── BrokerUnavailable      the Kafka cluster cannot be reached  (retriable)

``retriable`` on the class tells callers whether trying again can help, as in
aiokafka's errors module.  Errors that cross a boundary carry the context a
person needs (agency, file and line, topic/partition/offset) in ``context``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from services.core.reasons import Reason


class ConcordError(Exception):
    retriable: ClassVar[bool] = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        where = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({where})"


@dataclass(frozen=True)
class FieldProblem:
    """One reason a record is invalid: a dotted field path and a message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<record>'}: {self.message}"


class RecordInvalid(ConcordError):
    def __init__(self, problems: list[FieldProblem], **context: Any) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems), **context)


class CodecError(ConcordError):
    reason: ClassVar[Reason] = Reason.UNDECODABLE


class NotSingleObject(CodecError):
    reason = Reason.NOT_SINGLE_OBJECT


class UnknownFingerprint(CodecError):
    reason = Reason.UNKNOWN_FINGERPRINT


class UndecodableBody(CodecError):
    reason = Reason.UNDECODABLE


class SignatureInvalid(ConcordError):
    def __init__(self, reason: Reason, message: str, **context: Any) -> None:
        self.reason = reason
        super().__init__(message, **context)


class WorldInvalid(ConcordError):
    pass


class ConfigError(ConcordError):
    pass


class BrokerUnavailable(ConcordError):
    retriable = True
