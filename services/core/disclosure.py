"""Verifiable redaction: each agency receives only the parts of a listing its MOU allows,
and can still check every one of them against the publisher's signature.

In the manner of SD-JWT (RFC 9901): the publisher splits a record into the facts routing
needs in clear (entry, version, event type, program, list kind, the subject's kind, the
period) and *disclosable parts* — each name, each identifier, each related party and each
of its names and identifiers, the reason, the legal basis, the delisting.  Every part gets
a random salt; the publisher signs, once, :class:`~services.core.models.ListingCommitments`
holding the clear facts and the SHA-256 digest of every salted part (sorted, padded with
random decoys so that their number says little).  The parts travel beside the signed bytes
as :class:`~services.core.models.Disclosure` records.

The fan-out holds them all and forwards to an implementing agency only those its MOU's
``visible_fields`` names and those its directive's target needs.  The agency verifies the
publisher's signature over the commitments, then each disclosure against a digest there: a
part added, altered, moved to another path or taken from another record has no digest and is
refused as ``TAMPERED``.  A salt per part means that equal values in two records (the same
national ID) give unrelated digests, and that a digest cannot be matched by guessing values.

Paths name where a part sits::

    subject.names[i]  subject.identifiers[i]
    subject.related_parties[j]             {"role", "kind", "names": n, "identifiers": n}
    subject.related_parties[j].names[i]    subject.related_parties[j].identifiers[i]
    reason  basis  delisting

Counts (the subject's in the commitments, a party's in its own disclosure) let a receiver
tell that it was given all the identifiers of its target, not a chosen few.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.core.codec import SchemaRegistry
from services.core.errors import CodecError, UndecodableBody
from services.core.models import (
    Delisting,
    Disclosure,
    Identifier,
    LegalBasis,
    ListEntryEvent,
    ListingCommitments,
    Name,
    RelatedParty,
    SealedListing,
    Subject,
    SubjectKind,
)
from services.core.reasons import Reason

DOMAIN = b"concord/v1/disclosure"
SALT_LEN = 16
DECOY_BLOCK = 8  # digests are padded to a multiple of this

NAMES = "subject.names"
IDENTIFIERS = "subject.identifiers"
PARTIES = "subject.related_parties"

_PATH = re.compile(
    r"^(?:subject\.(?:names|identifiers)\[(\d{1,3})\]"
    r"|subject\.related_parties\[(\d{1,3})\](?:\.(names|identifiers)\[(\d{1,3})\])?"
    r"|reason|basis|delisting)$"
)


class DisclosureInvalid(Exception):
    """A disclosure that does not check out against the signed commitments (reason TAMPERED)."""

    reason = Reason.TAMPERED


def canonical(value: Any) -> str:
    """The one JSON text a part's value is hashed and sent as."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(salt: bytes, path: str, value: str) -> bytes:
    def lp(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    return hashlib.sha256(lp(DOMAIN) + lp(salt) + lp(path.encode()) + lp(value.encode())).digest()


def disclosure_digest(d: Disclosure) -> bytes:
    return digest(d.salt, d.path, d.value)


def parts(ev: ListEntryEvent) -> list[tuple[str, Any]]:
    """Every disclosable part of ``ev``, with its path, in record order."""
    out: list[tuple[str, Any]] = []
    s = ev.subject
    out += [(f"{NAMES}[{i}]", n.model_dump(mode="json")) for i, n in enumerate(s.names)]
    out += [(f"{IDENTIFIERS}[{i}]", x.model_dump(mode="json")) for i, x in enumerate(s.identifiers)]
    for j, p in enumerate(s.related_parties):
        base = f"{PARTIES}[{j}]"
        out.append(
            (base, {"role": p.role, "kind": p.kind.value, "names": len(p.names), "identifiers": len(p.identifiers)})
        )
        out += [(f"{base}.names[{i}]", n.model_dump(mode="json")) for i, n in enumerate(p.names)]
        out += [(f"{base}.identifiers[{i}]", x.model_dump(mode="json")) for i, x in enumerate(p.identifiers)]
    if ev.reason is not None:
        out.append(("reason", ev.reason))
    if ev.basis is not None:
        out.append(("basis", ev.basis.model_dump(mode="json")))
    if ev.delisting is not None:
        out.append(("delisting", ev.delisting.model_dump(mode="json")))
    return out


def seal(
    ev: ListEntryEvent, *, salt: Callable[[int], bytes] = secrets.token_bytes
) -> tuple[ListingCommitments, tuple[Disclosure, ...]]:
    """The commitments a publisher signs for ``ev``, and the disclosures that go with them."""
    disclosures = tuple(Disclosure(salt=salt(SALT_LEN), path=path, value=canonical(value)) for path, value in parts(ev))
    digests = [disclosure_digest(d) for d in disclosures]
    while len(digests) % DECOY_BLOCK:
        digests.append(hashlib.sha256(salt(32)).digest())
    commitments = ListingCommitments(
        event_id=ev.event_id,
        event_type=ev.event_type,
        entry_id=ev.entry_id,
        version=ev.version,
        list_kind=ev.list_kind,
        program=ev.program,
        subject_kind=ev.subject.kind,
        subject_names=len(ev.subject.names),
        subject_identifiers=len(ev.subject.identifiers),
        listed_on=ev.listed_on,
        effective_from=ev.effective_from,
        effective_until=ev.effective_until,
        publication_until=ev.publication_until,
        digests=tuple(sorted(digests)),
    )
    return commitments, disclosures


def check(commitments: ListingCommitments, disclosures: Iterable[Disclosure]) -> dict[str, Any]:
    """Every disclosure against the commitments: its path well formed and unique, its digest
    committed to, its value readable.  Returns the parts by path; raises DisclosureInvalid."""
    committed = frozenset(commitments.digests)
    out: dict[str, Any] = {}
    for d in disclosures:
        if not _PATH.match(d.path):
            raise DisclosureInvalid(f"a disclosure at an unknown path {d.path[:60]!r}")
        if d.path in out:
            raise DisclosureInvalid(f"two disclosures for {d.path}")
        if len(d.salt) != SALT_LEN:
            raise DisclosureInvalid(f"the disclosure for {d.path} has a {len(d.salt)}-byte salt")
        if disclosure_digest(d) not in committed:
            raise DisclosureInvalid(f"the disclosure for {d.path} is not one the publisher signed")
        try:
            out[d.path] = json.loads(d.value)
        except ValueError:
            raise DisclosureInvalid(f"the disclosure for {d.path} is not JSON") from None
    return out


@dataclass(frozen=True)
class Revealed:
    """What the disclosures of one record say, beside its commitments."""

    commitments: ListingCommitments
    parts: Mapping[str, Any]

    def _list(self, prefix: str, count: int | None) -> list[Any]:
        items: list[Any] = []
        i = 0
        while (f"{prefix}[{i}]") in self.parts:
            items.append(self.parts[f"{prefix}[{i}]"])
            i += 1
        if count is not None and i != count and i:
            raise DisclosureInvalid(f"{len(items)} of the {count} parts of {prefix} were disclosed")
        return items

    def complete(self) -> bool:
        c = self.commitments
        return (
            len(self._list(NAMES, None)) == c.subject_names
            and len(self._list(IDENTIFIERS, None)) == c.subject_identifiers
        )

    def subject(self) -> Subject:
        """The subject as far as it was disclosed: a list is either whole or absent.

        Built without validation (a partial subject may lack names or identifiers), from parts
        already checked against the signed commitments.
        """
        try:
            return self._subject()
        except (KeyError, TypeError, ValueError) as exc:  # a signed part of the wrong shape
            raise DisclosureInvalid(f"a disclosed part of the subject is malformed: {exc}") from None

    def _subject(self) -> Subject:
        c = self.commitments
        names = tuple(Name.model_validate(n) for n in self._list(NAMES, c.subject_names))
        ids = tuple(Identifier.model_validate(x) for x in self._list(IDENTIFIERS, c.subject_identifiers))
        parties = []
        # Parties are disclosed one by one: an agency may hold the second without the first.
        disclosed = sorted({int(m.group(2)) for p in self.parts if (m := _PATH.match(p)) and m.group(2) is not None})
        for j in disclosed:
            base = f"{PARTIES}[{j}]"
            if base not in self.parts:
                raise DisclosureInvalid(f"parts of related party {j} were disclosed without the party itself")
            head = self.parts[base]
            p_names = tuple(Name.model_validate(n) for n in self._list(f"{base}.names", int(head["names"])))
            p_ids = tuple(
                Identifier.model_validate(x) for x in self._list(f"{base}.identifiers", int(head["identifiers"]))
            )
            if len(p_ids) != int(head["identifiers"]):
                raise DisclosureInvalid(f"the identifiers of related party {j} were not all disclosed")
            parties.append(
                RelatedParty.model_construct(
                    role=str(head["role"]), kind=SubjectKind(head["kind"]), names=p_names, identifiers=p_ids
                )
            )
        return Subject.model_construct(
            kind=c.subject_kind, names=names, identifiers=ids, related_parties=tuple(parties)
        )

    def event(self) -> ListEntryEvent:
        """The event as far as it was disclosed (not validated: parts may be absent)."""
        c = self.commitments
        basis = self.parts.get("basis")
        delist = self.parts.get("delisting")
        return ListEntryEvent.model_construct(
            event_id=c.event_id,
            event_type=c.event_type,
            entry_id=c.entry_id,
            version=c.version,
            list_kind=c.list_kind,
            program=c.program,
            subject=self.subject(),
            basis=LegalBasis.model_validate(basis) if basis is not None else None,
            reason=self.parts.get("reason"),
            listed_on=c.listed_on,
            effective_from=c.effective_from,
            effective_until=c.effective_until,
            publication_until=c.publication_until,
            delisting=Delisting.model_validate(delist) if delist is not None else None,
        )

    def full_event(self) -> ListEntryEvent:
        """The whole event, validated once: what the fan-out and the audit, holding every part, route."""
        c = self.commitments
        parts = self.parts
        parties = []
        for j in sorted({int(m.group(2)) for p in parts if (m := _PATH.match(p)) and m.group(2) is not None}):
            base = f"{PARTIES}[{j}]"
            head = parts.get(base)
            if not isinstance(head, dict):
                raise DisclosureInvalid(f"parts of related party {j} were disclosed without the party itself")
            parties.append(
                {
                    "role": head.get("role"),
                    "kind": head.get("kind"),
                    "names": self._list(f"{base}.names", head.get("names")),
                    "identifiers": self._list(f"{base}.identifiers", head.get("identifiers")),
                }
            )
        return ListEntryEvent.model_validate(
            {
                "event_id": c.event_id,
                "event_type": c.event_type,
                "entry_id": c.entry_id,
                "version": c.version,
                "list_kind": c.list_kind,
                "program": c.program,
                "subject": {
                    "kind": c.subject_kind,
                    "names": self._list(NAMES, c.subject_names),
                    "identifiers": self._list(IDENTIFIERS, c.subject_identifiers),
                    "related_parties": parties,
                },
                "basis": parts.get("basis"),
                "reason": parts.get("reason"),
                "listed_on": c.listed_on,
                "effective_from": c.effective_from,
                "effective_until": c.effective_until,
                "publication_until": c.publication_until,
                "delisting": parts.get("delisting"),
            }
        )


def reveal(commitments: ListingCommitments, disclosures: Iterable[Disclosure]) -> Revealed:
    return Revealed(commitments, check(commitments, disclosures))


def for_target(
    disclosures: Sequence[Disclosure],
    subject_ref: str,
    role_identifier: tuple[str, str] | None,
    visible: Iterable[str] | None,
) -> tuple[Disclosure, ...]:
    """The disclosures an agency receives with one directive: what its MOU's ``visible_fields``
    name (``None``: everything) and what its directive's target needs to be checked.

    ``subject_ref`` is the directive's (``SUBJECT`` or ``ROLE:SCHEME:VALUE``); ``role_identifier``
    is, for a related party, its role and first identifier's value, which find the party.
    """
    show = (
        set(visible)
        if visible is not None
        else {"names", "identifiers", "related_parties", "reason", "basis", "delisting"}
    )
    by_path = {d.path: d for d in disclosures}
    keep: set[str] = set()
    if subject_ref == "SUBJECT" or "identifiers" in show:
        keep |= {p for p in by_path if p.startswith(f"{IDENTIFIERS}[")}
    if "names" in show:
        keep |= {p for p in by_path if p.startswith(f"{NAMES}[")}
    party_index: set[int] = set()
    if "related_parties" in show:
        party_index |= {int(m.group(2)) for p in by_path if (m := _PATH.match(p)) and m.group(2) is not None}
    if role_identifier is not None:
        role, ident = role_identifier
        for p, d in by_path.items():
            m = _PATH.match(p)
            if m and m.group(2) is not None and m.group(3) == "identifiers" and m.group(4) == "0":
                j = int(m.group(2))
                head = by_path.get(f"{PARTIES}[{j}]")
                if head is None:
                    continue
                if json.loads(head.value)["role"] == role and json.loads(d.value)["value"] == ident:
                    party_index.add(j)
    for j in party_index:
        base = f"{PARTIES}[{j}]"
        keep |= {p for p in by_path if p == base or p.startswith(f"{base}.identifiers[")}
        if "names" in show:
            keep |= {p for p in by_path if p.startswith(f"{base}.names[")}
    keep |= {f for f in ("reason", "basis", "delisting") if f in show and f in by_path}
    return tuple(d for d in disclosures if d.path in keep)  # in the publisher's order


def content_digest(commitments: ListingCommitments, disclosures: Iterable[Disclosure]) -> bytes:
    """What a record says, whatever salts sealed it: two seals of one event give the same digest
    (a re-sent listing is the same listing), a changed part a different one."""
    c = commitments
    h = hashlib.sha256(DOMAIN + b"/content")
    facts = (
        c.event_id,
        c.event_type.value,
        c.entry_id,
        c.version,
        c.list_kind.value,
        c.program,
        c.subject_kind.value,
        c.subject_names,
        c.subject_identifiers,
        c.listed_on.isoformat(),
        c.effective_from.isoformat(),
        c.effective_until.isoformat() if c.effective_until else None,
        c.publication_until.isoformat() if c.publication_until else None,
        c.digest_alg,
    )
    h.update(repr(facts).encode())
    for path, value in sorted((d.path, d.value) for d in disclosures):
        h.update(struct.pack(">II", len(path), len(value)) + path.encode() + value.encode())
    return h.digest()


@dataclass(frozen=True)
class Sealed:
    """A list record as the publisher sends it: ``value`` on the topic, ``commitments`` signed."""

    value: bytes
    commitments: bytes
    disclosures: tuple[Disclosure, ...]


def seal_record(
    ev: ListEntryEvent, schemas: SchemaRegistry, *, salt: Callable[[int], bytes] = secrets.token_bytes
) -> Sealed:
    """Seal ``ev`` and encode it for a list topic; the signature goes over ``commitments``."""
    commitments, disclosures = seal(ev, salt=salt)
    signed = schemas.encode_model(commitments)
    value = schemas.encode_model(SealedListing(commitments=signed, disclosures=disclosures))
    return Sealed(value, signed, disclosures)


def unwrap(value: bytes, schemas: SchemaRegistry) -> SealedListing:
    """A list topic's record, before anything in it is trusted: its signed bytes and disclosures.

    Raises CodecError for anything else (a record that is not sealed is ``UNSEALED``)."""
    if schemas.kind_of(value) == "list_entry_event":
        raise Unsealed("a list record must be sealed (commitments and disclosures): publish it with concord publish")
    return schemas.decode_model(value, SealedListing)


class Unsealed(UndecodableBody):
    reason = Reason.UNSEALED


__all__ = [
    "CodecError",
    "DisclosureInvalid",
    "Revealed",
    "Sealed",
    "Unsealed",
    "check",
    "content_digest",
    "for_target",
    "reveal",
    "seal",
    "seal_record",
    "unwrap",
]
