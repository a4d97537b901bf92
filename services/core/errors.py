"""Every error Concord raises on purpose derives from :class:`ConcordError`.

    ConcordError
    ├── RecordInvalid          a record breaks a rule (carries Problem items)
    ├── CodecError             bytes that are not a record Concord can read
    │   ├── NotSingleObject        missing the Avro single-object marker
    │   ├── UnknownFingerprint     schema fingerprint not in schemas/
    │   └── UndecodableBody        body does not decode with the named schema
    ├── SignatureInvalid       signature missing, forged, wrong key or agency
    ├── WorldInvalid           topics/ declarations malformed or inconsistent (carries Problem items)
    ├── ConfigError            settings missing or wrong (credentials, CA, paths)
    └── BrokerUnavailable      the Kafka cluster cannot be reached  (retriable)

``retriable`` on the class tells callers whether trying again can help, as in
aiokafka's errors module.  Errors that cross a boundary carry the context a
person needs (agency, file and line, topic/partition/offset) in ``context``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from services.core.problems import Problem, describe
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


class RecordInvalid(ConcordError):
    def __init__(self, problems: Sequence[Problem], **context: Any) -> None:
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
    """Every problem of the declared world, reported at once; a single problem also
    sets ``file``, ``path`` and ``line`` in ``context``."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        only = self.problems[0] if len(self.problems) == 1 else None
        if only is None:
            super().__init__(describe(self.problems, "the declared world"))
        else:
            super().__init__(str(only), file=only.file, path=only.path or None, line=only.line)


class ConfigError(ConcordError):
    pass


class BrokerUnavailable(ConcordError):
    retriable = True
