"""Check digits and structure of the identifiers Concord matches subjects on.

Agencies join list entries to their own records by identifier, so a mistyped
code does not fail loudly downstream: it silently matches nobody, or the wrong
body.  These validators catch that at the boundary and say what is wrong in
words a data clerk can act on.

Every ``validate_*`` function returns ``None`` for a valid value and a short
reason otherwise; none of them raises for any string input, so callers can
collect reasons into a :class:`~services.core.errors.FieldProblem` list
instead of handling exceptions.  The ``*_check_char`` helpers do raise
:class:`ValueError` on malformed input, because they are building blocks for
code that constructs identifiers and must not guess.

Schemes with a published structure:

``CN_USCC``
    Unified Social Credit Code of legal persons and other organisations,
    GB 32100-2015 (with its Amendment No. 1), embedding a GB 11714-1997
    organisation code.
``CN_RIC``
    Citizen identity number on the Resident Identity Card, GB 11643-1999.

Any other scheme is opaque: the broker does not know its rules, so it only
refuses values that cannot be a sensible key at all.

This module is pure: no I/O, no clock reads except ``date.today()`` when the
caller of :func:`validate_ric` leaves ``today`` unset.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Final

__all__ = [
    "CN_RIC",
    "CN_USCC",
    "GB2260_PROVINCE_CODES",
    "OPAQUE_MAX_LENGTH",
    "RIC_PROVINCE_CODES",
    "SCHEME_PATTERN",
    "USCC_ALPHABET",
    "USCC_DIVISION_PREFIXES",
    "USCC_ENTITY_TYPES",
    "normalize_identifier",
    "org_code_check_char",
    "query_identifier",
    "ric_check_char",
    "uscc_check_char",
    "validate_identifier",
    "validate_ric",
    "validate_uscc",
]

CN_USCC: Final = "CN_USCC"
CN_RIC: Final = "CN_RIC"

# Matches the ``max_length`` of ``Identifier.value`` in services.core.models, so a
# value that passes here also fits the record schema.
OPAQUE_MAX_LENGTH: Final = 64

# --------------------------------------------------------------------------- USCC

# GB 32100-2015: digits and upper-case Latin letters without I, O, Z, S, V,
# which are easily confused with look-alike characters.  A character's value
# for the check computation is its index in this string.
USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE: Final = {ch: i for i, ch in enumerate(USCC_ALPHABET)}

# ISO 7064 MOD 31-3 as used by GB 32100-2015: weight of position i (1-based) is
# 3**(i-1) mod 31.  3 is a primitive root modulo 31, so every weight is a unit.
_USCC_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# Registration-authority code (position 1) -> organisation-type codes (position 2)
# allowed under it.  First the table of GB 32100-2015 Annex A as amended by
# Amendment No. 1 (which added A and N):
_USCC_TYPES_PUBLISHED: Final[dict[str, frozenset[str]]] = {
    "1": frozenset("1239"),  # establishment offices: organs, public institutions, mass orgs
    "2": frozenset("19"),  # foreign affairs: resident foreign news agencies
    "3": frozenset("123459"),  # justice: law firms, notaries, legal aid, forensics, arbitration
    "4": frozenset("19"),  # culture: foreign cultural centres
    "5": frozenset("1239"),  # civil affairs: associations, private non-enterprises, foundations
    "6": frozenset("129"),  # tourism: foreign / HK-Macao-Taiwan tourism offices
    "7": frozenset("129"),  # religion: venues, colleges
    "8": frozenset("19"),  # trade unions: grassroots unions
    "9": frozenset("123"),  # market regulation: enterprises, sole traders, farmer co-ops
    "A": frozenset("19"),  # Central Military Commission reform & establishment office
    "N": frozenset("1239"),  # agriculture: group / village / township collective economic orgs
    "Y": frozenset("1"),  # other authorities: not subdivided, always 1
}
# ...then combinations reported as allocated by the code-issuing authorities
# after publication (commercial mediation 36, village/residents' committees
# 54/55, non-legal-person unions 82, market regulation other 99, public
# security G for overseas NGO representative offices, housing J for owners'
# assemblies, overseas-Chinese federations Q).  Refusing a real, issued code
# would block a legitimate record, which costs more than accepting a
# combination that both check characters still guard.
_USCC_TYPES_LATER: Final[dict[str, frozenset[str]]] = {
    "3": frozenset("6"),
    "5": frozenset("45"),
    "8": frozenset("2"),
    "9": frozenset("9"),
    "G": frozenset("19"),
    "J": frozenset("19"),
    "Q": frozenset("1239"),
}
USCC_ENTITY_TYPES: Final[dict[str, frozenset[str]]] = {
    authority: _USCC_TYPES_PUBLISHED.get(authority, frozenset()) | _USCC_TYPES_LATER.get(authority, frozenset())
    for authority in sorted({*_USCC_TYPES_PUBLISHED, *_USCC_TYPES_LATER})
}

# GB 11714-1997 organisation code: eight body characters (digits, upper-case
# letters valued A=10 ... Z=35) and one check character.
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_BODY_CHARS: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# First two digits of a GB/T 2260 administrative-division code (province level).
GB2260_PROVINCE_CODES: Final = frozenset(
    {
        *("11", "12", "13", "14", "15"),  # Beijing, Tianjin, Hebei, Shanxi, Inner Mongolia
        *("21", "22", "23"),  # Liaoning, Jilin, Heilongjiang
        *("31", "32", "33", "34", "35", "36", "37"),  # Shanghai ... Shandong
        *("41", "42", "43", "44", "45", "46"),  # Henan ... Hainan
        *("50", "51", "52", "53", "54"),  # Chongqing, Sichuan, Guizhou, Yunnan, Tibet
        *("61", "62", "63", "64", "65"),  # Shaanxi, Gansu, Qinghai, Ningxia, Xinjiang
        *("71", "81", "82"),  # Taiwan, Hong Kong, Macao
    }
)
# Identity numbers: the GB/T 2260 provinces, plus 83, which the residence
# permits for Taiwan residents carry in the same 18-character format (81 and 82
# serve the Hong Kong and Macao permits).
RIC_PROVINCE_CODES: Final = GB2260_PROVINCE_CODES | {"83"}
# USCCs: the GB/T 2260 provinces, plus 10 (division 100000, the whole country)
# used by national-level registrars.
USCC_DIVISION_PREFIXES: Final = GB2260_PROVINCE_CODES | {"10"}

_DIGITS: Final = frozenset("0123456789")


def _char_problem(ch: str, position: int, allowed: str) -> str:
    # repr() keeps control and invisible characters visible in the message.
    if ch.isascii() and ch.islower() and ch.upper() in allowed:
        return f"character {ch!r} at position {position} is lowercase; letters must be uppercase"
    return f"character {ch!r} at position {position} is not allowed"


def org_code_check_char(first8: str) -> str:
    """GB 11714-1997 check character for an eight-character organisation code body.

    The result is ``'0'``-``'9'`` or ``'X'``.  Used both to validate the
    organisation code embedded in a USCC and to build test data.

    Raises:
        ValueError: ``first8`` is not eight characters of ``0-9A-Z``.
    """
    if len(first8) != 8 or not set(first8) <= _ORG_BODY_CHARS:
        raise ValueError(f"organisation code body must be 8 characters of 0-9A-Z, got {first8!r}")
    total = sum(int(ch, 36) * w for ch, w in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 10:
        return "X"
    if check == 11:
        return "0"
    return str(check)


def uscc_check_char(first17: str) -> str:
    """GB 32100-2015 check character (position 18) for the first 17 characters.

    Raises:
        ValueError: ``first17`` is not 17 characters of :data:`USCC_ALPHABET`.
    """
    if len(first17) != 17 or not set(first17) <= _USCC_VALUE.keys():
        raise ValueError(f"USCC body must be 17 characters of {USCC_ALPHABET}, got {first17!r}")
    total = sum(_USCC_VALUE[ch] * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def validate_uscc(value: object) -> str | None:
    """Check a Unified Social Credit Code (GB 32100-2015).

    Checks, in order, so the first reason is the most basic one: length,
    alphabet (lower case is refused rather than folded, because the stored form
    must be canonical; use :func:`normalize_identifier` first), registration
    authority and organisation type, administrative division, the embedded
    GB 11714 organisation-code check character, and the overall MOD 31 check
    character.

    Returns:
        ``None`` if valid, else a one-line reason.
    """
    if not isinstance(value, str):
        return "must be a string"
    if len(value) != 18:
        return f"must be 18 characters, got {len(value)}"
    for position, ch in enumerate(value, start=1):
        if ch not in _USCC_VALUE:
            return _char_problem(ch, position, USCC_ALPHABET)

    authority, entity_type = value[0], value[1]
    if authority not in USCC_ENTITY_TYPES:
        return f"registration authority code {authority!r} at position 1 is not assigned"
    if entity_type not in USCC_ENTITY_TYPES[authority]:
        return (
            f"organisation type code {entity_type!r} at position 2 is not assigned "
            f"under registration authority {authority!r}"
        )

    division = value[2:8]
    if not set(division) <= _DIGITS:
        return f"administrative division code at positions 3-8 must be 6 digits, got {division!r}"
    if division[:2] not in USCC_DIVISION_PREFIXES:
        return f"administrative division code {division!r} does not start with a province code"

    org_body, org_check = value[8:16], value[16]
    expected_org = org_code_check_char(org_body)
    if org_check != expected_org:
        return f"embedded organisation code check character (position 17) should be {expected_org!r}, not {org_check!r}"

    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        return f"check character should be {expected!r}, not {value[17]!r}"
    return None


# --------------------------------------------------------------------------- RIC

# ISO 7064 MOD 11-2: weight of position i (1-based) is 2**(18-i) mod 11.
_RIC_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RIC_CHECK: Final = "10X98765432"
_RIC_MIN_YEAR: Final = 1900


def ric_check_char(first17: str) -> str:
    """GB 11643-1999 check character (``'0'``-``'9'`` or ``'X'``) for 17 digits.

    Raises:
        ValueError: ``first17`` is not 17 ASCII digits.
    """
    if len(first17) != 17 or not set(first17) <= _DIGITS:
        raise ValueError(f"identity number body must be 17 digits, got {first17!r}")
    total = sum(int(ch) * w for ch, w in zip(first17, _RIC_WEIGHTS, strict=True))
    return _RIC_CHECK[total % 11]


def validate_ric(value: object, *, today: date | None = None) -> str | None:
    """Check a citizen identity number (GB 11643-1999), 18-character form.

    Beyond the MOD 11-2 check character this refuses numbers whose address
    code has no province prefix or whose birth date is not a real day between
    1900-01-01 and ``today``: such numbers pass the checksum one time in eleven
    by chance, and a made-up number is exactly what a matching system must
    not accept.  ``today`` defaults to the local date; pass it explicitly for
    reproducible results.

    The 15-digit numbers issued before 1999 are refused: they were replaced by
    law and carry no check character, so they cannot be verified.

    Returns:
        ``None`` if valid, else a one-line reason.
    """
    if not isinstance(value, str):
        return "must be a string"
    if len(value) != 18:
        return f"must be 18 characters, got {len(value)}"
    for position, ch in enumerate(value[:17], start=1):
        if ch not in _DIGITS:
            return f"character {ch!r} at position {position} must be a digit"
    last = value[17]
    if last == "x":
        return "check character 'x' at position 18 must be uppercase 'X'"
    if last not in _DIGITS and last != "X":
        return f"character {last!r} at position 18 must be a digit or 'X'"

    province = value[:2]
    if province not in RIC_PROVINCE_CODES:
        return f"address code {value[:6]!r} does not start with a province code"

    raw_birth = value[6:14]
    year, month, day = int(raw_birth[:4]), int(raw_birth[4:6]), int(raw_birth[6:8])
    try:
        birth = date(year, month, day)
    except ValueError:
        return f"birth date {raw_birth!r} at positions 7-14 is not a calendar date"
    if year < _RIC_MIN_YEAR:
        return f"birth year {year} is before {_RIC_MIN_YEAR}"
    if birth > (today if today is not None else date.today()):  # noqa: DTZ011 - a birth date is a local calendar date
        return f"birth date {birth.isoformat()} is in the future"

    expected = ric_check_char(value[:17])
    if last != expected:
        return f"check character should be {expected!r}, not {last!r}"
    return None


# --------------------------------------------------------------------------- dispatch


def _validate_opaque(value: object) -> str | None:
    """Minimal rules for schemes the broker does not know the structure of."""
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "must not be empty or blank"
    if len(value) > OPAQUE_MAX_LENGTH:
        return f"must be at most {OPAQUE_MAX_LENGTH} characters, got {len(value)}"
    for position, ch in enumerate(value, start=1):
        category = unicodedata.category(ch)
        if category == "Cc":
            return f"control character {ch!r} at position {position} is not allowed"
        if category == "Cs":
            # A lone surrogate cannot be encoded as UTF-8, so the record could
            # never be serialised.
            return f"unpaired surrogate {ch!r} at position {position} is not allowed"
    return None


def validate_identifier(scheme: str, value: str) -> str | None:
    """Validate ``value`` under ``scheme``; ``None`` if valid, else a reason.

    ``CN_USCC`` and ``CN_RIC`` get their full structural checks; every other
    scheme is opaque (non-blank, at most 64 characters, no control characters).
    The value is checked as given: call :func:`normalize_identifier` first if
    the input may carry surrounding spaces or lower case.
    """
    if scheme == CN_USCC:
        return validate_uscc(value)
    if scheme == CN_RIC:
        return validate_ric(value)
    return _validate_opaque(value)


def normalize_identifier(scheme: str, value: str) -> str:
    """Canonical form of ``value`` for storage and lookups.

    Unicode compatibility forms are folded (NFKC: full-width digits and letters,
    as East Asian input methods type them, become ASCII), and surrounding
    whitespace is never significant.  For ``CN_USCC`` and ``CN_RIC`` all
    whitespace goes and letters are folded to upper case, because both standards
    define upper case only, without spaces, and clerks often type ``x`` for the
    RIC check character or group the digits.  Other schemes may be
    case-sensitive, so they are only folded and stripped.  The result is not
    validated.
    """
    if value.isascii():
        return "".join(value.split()).upper() if scheme in (CN_USCC, CN_RIC) else value.strip()
    folded = unicodedata.normalize("NFKC", value)
    if scheme not in (CN_USCC, CN_RIC):
        return folded.strip()
    # Upper-casing can leave a form NFKC composes again (ǰ -> J + combining caron), and the
    # composed form may upper-case once more: fold until nothing changes, so that a normalised
    # value normalises to itself.
    for _ in range(4):
        again = unicodedata.normalize("NFKC", "".join(folded.split()).upper())
        if again == folded:
            break
        folded = again
    return folded


SCHEME_PATTERN: Final = "^[A-Z][A-Z0-9_]{1,31}$"
_CHECKED_SHAPE_LEN: Final = 18


def query_identifier(value: str, scheme: str | None) -> tuple[str, str | None]:
    """An identifier someone asks about, as it is looked up: ``(normalised, problem)``.

    ``problem`` is None when the value may be looked up, else why not (the caller
    answers 422, never "clear": a mistyped number is not a person without measures).
    With a scheme, the value is normalised and validated under it.  Without one, a
    value that normalises to 18 letters and digits has the shape of both checked
    schemes and must pass the checks of one of them; any other value is validated
    as opaque.
    """
    if scheme is not None:
        if not re.fullmatch(SCHEME_PATTERN, scheme):
            return value, f"scheme {scheme!r} is not a scheme name (upper-case letters, digits, _)"
        normal = normalize_identifier(scheme, value)
        return normal, validate_identifier(scheme, normal)
    compact = normalize_identifier(CN_RIC, value)
    if len(compact) == _CHECKED_SHAPE_LEN and compact.isascii() and compact.isalnum():
        ric, uscc = validate_ric(compact), validate_uscc(compact)
        if ric is None or uscc is None:
            return compact, None
        return compact, f"neither a valid {CN_RIC} ({ric}) nor a valid {CN_USCC} ({uscc})"
    normal = normalize_identifier("", value)
    return normal, _validate_opaque(normal)
