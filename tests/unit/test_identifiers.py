"""Identifier validation: published vectors, exact reasons, and checksum properties.

The check-character properties asserted here are the ones the algorithms
guarantee, not ones that merely happen to hold:

* MOD 31 (USCC) and MOD 11 (RIC) are prime moduli and every position weight is
  non-zero, and two characters of one code differ by less than the modulus, so
  changing any single character always changes the weighted sum: every single
  substitution is detected.
* Swapping adjacent characters a, b at positions i, i+1 changes the sum by
  (b - a) * (w_i - w_{i+1}).  For USCC w_{i+1} = 3 w_i, so the change is
  -2 w_i (b - a); against the check character (effective weight 1) it is
  27 (c - a).  For RIC w_i = 2 w_{i+1}, so the change is w_{i+1} (b - a);
  against the check character it is (c - a).  None is 0 mod the prime when
  a != b, so every adjacent transposition of distinct characters is detected.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.identifiers import (
    CN_RIC,
    CN_USCC,
    RIC_PROVINCE_CODES,
    USCC_ALPHABET,
    USCC_DIVISION_PREFIXES,
    USCC_ENTITY_TYPES,
    normalize_identifier,
    org_code_check_char,
    query_identifier,
    ric_check_char,
    uscc_check_char,
    validate_identifier,
    validate_ric,
    validate_uscc,
)

pytestmark = pytest.mark.unit

TODAY = date(2025, 6, 1)

# Codes published by their holders, both check characters verified.
PUBLISHED_USCC = [
    "91110000600037341L",
    "91350100M000100Y43",
    "12440300MB2C92173E",
]
# Constructed with independently computed check characters, to cover letter
# authorities (Y, N, A, G), later-allocated types (55), national division
# 100000, and embedded check characters 'X' and '0'.
CONSTRUCTED_USCC = [
    "Y1110000MA01H3KQ98",
    "N2330381MF4P2R7W6A",
    "A1100000MB1D5E6T5E",
    "G1310000MC2L9N8U59",
    "55440300ME7X3Y4A0Q",
    "93510100271836459J",
    "5111000010000018XM",
    "91310000100000040B",
]
GOOD_USCC = PUBLISHED_USCC + CONSTRUCTED_USCC

GOOD_RIC = [
    "360426199101010071",
    "11010519491231002X",
    "810000198002291233",  # Hong Kong prefix, 29 February of a leap year
    "830000200001010042",  # Taiwan residents' residence permit
    "710000190001010014",  # earliest accepted birth date
    "440306202402295553",
]


def _uscc_value(ch: str) -> int:
    return USCC_ALPHABET.index(ch)


def _uscc_sum_ok(code: str) -> bool:
    """Oracle independent of the module: MOD 31-3 with the check weighted 1."""
    total = sum(_uscc_value(ch) * pow(3, i, 31) for i, ch in enumerate(code[:17]))
    return (total + _uscc_value(code[17])) % 31 == 0


def _ric_sum_ok(number: str) -> bool:
    """Oracle independent of the module: ISO 7064 MOD 11-2 over all 18 characters."""
    values = [10 if ch == "X" else int(ch) for ch in number]
    return sum(v * pow(2, 17 - i, 11) for i, v in enumerate(values)) % 11 == 1


# --------------------------------------------------------------------------- USCC


@pytest.mark.parametrize("code", GOOD_USCC)
def test_good_uscc_is_valid(code: str) -> None:
    assert validate_uscc(code) is None
    assert _uscc_sum_ok(code)
    assert org_code_check_char(code[8:16]) == code[16]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "must be 18 characters, got 0"),
        ("91110000600037341", "must be 18 characters, got 17"),
        ("91110000600037341LL", "must be 18 characters, got 19"),
        ("91110000600037341M", "check character should be 'L', not 'M'"),
        ("91110000600037341l", "character 'l' at position 18 is lowercase"),
        ("9111I000600037341L", "character 'I' at position 5 is not allowed"),
        ("91110000600O37341L", "character 'O' at position 12 is not allowed"),
        ("Z1110000600037341L", "character 'Z' at position 1 is not allowed"),
        ("91110000600037341S", "character 'S' at position 18 is not allowed"),
        ("9111000060003734V1", "character 'V' at position 17 is not allowed"),
        ("91110000 00037341L", "character ' ' at position 9 is not allowed"),
        ("9111000060003734\x001", "character '\\x00' at position 17 is not allowed"),
        ("911100006000373４1L", "character '４' at position 16 is not allowed"),  # noqa: RUF001 - full-width characters on purpose
        ("B1110000600037341L", "registration authority code 'B' at position 1 is not assigned"),
        ("0111000060003734XL", "registration authority code '0' at position 1 is not assigned"),
        (
            "94110000600037341L",
            "organisation type code '4' at position 2 is not assigned under registration authority '9'",
        ),
        ("Y2110000600037341L", "type code '2' at position 2 is not assigned under registration"),
        ("9A110000600037341L", "type code 'A' at position 2 is not assigned under registration"),
        ("91AB0000600037341L", "division code at positions 3-8 must be 6 digits, got 'AB0000'"),
        ("91990000600037341L", "division code '990000' does not start with a province code"),
        ("91830000600037341L", "division code '830000' does not start with a province code"),
        (
            "91110000600037342P",
            "embedded organisation code check character (position 17) should be '1', not '2'",
        ),
        ("9111000060003734A1", "check character (position 17) should be '1', not 'A'"),
    ],
)
def test_bad_uscc_reason(code: str, reason: str) -> None:
    result = validate_uscc(code)
    assert result is not None
    assert reason in result


@pytest.mark.parametrize("code", GOOD_USCC)
def test_every_single_substitution_of_a_good_uscc_is_rejected(code: str) -> None:
    for position in range(18):
        for replacement in USCC_ALPHABET:
            if replacement != code[position]:
                mutated = code[:position] + replacement + code[position + 1 :]
                assert validate_uscc(mutated) is not None, mutated


@pytest.mark.parametrize("code", GOOD_USCC)
def test_every_adjacent_transposition_of_a_good_uscc_is_rejected(code: str) -> None:
    for position in range(17):
        a, b = code[position], code[position + 1]
        if a != b:
            swapped = code[:position] + b + a + code[position + 2 :]
            assert validate_uscc(swapped) is not None, swapped


@pytest.mark.parametrize(
    ("first8", "check"),
    [("60003734", "1"), ("M000100Y", "4"), ("MB2C9217", "3"), ("10000018", "X"), ("10000004", "0")],
)
def test_org_code_check_char(first8: str, check: str) -> None:
    assert org_code_check_char(first8) == check


@pytest.mark.parametrize("bad", ["", "6000373", "600037341", "6000373a", "6000373-", "6000373４"])  # noqa: RUF001 - full-width characters on purpose
def test_org_code_check_char_refuses_malformed_body(bad: str) -> None:
    with pytest.raises(ValueError, match="organisation code body"):
        org_code_check_char(bad)


@pytest.mark.parametrize(
    "bad", ["", "9111000060003734", "911100006000373411", "9111000060003734I", "911100006000373a1"]
)
def test_uscc_check_char_refuses_malformed_body(bad: str) -> None:
    with pytest.raises(ValueError, match="USCC body"):
        uscc_check_char(bad)


def test_published_entity_type_table_is_present() -> None:
    # GB 32100-2015 Annex A with Amendment No. 1; later allocations may add to it.
    published = {
        "1": "1239",
        "2": "19",
        "3": "123459",
        "4": "19",
        "5": "1239",
        "6": "129",
        "7": "129",
        "8": "19",
        "9": "123",
        "A": "19",
        "N": "1239",
        "Y": "1",
    }
    for authority, types in published.items():
        assert set(types) <= USCC_ENTITY_TYPES[authority], authority
    for authority, entity_types in USCC_ENTITY_TYPES.items():
        assert authority in USCC_ALPHABET
        assert entity_types and entity_types <= set(USCC_ALPHABET)


@st.composite
def valid_usccs(draw: st.DrawFn) -> str:
    authority = draw(st.sampled_from(sorted(USCC_ENTITY_TYPES)))
    entity_type = draw(st.sampled_from(sorted(USCC_ENTITY_TYPES[authority])))
    prefix = draw(st.sampled_from(sorted(USCC_DIVISION_PREFIXES)))
    rest = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    body = draw(st.text(alphabet=USCC_ALPHABET, min_size=8, max_size=8))
    first17 = authority + entity_type + prefix + rest + body + org_code_check_char(body)
    return first17 + uscc_check_char(first17)


@given(valid_usccs())
@settings(max_examples=200)
def test_generated_uscc_validates(code: str) -> None:
    assert validate_uscc(code) is None
    assert _uscc_sum_ok(code)
    assert validate_identifier(CN_USCC, code) is None
    assert normalize_identifier(CN_USCC, f" {code.lower()}\t") == code


@given(valid_usccs(), st.integers(0, 17), st.sampled_from(USCC_ALPHABET))
@settings(max_examples=300)
def test_generated_uscc_single_substitution_rejected(code: str, position: int, replacement: str) -> None:
    mutated = code[:position] + replacement + code[position + 1 :]
    assert (validate_uscc(mutated) is None) == (mutated == code)


@given(valid_usccs(), st.integers(0, 16))
@settings(max_examples=200)
def test_generated_uscc_adjacent_transposition_rejected(code: str, position: int) -> None:
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    assert (validate_uscc(swapped) is None) == (swapped == code)


# --------------------------------------------------------------------------- RIC


@pytest.mark.parametrize("number", GOOD_RIC)
def test_good_ric_is_valid(number: str) -> None:
    assert validate_ric(number, today=TODAY) is None
    assert _ric_sum_ok(number)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("", "must be 18 characters, got 0"),
        ("36042619910101007", "must be 18 characters, got 17"),
        ("360426910101007", "must be 18 characters, got 15"),
        ("360426199101010072", "check character should be '1', not '2'"),
        ("11010519491231002x", "check character 'x' at position 18 must be uppercase 'X'"),
        ("11010519491231002Y", "character 'Y' at position 18 must be a digit or 'X'"),
        ("3604261991010100X1", "character 'X' at position 17 must be a digit"),
        ("36042619910101007 ", "character ' ' at position 18 must be a digit or 'X'"),
        ("３60426199101010071", "character '３' at position 1 must be a digit"),  # noqa: RUF001 - full-width characters on purpose
        ("990426199101010071", "address code '990426' does not start with a province code"),
        ("100000199101010071", "address code '100000' does not start with a province code"),
        ("360426199102300071", "birth date '19910230' at positions 7-14 is not a calendar date"),
        ("360426190002290071", "birth date '19000229' at positions 7-14 is not a calendar date"),
        ("360426199113010071", "birth date '19911301' at positions 7-14 is not a calendar date"),
        ("360426000001010071", "birth date '00000101' at positions 7-14 is not a calendar date"),
        ("360426189912310071", "birth year 1899 is before 1900"),
        ("360426202506020071", "birth date 2025-06-02 is in the future"),
    ],
)
def test_bad_ric_reason(number: str, reason: str) -> None:
    result = validate_ric(number, today=TODAY)
    assert result is not None
    assert reason in result


def test_ric_born_today_is_valid_and_tomorrow_is_not() -> None:
    first17 = "36042620250601007"
    number = first17 + ric_check_char(first17)
    assert validate_ric(number, today=TODAY) is None
    assert validate_ric(number, today=date(2025, 5, 31)) == "birth date 2025-06-01 is in the future"


def test_ric_today_defaults_to_the_current_date() -> None:
    assert validate_ric("360426199101010071") is None
    first17 = "36042699991231007"
    assert "in the future" in (validate_ric(first17 + ric_check_char(first17)) or "")


@pytest.mark.parametrize(("first17", "check"), [("36042619910101007", "1"), ("11010519491231002", "X")])
def test_ric_check_char(first17: str, check: str) -> None:
    assert ric_check_char(first17) == check


@pytest.mark.parametrize(
    "bad",
    ["", "3604261991010100", "360426199101010071", "3604261991010100X", "３6042619910101007"],  # noqa: RUF001 - full-width characters on purpose
)
def test_ric_check_char_refuses_malformed_body(bad: str) -> None:
    with pytest.raises(ValueError, match="17 digits"):
        ric_check_char(bad)


@pytest.mark.parametrize("number", GOOD_RIC)
def test_every_single_substitution_and_transposition_of_a_good_ric_is_rejected(number: str) -> None:
    for position in range(18):
        for replacement in "0123456789X":
            if replacement != number[position]:
                mutated = number[:position] + replacement + number[position + 1 :]
                assert validate_ric(mutated, today=TODAY) is not None, mutated
    for position in range(17):
        a, b = number[position], number[position + 1]
        if a != b:
            swapped = number[:position] + b + a + number[position + 2 :]
            assert validate_ric(swapped, today=TODAY) is not None, swapped


@st.composite
def valid_rics(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(sorted(RIC_PROVINCE_CODES)))
    rest = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    birth = draw(st.dates(min_value=date(1900, 1, 1), max_value=TODAY))
    sequence = draw(st.text(alphabet="0123456789", min_size=3, max_size=3))
    first17 = province + rest + birth.strftime("%Y%m%d") + sequence
    return first17 + ric_check_char(first17)


@given(valid_rics())
@settings(max_examples=200)
def test_generated_ric_validates(number: str) -> None:
    assert validate_ric(number, today=TODAY) is None
    assert _ric_sum_ok(number)
    assert normalize_identifier(CN_RIC, f"\n{number.lower()} ") == number


@given(valid_rics(), st.integers(0, 17), st.sampled_from("0123456789X"))
@settings(max_examples=300)
def test_generated_ric_single_substitution_rejected(number: str, position: int, replacement: str) -> None:
    mutated = number[:position] + replacement + number[position + 1 :]
    assert (validate_ric(mutated, today=TODAY) is None) == (mutated == number)


@given(valid_rics(), st.integers(0, 16))
@settings(max_examples=200)
def test_generated_ric_adjacent_transposition_rejected(number: str, position: int) -> None:
    swapped = number[:position] + number[position + 1] + number[position] + number[position + 2 :]
    assert (validate_ric(swapped, today=TODAY) is None) == (swapped == number)


# --------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    ("scheme", "value", "reason"),
    [
        (CN_USCC, "91110000600037341L", None),
        (CN_USCC, "91110000600037341l", "lowercase"),
        (CN_USCC, " 91110000600037341L", "must be 18 characters, got 19"),
        (CN_RIC, "11010519491231002X", None),
        (CN_RIC, "11010519491231002x", "must be uppercase 'X'"),
        ("PASSPORT", "E12345678", None),
        ("PASSPORT", "a" * 64, None),
        ("PASSPORT", "北京市某某有限公司", None),
        ("PASSPORT", "with inner space", None),
        ("PASSPORT", "", "must not be empty or blank"),
        ("PASSPORT", " \t ", "must not be empty or blank"),
        ("PASSPORT", "a" * 65, "must be at most 64 characters, got 65"),
        ("PASSPORT", "ab\x00", "control character '\\x00' at position 3 is not allowed"),
        ("PASSPORT", "ab\ncd", "control character '\\n' at position 3 is not allowed"),
        ("PASSPORT", "\x7f", "control character '\\x7f' at position 1 is not allowed"),
        ("PASSPORT", "a\x85", "control character '\\x85' at position 2 is not allowed"),
        ("PASSPORT", "a\ud800", "unpaired surrogate '\\ud800' at position 2 is not allowed"),
        # Scheme names are exact: a lower-case spelling is some other, opaque scheme.
        ("cn_uscc", "anything", None),
    ],
)
def test_validate_identifier(scheme: str, value: str, reason: str | None) -> None:
    result = validate_identifier(scheme, value)
    if reason is None:
        assert result is None
    else:
        assert result is not None
        assert reason in result


@pytest.mark.parametrize(
    ("scheme", "value", "expected"),
    [
        (CN_USCC, " 91110000600037341l\n", "91110000600037341L"),
        (CN_RIC, "\t11010519491231002x ", "11010519491231002X"),
        ("PASSPORT", "  e12345678 ", "e12345678"),
        ("PASSPORT", "Mixed Case", "Mixed Case"),
    ],
)
def test_normalize_identifier(scheme: str, value: str, expected: str) -> None:
    assert normalize_identifier(scheme, value) == expected


_schemes = st.sampled_from([CN_USCC, CN_RIC, "PASSPORT", "cn_uscc"])
_near_uscc = st.text(alphabet=USCC_ALPHABET + "abclxIOZSV -", min_size=16, max_size=20)
_near_ric = st.text(alphabet="0123456789Xx ", min_size=16, max_size=20)


@given(_schemes, st.one_of(st.text(), _near_uscc, _near_ric))
@settings(max_examples=500)
def test_random_input_never_raises(scheme: str, value: str) -> None:
    for result in (
        validate_identifier(scheme, value),
        validate_uscc(value),
        validate_ric(value, today=TODAY),
    ):
        assert result is None or (isinstance(result, str) and result)
    normalized = normalize_identifier(scheme, value)
    assert isinstance(normalized, str)
    assert isinstance(validate_identifier(scheme, normalized), str | None)


@given(_schemes, st.one_of(valid_usccs(), valid_rics(), st.text()))
@settings(max_examples=200)
def test_normalize_is_idempotent_and_keeps_valid_values_valid(scheme: str, value: str) -> None:
    once = normalize_identifier(scheme, value)
    assert normalize_identifier(scheme, once) == once
    if scheme in (CN_USCC, CN_RIC) and validate_identifier(scheme, value) is None:
        assert once == value


# --------------------------------------------------------------------------- identifiers asked about


@pytest.mark.parametrize(
    ("value", "scheme", "normal"),
    [
        ("360426199101010071", None, "360426199101010071"),
        (" 11010519491231002x ", None, "11010519491231002X"),
        ("1101 0519 4912 3100 2X", "CN_RIC", "11010519491231002X"),
        (
            "\uff13\uff16\uff10\uff14\uff12\uff16\uff11\uff19\uff19\uff11\uff10\uff11\uff10\uff11\uff10\uff10\uff17\uff11",
            None,
            "360426199101010071",
        ),  # full-width digits (NFKC)
        ("91110000600037341l", None, "91110000600037341L"),
        ("91110000600037341L", "CN_USCC", "91110000600037341L"),
        ("  Passport E1234  ", None, "Passport E1234"),  # opaque: only stripped, case kept
        ("\uff21\uff22\uff23", "PASSPORT", "ABC"),
    ],
)
def test_a_question_is_normalised(value: str, scheme: str | None, normal: str) -> None:
    assert query_identifier(value, scheme) == (normal, None)


@pytest.mark.parametrize(
    ("value", "scheme", "problem"),
    [
        ("360426199101010072", None, "neither a valid CN_RIC"),
        ("360426199101010071", "CN_USCC", "administrative division code"),
        ("91110000600037341L", "CN_RIC", ""),
        ("a\x00b", None, "control character"),
        ("x", "cn_ric", "not a scheme name"),
        ("   ", None, "blank"),
    ],
)
def test_a_malformed_question_is_refused_with_its_reason(value: str, scheme: str | None, problem: str) -> None:
    _, reason = query_identifier(value, scheme)
    assert reason is not None and problem in reason
