"""Why a record is refused: every reason code Concord writes to quarantine, receipts and metrics.

One enum holds them all, so a shell that counts refusals by reason can create every series
up front (an alert on a reason exists before that reason first happens) and no code is
known to one component but not another.  The groups below name the subsets a component
refuses for; each member is still the one :class:`Reason`.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A refusal's reason code; its value is what quarantine records and metrics carry."""

    # The signature (services.core.signing).
    UNSIGNED = "UNSIGNED"  # the record carries no signature
    TAMPERED = "TAMPERED"  # bytes (or a disclosure) that do not match what was signed
    FORGED = "FORGED"  # a signature not made by the key it names
    UNKNOWN_KEY = "UNKNOWN_KEY"  # a key the registry does not hold
    WRONG_AGENCY = "WRONG_AGENCY"  # a key of another agency than the one expected
    KEY_NOT_YET_VALID = "KEY_NOT_YET_VALID"  # a key not yet valid at the record's broker time
    KEY_EXPIRED = "KEY_EXPIRED"  # a key expired at the record's broker time
    KEY_REVOKED = "KEY_REVOKED"  # a key revoked at the record's broker time
    # The wire format (services.core.codec).
    NOT_SINGLE_OBJECT = "NOT_SINGLE_OBJECT"  # not an Avro single-object record
    UNKNOWN_FINGERPRINT = "UNKNOWN_FINGERPRINT"  # written with a schema Concord does not know
    UNDECODABLE = "UNDECODABLE"  # a body that does not decode with its schema (or no body)
    # The record read (services.core.intake, services.core.heartbeat).
    INVALID_RECORD = "INVALID_RECORD"  # decodes, but fails validation
    KEY_MISMATCH = "KEY_MISMATCH"  # a record key that is not its entry id
    MISSING_KEY = "MISSING_KEY"  # a record published without its key
    WRONG_SUBSCRIBER = "WRONG_SUBSCRIBER"  # a directive or heartbeat for another agency
    WRONG_PARTITION = "WRONG_PARTITION"  # read from another partition than the one it names
    INVALID_TIMESTAMP = "INVALID_TIMESTAMP"  # a timestamp that is not a representable time
    UNTRUSTED_TIMESTAMP = "UNTRUSTED_TIMESTAMP"  # stamped by its producer (CreateTime), not the broker
    UNSEALED = "UNSEALED"  # a list record without commitments and disclosures
    REGISTRY_BEHIND = "REGISTRY_BEHIND"  # routed by a newer registry publication than the reader holds
    UNKNOWN_TOPIC = "UNKNOWN_TOPIC"  # the topic to read is missing or not readable
    # The fan-out's order of versions (services.core.routing).
    STALE_VERSION = "STALE_VERSION"  # an older version than the one held
    REPLAYED = "REPLAYED"  # an event id seen before, with other content
    # A directive that does not follow from its record (services.core.verification).
    NOT_ROUTED = "NOT_ROUTED"  # an APPLY no MOU in force calls for, or whose record ends the entry
    TARGET_MISMATCH = "TARGET_MISMATCH"  # not the subject (kind, role, identifiers, names) the record names
    MEASURE_MISMATCH = "MEASURE_MISMATCH"  # another implementing agency or measure kind than the MOU's
    MOU_MISMATCH = "MOU_MISMATCH"  # another MOU version than the one in force
    WINDOW_MISMATCH = "WINDOW_MISMATCH"  # validity not the record's period capped by the MOU's
    UNJUSTIFIED_LIFT = "UNJUSTIFIED_LIFT"  # a LIFT of what the record and the MOUs still call for
    SOURCE_MISMATCH = "SOURCE_MISMATCH"  # another entry, version, program or publisher than its record
    VERSION_REGRESSION = "VERSION_REGRESSION"  # an older entry version than the one held for the key
    # A saved subject report (services.ops.subject_report).
    MALFORMED = "MALFORMED"  # not a signed subject report at all
    NOT_YET_MADE = "NOT_YET_MADE"  # made at a time still in the future


SIGNATURE_REASONS: tuple[Reason, ...] = (
    Reason.UNSIGNED,
    Reason.TAMPERED,
    Reason.FORGED,
    Reason.UNKNOWN_KEY,
    Reason.WRONG_AGENCY,
    Reason.KEY_NOT_YET_VALID,
    Reason.KEY_EXPIRED,
    Reason.KEY_REVOKED,
)
"""The reasons a signature check gives; dashboards group refusals by them."""

REPORT_REASONS: tuple[Reason, ...] = (Reason.MALFORMED, Reason.NOT_YET_MADE)
"""The reasons a saved subject report is refused for; no record is ever refused for them."""

RECORD_REASONS: tuple[Reason, ...] = tuple(r for r in Reason if r not in REPORT_REASONS)
"""Every reason a record read from a stream can be refused for: each has its metric series."""
