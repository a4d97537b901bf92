"""Builders for unit tests: list records in the adapter's JSON shape, fresh valid
identifiers, signed records, keyrings and the declared world of ``topics/``.

Every builder returns a new object, so a test may change what it gets without
affecting another test.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from services.core.codec import default_registry
from services.core.disclosure import seal_record
from services.core.identifiers import org_code_check_char, ric_check_char, uscc_check_char
from services.core.models import ListEntryEvent, SourceRecord
from services.core.signing import Domain, Keyring, PublicKey, SignedHeaders, Signer
from services.core.world import World, load_world

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPICS = REPO_ROOT / "topics"
SCHEMAS = REPO_ROOT / "schemas"

PROGRAM = "court.judgment-defaulters"
MARKET_PROGRAM = "market.food-safety-serious"
TAX_PROGRAM = "tax.a-grade-taxpayers"

# Published or hand-checked identifiers, both check characters correct.
KNOWN_USCC = "91110000600037341L"
KNOWN_RIC = "360426199101010071"
KNOWN_RIC_X = "11010519491231002X"

ENTRY_ID = "court-2026-000123"
EFFECTIVE_FROM = datetime(2026, 3, 10, tzinfo=UTC)
EFFECTIVE_UNTIL = datetime(2028, 3, 10, tzinfo=UTC)
# A moment inside the example entry's period and inside every demo MOU's validity.
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

KEY_VALID_FROM = datetime(2025, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- identifiers


def make_uscc(n: int, *, division: str = "110000", prefix: str = "91") -> str:
    """A valid CN_USCC whose embedded organisation code body is ``n`` in 8 digits."""
    body = f"{n % 10**8:08d}"
    first17 = prefix + division + body + org_code_check_char(body)
    return first17 + uscc_check_char(first17)


def make_ric(n: int, *, birth: date = date(1980, 1, 1), area: str = "110105") -> str:
    """A valid CN_RIC with sequence number ``n`` (0-999) and a real birth date."""
    first17 = f"{area}{birth:%Y%m%d}{n % 1000:03d}"
    return first17 + ric_check_char(first17)


# --------------------------------------------------------------------------- records


def legal_rep(ric: str = KNOWN_RIC, name: str = "Wei Example") -> dict[str, Any]:
    return {
        "role": "LEGAL_REPRESENTATIVE",
        "kind": "PERSON",
        "names": [{"value": name}],
        "identifiers": [{"scheme": "CN_RIC", "value": ric}],
    }


def organization(uscc: str = KNOWN_USCC, *, reps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "kind": "ORGANIZATION",
        "names": [{"value": "Example Trading Co., Ltd."}],
        "identifiers": [{"scheme": "CN_USCC", "value": uscc}],
        "related_parties": [legal_rep()] if reps is None else reps,
    }


def person(ric: str = KNOWN_RIC_X, name: str = "Li Example") -> dict[str, Any]:
    return {
        "kind": "PERSON",
        "names": [{"value": name}],
        "identifiers": [{"scheme": "CN_RIC", "value": ric}],
    }


_EXAMPLE: dict[str, Any] = {
    "event_id": f"court:{ENTRY_ID}:1",
    "event_type": "LISTED",
    "entry_id": ENTRY_ID,
    "version": 1,
    "list_kind": "SANCTION",
    "program": PROGRAM,
    "subject": organization(),
    "basis": {
        "decision_no": "(2026) Jing 01 Zhi 1234",
        "issued_by": "Beijing No.1 Intermediate People's Court",
        "decided_on": "2026-03-02",
    },
    "reason": "Failed to perform an effective judgment despite the ability to perform",
    "listed_on": "2026-03-10",
    "effective_from": "2026-03-10T00:00:00Z",
    "effective_until": "2028-03-10T00:00:00Z",
    "publication_until": "2028-03-10T00:00:00Z",
    "delisting": None,
}


def entry_dict(**overrides: Any) -> dict[str, Any]:
    """The DESIGN.md example record (a court listing a company and its legal
    representative), with top-level fields replaced by ``overrides``.

    ``event_id`` follows ``entry_id`` and ``version`` unless given explicitly.
    """
    raw = copy.deepcopy(_EXAMPLE)
    raw.update(copy.deepcopy(overrides))
    if "event_id" not in overrides:
        raw["event_id"] = f"court:{raw['entry_id']}:{raw['version']}"
    return raw


def incentive_dict(**overrides: Any) -> dict[str, Any]:
    """A tax authority's grade-A taxpayer listing of an organisation."""
    base: dict[str, Any] = {
        "entry_id": "tax-2026-000042",
        "list_kind": "INCENTIVE",
        "program": TAX_PROGRAM,
        "subject": organization(make_uscc(12345678), reps=[]),
        "basis": None,
        "reason": "Tax credit rating A for 2025",
    }
    base.update(overrides)
    raw = entry_dict(**base)
    if "event_id" not in overrides:
        raw["event_id"] = f"tax:{raw['entry_id']}:{raw['version']}"
    return raw


def delisting(reason: str = "PERFORMED") -> dict[str, Any]:
    return {"reason": reason, "note": None, "decision_no": "(2026) Jing 01 Zhi 1234-1", "decided_on": "2026-06-01"}


def entry(**overrides: Any) -> ListEntryEvent:
    return ListEntryEvent.model_validate(entry_dict(**overrides))


# --------------------------------------------------------------------------- signing


@dataclass(frozen=True)
class SignedRecord:
    record: bytes
    headers: SignedHeaders
    signer: Signer


def encode(model: Any) -> bytes:
    return default_registry().encode_model(model)


def signed_record(
    event: ListEntryEvent | None = None,
    *,
    signer: Signer | None = None,
    domain: Domain = Domain.LIST_RECORD,
) -> SignedRecord:
    """``event`` (default: the example listing) encoded and signed by ``signer``
    (default: a fresh key of the court)."""
    signer = signer or Signer.generate("court", "court-k1")
    record = encode(event if event is not None else entry())
    return SignedRecord(record, signer.sign(domain, record), signer)


def sealed(event: ListEntryEvent | None = None, *, signer: Signer | None = None) -> tuple[bytes, SignedHeaders]:
    """``event`` as a list topic carries it: sealed (commitments and disclosures), the commitments
    signed by ``signer`` (default: a fresh key of the court).  Returns the value and its headers."""
    s = seal_record(event if event is not None else entry(), default_registry())
    return s.value, (signer or Signer.generate("court", "court-k1")).sign(Domain.LIST_RECORD, s.commitments)


def source_record(
    event: ListEntryEvent,
    offset: int = 0,
    *,
    origin: str = "court",
    partition: int = 0,
    signature: bytes = b"\x01" * 64,
) -> SourceRecord:
    """The source a fan-out would forward for ``event`` (every disclosure; a placeholder seal)."""
    s = seal_record(event, default_registry())
    return SourceRecord(
        topic=f"concord.lists.{origin}",
        partition=partition,
        offset=offset,
        agency=origin,
        key_id=f"{origin}-k1",
        signature=signature,
        record=s.commitments,
        disclosures=s.disclosures,
    )


def public_key(
    signer: Signer,
    *,
    valid_from: datetime = KEY_VALID_FROM,
    valid_until: datetime | None = None,
    revoked_at: datetime | None = None,
) -> PublicKey:
    return PublicKey(
        agency=signer.agency,
        key_id=signer.key_id,
        public_key=signer.public_bytes(),
        valid_from=valid_from,
        valid_until=valid_until,
        revoked_at=revoked_at,
    )


def keyring(*signers: Signer, **window: Any) -> Keyring:
    """A keyring trusting each signer's public key, all with the same validity window."""
    return Keyring([public_key(s, **window) for s in signers])


# --------------------------------------------------------------------------- world


@lru_cache(maxsize=1)
def real_world() -> World:
    """The world declared in the repository's ``topics/`` folder (loaded once; it is frozen)."""
    return load_world(TOPICS)


def declared_quotas(world: World) -> dict[str, dict[str, float]]:
    """The quotas ``world`` declares, as the cluster holds them once applied."""
    return {u: {k: v for k, (v, _) in keys.items()} for u, keys in world.quotas.desired(world.agencies).items()}


def days(n: float) -> timedelta:
    return timedelta(days=n)
