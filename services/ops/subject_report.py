"""``concord subject-report``: read the evidence, assemble, sign, render, verify.

The evidence is read as the audit reads it (:func:`services.topic_metadata.read_to_end`, from the
beginning, by a principal with READ on the list, directive and receipts topics) and every
record is verified as the exchange's services verify it: list records with
:func:`~services.core.intake.admit_list_record`, directives with
:func:`~services.core.intake.admit_directive` (both signatures and their routing against
the MOUs), receipts against the implementing agency's key.  What does not verify is counted,
never reported as fact.  The assembly itself is :mod:`services.core.subject_report`.

The signed document, as saved and as ``--verify`` reads it::

    {"report": {...},
     "signature": {"domain": "concord/v1/subject-report", "agency": "court", "key_id": "court-...",
                   "digest": "<hex SHA-256 of the signed bytes>", "signature": "<base64 Ed25519>"}}

The signature covers :func:`services.core.subject_report.signed_bytes` of ``report``.  A report
is verified at the time it states it was made, so a key rotated or revoked later does not void
the reports it signed while it was good; a report dated in the future is refused.

Nothing here logs: the report holds identifiers and goes only where the caller writes it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from services.core.codec import SchemaRegistry
from services.core.errors import ConfigError, SignatureInvalid
from services.core.models import Directive, ListEntryEvent, Receipt
from services.core.reasons import Reason
from services.core.signing import Domain, Keyring, SignedHeaders, Signer
from services.core.subject_report import Asked, Evidence, SubjectReport, assemble, signed_bytes
from services.core.world import World
from services.kafka_access import KafkaAccess
from services.keystore import load_signer
from services.ops.audit import latest_of, verified_directives, verified_list_events, verified_receipts

#: How far in the future a report's own time may lie before it is refused (clocks differ).
CLOCK_SKEW = timedelta(minutes=5)
MALFORMED = Reason.MALFORMED


@dataclass(frozen=True)
class Gathered:
    """Everything the report is assembled from, verified."""

    events: list[tuple[str, ListEntryEvent]]
    latest_directives: list[Directive]
    receipts: list[Receipt]
    evidence: Evidence


async def gather(
    *, access: KafkaAccess, world: World, namespace: str, keyring: Keyring, schemas: SchemaRegistry
) -> Gathered:
    """Every list record, the latest directive of every key and every receipt, each verified."""
    events, events_refused = await verified_list_events(access, world, namespace, keyring, schemas)
    directives, directives_refused = await verified_directives(access, world, namespace, keyring, schemas)
    receipts, receipts_refused = await verified_receipts(access, world, namespace, keyring, schemas)
    evidence = Evidence(
        list_records=len(events),
        list_records_refused=events_refused,
        directives=len(directives),
        directives_refused=directives_refused,
        receipts=len(receipts),
        receipts_refused=receipts_refused,
    )
    return Gathered(events, list(latest_of(directives).values()), receipts, evidence)


async def build_report(
    *,
    access: KafkaAccess,
    world: World,
    namespace: str,
    keyring: Keyring,
    schemas: SchemaRegistry,
    asked: Asked,
    now: datetime | None = None,
) -> SubjectReport:
    got = await gather(access=access, world=world, namespace=namespace, keyring=keyring, schemas=schemas)
    return assemble(
        asked=asked,
        events=got.events,
        latest_directives=got.latest_directives,
        receipts=got.receipts,
        world=world,
        now=now or datetime.now(UTC),
        evidence=got.evidence,
    )


# --- signing and verifying ---------------------------------------------------------------------------


def signer_for(world: World, keys_dir: Path, as_agency: str | None, report: SubjectReport | None = None) -> Signer:
    """The key of the agency producing a report: ``as_agency``, else the listing agency of the
    report's first listing."""
    agency = as_agency
    if agency is None:
        if report is None or not report.listings:
            raise ConfigError("no listing names this identifier: pass --as AGENCY to sign a report that says so")
        agency = report.listings[0].listing_agency.agency_id
    if agency not in world.agencies:
        raise ConfigError(f"unknown agency {agency!r}; known: {', '.join(sorted(world.agencies))}")
    return load_signer(keys_dir, agency)


def sign(report: SubjectReport, signer: Signer) -> dict[str, Any]:
    """The signed document of ``report``."""
    headers = signer.sign(Domain.SUBJECT_REPORT, signed_bytes(report))
    return {
        "report": report.model_dump(mode="json"),
        "signature": {
            "domain": Domain.SUBJECT_REPORT.value,
            "agency": headers.agency,
            "key_id": headers.key_id,
            "digest": headers.digest.hex(),
            "signature": base64.b64encode(headers.signature).decode(),
        },
    }


def _malformed(detail: str) -> SignatureInvalid:
    return SignatureInvalid(MALFORMED, f"not a signed subject report: {detail}")


def verify(doc: Any, keyring: Keyring, *, now: datetime | None = None) -> SignedHeaders:
    """The signature of a saved report if it holds, else SignatureInvalid with its reason
    (``TAMPERED``: the report was changed; ``FORGED``: not signed by the named key; a key reason;
    ``MALFORMED``: not a signed report at all)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("report"), Mapping):
        raise _malformed("expected an object with 'report' and 'signature'")
    report, sig = doc["report"], doc.get("signature")
    if not isinstance(sig, Mapping):
        raise _malformed("it carries no 'signature' object")
    fields = {k: sig.get(k) for k in ("domain", "agency", "key_id", "digest", "signature")}
    missing = [k for k, v in fields.items() if not isinstance(v, str)]
    if missing:
        raise _malformed(f"signature.{missing[0]} is missing or not a string")
    if fields["domain"] != Domain.SUBJECT_REPORT.value:
        raise _malformed(f"signature.domain is {fields['domain']!r}, not {Domain.SUBJECT_REPORT.value!r}")
    try:
        digest = bytes.fromhex(str(fields["digest"]))
        signature = base64.b64decode(str(fields["signature"]), validate=True)
    except (ValueError, binascii.Error):
        raise _malformed("signature.digest is not hex or signature.signature not base64") from None
    try:
        made = datetime.fromisoformat(str(report.get("generated_at")))
    except ValueError:
        raise _malformed("report.generated_at is not a time") from None
    if made.tzinfo is None:
        raise _malformed("report.generated_at has no time zone")
    if made > (now or datetime.now(UTC)) + CLOCK_SKEW:
        raise SignatureInvalid(Reason.NOT_YET_MADE, f"the report says it was made at {made.isoformat()}, in the future")
    headers = SignedHeaders(str(fields["agency"]), str(fields["key_id"]), digest, signature)
    return keyring.verify(Domain.SUBJECT_REPORT, signed_bytes(report), headers, expected_agency=None, at=made)


def read_document(path: Path) -> Any:
    """A saved report as JSON: ConfigError if the file cannot be read, SignatureInvalid (``MALFORMED``)
    if it is not JSON."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        return json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise _malformed("the file is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _malformed(f"line {exc.lineno}: not JSON: {exc.msg}") from None


def save(path: Path, text: str) -> None:
    """Write a report or its page, or ConfigError saying why not."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be written: {exc.strerror or exc}") from None


# --- the readable page -------------------------------------------------------------------------------

CAUSES = {
    "DELISTED": "the listing agency delisted the entry",
    "EXPIRED": "the listing agency declared the entry expired",
    "RETRACTED": "the listing agency retracted the entry",
    "PERIOD_ENDED": "the listing's period ended",
    "MOU_CHANGED": "the memorandum under which it applied changed or ended",
    "AMENDED": "an amended listing no longer calls for it",
}
DELISTING_REASONS = {
    "PERFORMED": "the obligations were performed",
    "SETTLEMENT": "a settlement was reached",
    "CREDITOR_REQUEST": "the creditor asked for it",
    "CREDIT_REPAIR": "credit repair was completed",
    "COURT_ORDER": "a court ordered it",
    "ERROR": "the listing was an error",
    "DECEASED": "the person has died",
    "DISSOLVED": "the organisation was dissolved",
    "OTHER": "another reason",
}
LISTING_STATUS = {
    "LISTED": "listed",
    "NOT_YET_EFFECTIVE": "listed, not yet effective",
    "PERIOD_ENDED": "ended: the listing's period is over",
    "DELISTED": "delisted",
    "EXPIRED": "expired",
    "RETRACTED": "retracted",
}


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value is not None else "no end date"


def _role(role: str) -> str:
    return "the listed subject" if role == "SUBJECT" else role.replace("_", " ").lower()


_ENV = Environment(
    loader=PackageLoader("services.ops", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters.update(when=_when, role=_role)
_ENV.globals.update(CAUSES=CAUSES, DELISTING_REASONS=DELISTING_REASONS, LISTING_STATUS=LISTING_STATUS)


def render_html(doc: Mapping[str, Any], world: World) -> str:
    """The readable page of a signed report (every value escaped)."""
    report = SubjectReport.model_validate(doc["report"])
    sig = doc["signature"]
    signer = world.agencies.get(sig["agency"])
    return _ENV.get_template("subject_report.html").render(
        r=report, sig=sig, signer_name=signer.name if signer else sig["agency"]
    )
