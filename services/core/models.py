"""The records Concord exchanges, as frozen pydantic models.

The shapes mirror the Avro schemas in ``schemas/`` field for field: a model dumped
with ``model_dump()`` is exactly the datum fastavro encodes, and a decoded datum
validates back into the model.  Structural rules live here (types, sizes, enums);
rules that need context (who publishes, which programs exist) live in
:mod:`services.core.validation`.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Size limits keep one bad export from producing a record Kafka refuses or a
# subscriber cannot hold; they are generous for real data.
MAX_TEXT = 1000
MAX_NAMES = 20
MAX_IDENTIFIERS = 20
MAX_RELATED = 50


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone, e.g. 2026-03-10T00:00:00Z")
    return value


Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, strip_whitespace=True)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]
AwareDatetime = Annotated[datetime, AfterValidator(_utc)]


class _Frozen(BaseModel):
    # Bytes travel as base64 in JSON (state snapshots, API answers), raw in Avro.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")


class EventType(StrEnum):
    LISTED = "LISTED"
    AMENDED = "AMENDED"
    DELISTED = "DELISTED"
    EXPIRED = "EXPIRED"
    RETRACTED = "RETRACTED"


class ListKind(StrEnum):
    SANCTION = "SANCTION"
    INCENTIVE = "INCENTIVE"


class SubjectKind(StrEnum):
    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"


class DelistingReason(StrEnum):
    PERFORMED = "PERFORMED"
    SETTLEMENT = "SETTLEMENT"
    CREDITOR_REQUEST = "CREDITOR_REQUEST"
    CREDIT_REPAIR = "CREDIT_REPAIR"
    COURT_ORDER = "COURT_ORDER"
    ERROR = "ERROR"
    DECEASED = "DECEASED"
    DISSOLVED = "DISSOLVED"
    OTHER = "OTHER"


class Name(_Frozen):
    value: Text
    lang: ShortText | None = None


class Identifier(_Frozen):
    scheme: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]
    value: Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


class RelatedParty(_Frozen):
    role: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")]
    kind: SubjectKind
    names: Annotated[tuple[Name, ...], Field(max_length=MAX_NAMES)] = ()
    identifiers: Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=MAX_IDENTIFIERS)]


class Subject(_Frozen):
    kind: SubjectKind
    names: Annotated[tuple[Name, ...], Field(min_length=1, max_length=MAX_NAMES)]
    identifiers: Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=MAX_IDENTIFIERS)]
    related_parties: Annotated[tuple[RelatedParty, ...], Field(max_length=MAX_RELATED)] = ()


class LegalBasis(_Frozen):
    decision_no: Text | None = None
    issued_by: Text | None = None
    decided_on: date | None = None


class Delisting(_Frozen):
    reason: DelistingReason
    note: Text | None = None
    decision_no: Text | None = None
    decided_on: date | None = None


class ListEntryEvent(_Frozen):
    """One change to one list entry, as the publishing agency states it."""

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    event_type: EventType
    entry_id: Slug
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]
    list_kind: ListKind
    program: Slug
    subject: Subject
    basis: LegalBasis | None = None
    reason: Text | None = None
    listed_on: date
    effective_from: AwareDatetime
    effective_until: AwareDatetime | None = None
    publication_until: AwareDatetime | None = None
    delisting: Delisting | None = None

    @property
    def ends_entry(self) -> bool:
        return self.event_type in (EventType.DELISTED, EventType.EXPIRED, EventType.RETRACTED)


class Action(StrEnum):
    APPLY = "APPLY"
    LIFT = "LIFT"


class MeasureKind(StrEnum):
    PUNISH = "PUNISH"
    INCENT = "INCENT"


class Cause(StrEnum):
    """Why a directive was issued; lifts are counted by cause."""

    LISTED = "LISTED"
    AMENDED = "AMENDED"
    DELISTED = "DELISTED"
    EXPIRED = "EXPIRED"
    RETRACTED = "RETRACTED"
    PERIOD_ENDED = "PERIOD_ENDED"
    MOU_CHANGED = "MOU_CHANGED"


class TargetSubject(_Frozen):
    """The subject a directive is about, limited to the fields its MOU lets the agency see."""

    kind: SubjectKind
    role: str | None = None
    names: tuple[Name, ...] = ()
    identifiers: tuple[Identifier, ...]


class Disclosure(_Frozen):
    """One disclosable part of a list record (see :mod:`services.core.disclosure`)."""

    salt: bytes
    path: Annotated[str, StringConstraints(max_length=80)]
    value: Annotated[str, StringConstraints(max_length=64 * 1024)]


class ListingCommitments(_Frozen):
    """What a publisher signs of one list record: the routing facts, and digests of its parts."""

    event_id: str
    event_type: EventType
    entry_id: str
    version: int
    list_kind: ListKind
    program: str
    subject_kind: SubjectKind
    subject_names: int
    subject_identifiers: int
    listed_on: date
    effective_from: datetime
    effective_until: datetime | None = None
    publication_until: datetime | None = None
    digest_alg: str = "sha-256"
    digests: tuple[bytes, ...]

    @property
    def ends_entry(self) -> bool:
        return self.event_type in (EventType.DELISTED, EventType.EXPIRED, EventType.RETRACTED)


class SealedListing(_Frozen):
    """A list record on a list topic: the signed commitments and every disclosure."""

    commitments: bytes
    disclosures: tuple[Disclosure, ...]


class SourceRecord(_Frozen):
    """The publisher's signed list record, forwarded byte for byte: its signed commitments
    (``record``) with the seal that signs them, and the disclosures this receiver may see."""

    topic: str
    partition: int
    offset: int
    agency: str
    key_id: str
    signature: bytes
    record: bytes
    disclosures: tuple[Disclosure, ...] = ()
    # When the broker appended the record (LogAppendTime): its signature is judged at this time,
    # also when a directive forwards it again after its key was rotated out or has expired.
    appended_at: datetime | None = None


class Directive(_Frozen):
    directive_id: str
    action: Action
    subscriber: str
    measure_id: str
    measure_kind: MeasureKind
    mou_id: str
    mou_version: int
    origin_agency: str
    entry_id: str
    entry_version: int
    program: str
    subject_ref: str
    target: TargetSubject
    valid_from: datetime
    valid_until: datetime | None
    seq: int
    cause: Cause
    issued_at: datetime
    source: SourceRecord | None = None
    # The signed registry publication the fan-out routed by (None: it routed by files).
    registry_serial: int | None = None

    @property
    def key(self) -> str:
        return directive_key(self.origin_agency, self.entry_id, self.measure_id, self.subject_ref)


def directive_key(origin_agency: str, entry_id: str, measure_id: str, subject_ref: str) -> str:
    """The compaction key: one live directive per entry, measure and subject."""
    return f"{origin_agency}/{entry_id}|{measure_id}|{subject_ref}"


class ReceiptStatus(StrEnum):
    APPLIED = "APPLIED"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    MATCH_UNCERTAIN = "MATCH_UNCERTAIN"
    LIFTED = "LIFTED"
    REJECTED = "REJECTED"


class Receipt(_Frozen):
    directive_id: str
    agency: str
    status: ReceiptStatus
    reason: str | None = None
    directive_key: str | None = None
    seq: int | None = None
    recorded_at: datetime


class Header(_Frozen):
    key: str
    value: bytes


class QuarantineRecord(_Frozen):
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[Header, ...] = ()
    quarantined_by: str
    quarantined_at: datetime


class Heartbeat(_Frozen):
    """The fan-out's signed sign of life on one directive partition (see schemas/heartbeat)."""

    subscriber: str
    partition: int
    issued_by: str
    issued_at: datetime
    interval_ms: int


def heartbeat_key(partition: int) -> str:
    """The compaction key of a directive partition's heartbeat: only the latest is kept."""
    return f"heartbeat/{partition}"


class Notice(_Frozen):
    """What the exchange did about one listing, for its publishing agency (see schemas/notice)."""

    notice_id: str
    origin_agency: str
    entry_id: str
    entry_version: int
    action: Action
    cause: str
    subject_ref: str
    implementing_agency: str
    measure_id: str
    measure_kind: str
    measure_text: str
    legal_basis: str
    mou_id: str
    mou_version: int
    valid_from: datetime
    valid_until: datetime | None = None
    issued_at: datetime
