"""The vocabulary of the declared world's files: identifiers, texts, counts and days as
validated field types, and the frozen mapping that keeps a loaded world unchangeable."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
)

from services.core.models import SubjectKind

#: Subject fields an MOU may make visible to an implementing agency.
#: Parts of a listing an MOU may make visible to an implementing agency: the subject's fields and,
#: beside them, the listing's reason, legal basis and delisting (see services/core/disclosure.py).
SUBJECT_FIELDS: tuple[str, ...] = ("kind", "names", "identifiers", "related_parties", "reason", "basis", "delisting")

# Agency ids end up in topic names, principals and consumer-group prefixes, so they stay
# within the characters all three accept, and without dots (a dot separates the parts
# of a topic name and of program and measure ids).
_AGENCY_ID = re.compile(r"[a-z][a-z0-9-]{0,47}")
_LOCAL_NAME = r"[a-z0-9][a-z0-9-]{0,63}"
# Program and measure ids are "<agency>.<name>": the agency part names who owns them.
_SCOPED_ID = re.compile(rf"(?P<agency>{_AGENCY_ID.pattern})\.(?P<local>{_LOCAL_NAME})")
_MOU_ID = re.compile(r"[a-z][a-z0-9-]{0,63}")
_ROLE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")

_K = TypeVar("_K")
_V = TypeVar("_V")


class FrozenDict(dict[_K, _V]):
    """A dict that refuses mutation and hashes by content.

    Frozen models only stop attribute assignment; a plain dict field could still be
    changed in place, and it would make the model unhashable. This closes both holes
    while still being a ``dict`` for serialisation and equality.
    """

    def __hash__(self) -> int:  # type: ignore[override]  # dict declares __hash__ None; this one is frozen, so it hashes
        return hash(frozenset(self.items()))

    def _readonly(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("this mapping is part of the frozen world and cannot be changed")

    __setitem__ = _readonly
    __delitem__ = _readonly
    __ior__ = _readonly
    clear = _readonly
    pop = _readonly
    popitem = _readonly
    setdefault = _readonly
    update = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        # dict's default pickling rebuilds by item assignment, which this class refuses.
        return (FrozenDict, (dict(self),))


def _freeze(value: Mapping[Any, Any]) -> FrozenDict[Any, Any]:
    return FrozenDict(value)


FrozenMapping = Annotated[Mapping[_K, _V], AfterValidator(_freeze)]


def _check_agency_id(value: str) -> str:
    if not _AGENCY_ID.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid agency id (lowercase letters, digits and '-', "
            "starting with a letter, at most 48 characters)"
        )
    if value == "concord" or value.startswith("concord-"):
        raise ValueError(
            f"agency id {value!r} is reserved: 'concord' and 'concord-*' name Concord's own "
            "principals (fan-out, admin, ops)"
        )
    return value


def _check_scoped_id(what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not _SCOPED_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid {what} id (expected '<agency>.<name>', lowercase letters, digits and '-')"
            )
        return value

    return AfterValidator(check)


def _check_mou_id(value: str) -> str:
    if not _MOU_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid MOU id (lowercase letters, digits and '-', starting with a letter)")
    return value


def _check_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_applies_to(value: str) -> str:
    if value in frozenset(SubjectKind):
        return value
    if value.startswith("RELATED:") and _ROLE.fullmatch(value[len("RELATED:") :]):
        return value
    raise ValueError(
        f"bad applies_to value {value!r}: expected PERSON, ORGANIZATION or RELATED:<ROLE> with ROLE in UPPER_SNAKE_CASE"
    )


def _check_subject_field(value: str) -> str:
    if value not in SUBJECT_FIELDS:
        raise ValueError(f"unknown subject field {value!r}; known: {', '.join(SUBJECT_FIELDS)}")
    return value


def _check_retention(value: int) -> int:
    if value != -1 and value < 1:
        raise ValueError(f"retention_ms must be -1 (keep forever) or positive, not {value}")
    return value


def _no_number_dates(value: Any) -> Any:
    # Pydantic reads numbers as Unix timestamps; in a legal document a number where a
    # date belongs is a typo (20160120), never a timestamp.
    if isinstance(value, (bool, int, float)):
        raise ValueError(f"expected a date (YYYY-MM-DD), got the number {value!r}")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, datetime):
        raise ValueError(f"expected a date (YYYY-MM-DD), got the date-time {value.isoformat()}")  # noqa: TRY004 - as above
    return value


def _config_value(value: Any) -> Any:
    # Kafka topic configs are strings; YAML readers naturally write numbers and booleans.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


def unique(values: tuple[Any, ...]) -> tuple[Any, ...]:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(value)
    return values


AgencyId = Annotated[str, AfterValidator(_check_agency_id)]
ProgramId = Annotated[str, _check_scoped_id("program")]
MeasureId = Annotated[str, _check_scoped_id("measure")]
MouId = Annotated[str, AfterValidator(_check_mou_id)]
Text = Annotated[str, AfterValidator(_check_text)]
AppliesTo = Annotated[str, AfterValidator(_check_applies_to)]
SubjectField = Annotated[str, AfterValidator(_check_subject_field)]
Count = Annotated[int, Strict(), Field(ge=1)]
RetentionMs = Annotated[int, Strict(), AfterValidator(_check_retention)]
Day = Annotated[date, BeforeValidator(_no_number_dates)]
ConfigValue = Annotated[str, BeforeValidator(_config_value)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
