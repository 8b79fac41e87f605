"""The personal-data guard (contract §5): resident identity numbers and mainland mobile numbers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.personal_data import (
    GUARDED_FIELDS,
    REDACTED,
    find_personal_data,
    redact_identifiers,
    refuse_personal_data,
    resident_id_check_digit_valid,
)

pytestmark = pytest.mark.core

ID_NUMBER = "a resident identity number"
MOBILE = "a mobile phone number"


def check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2, written out independently of the code under test (GB 11643-1999)."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2
    remainder = sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11
    return "10X98765432"[remainder]


def resident_id(first17: str) -> str:
    return first17 + check_char(first17)


def wrong_check(number: str) -> str:
    """The same first 17 digits with a check character that is not the right one."""
    return number[:17] + ("0" if number[17] != "0" else "1")


def fullwidth(text: str) -> str:
    return text.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"} | {ord("X"): "Ｘ"})


# Published examples (the GB 11643 sample and a widely quoted Guangdong one) and computed ones.
VALID_IDS = [
    "11010519491231002X",
    "440524188001010014",
    resident_id("51080220000101123"),  # a Guangyuan (510802, Lizhou) prefix
    resident_id("51082420200124000"),
]


def test_weights_of_the_independent_check_are_the_standard_ones() -> None:
    assert [2 ** (17 - i) % 11 for i in range(17)] == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


@pytest.mark.parametrize("number", VALID_IDS, ids=lambda n: n)
def test_valid_check_digits_are_recognised(number: str) -> None:
    assert resident_id_check_digit_valid(number)
    assert find_personal_data(number) == ID_NUMBER


def test_x_check_digit_in_either_case() -> None:
    assert resident_id_check_digit_valid("11010519491231002X")
    assert resident_id_check_digit_valid("11010519491231002x")
    assert find_personal_data("11010519491231002x") == ID_NUMBER
    assert not resident_id_check_digit_valid("110105194912310020")


@pytest.mark.parametrize("number", VALID_IDS, ids=lambda n: n)
def test_every_wrong_check_character_is_rejected(number: str) -> None:
    for char in "0123456789X":
        candidate = number[:17] + char
        assert resident_id_check_digit_valid(candidate) == (char == number[17].upper()), candidate
        expected = ID_NUMBER if char == number[17].upper() else None
        assert find_personal_data(candidate) == expected, candidate


@settings(max_examples=200)
@given(st.text("0123456789", min_size=17, max_size=17))
def test_check_digit_agrees_with_the_standard(first17: str) -> None:
    right = check_char(first17)
    assert resident_id_check_digit_valid(first17 + right)
    for char in "0123456789X":
        if char != right:
            assert not resident_id_check_digit_valid(first17 + char)
    assert find_personal_data(f"ref {first17 + right} end") == ID_NUMBER


@pytest.mark.parametrize("prefix", ["13", "14", "15", "16", "17", "18", "19"])
def test_mobile_prefixes_13_to_19_are_refused(prefix: str) -> None:
    number = prefix + "812345678"
    assert len(number) == 11
    assert find_personal_data(number) == MOBILE
    with pytest.raises(ValueError, match="personal data refused: looks like a mobile phone number"):
        refuse_personal_data(number)


@pytest.mark.parametrize("prefix", ["10", "11", "12", "20", "08"])
def test_other_eleven_digit_numbers_are_not_mobiles(prefix: str) -> None:
    assert find_personal_data(prefix + "812345678") is None
    assert refuse_personal_data(prefix + "812345678") == prefix + "812345678"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        pytest.param("电话13800138000请回电", MOBILE, id="mobile-in-chinese"),
        pytest.param("tel:13800138000.", MOBILE, id="mobile-after-colon"),
        pytest.param("a13800138000b", MOBILE, id="mobile-between-letters"),
        pytest.param("+86 13800138000", MOBILE, id="mobile-after-country-code-and-space"),
        pytest.param("(13800138000)", MOBILE, id="mobile-in-brackets"),
        pytest.param("身份证号11010519491231002X。", ID_NUMBER, id="id-in-chinese"),
        pytest.param("id=11010519491231002X;", ID_NUMBER, id="id-in-ascii"),
        pytest.param("11010519491231002Xabc", ID_NUMBER, id="id-then-letters"),
        pytest.param("x 440524188001010014 y", ID_NUMBER, id="id-between-spaces"),
        pytest.param("13800138000 and 11010519491231002X", ID_NUMBER, id="both-id-named-first"),
        pytest.param("１３８００１３８０００", MOBILE, id="fullwidth-mobile"),
        pytest.param(f"证件{fullwidth('11010519491231002X')}", ID_NUMBER, id="fullwidth-id"),
    ],
)
def test_identifiers_embedded_in_text_are_found(text: str, found: str) -> None:
    assert find_personal_data(text) == found
    with pytest.raises(ValueError, match=f"looks like {found}"):
        refuse_personal_data(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("138001380001", id="twelve-digits-from-a-mobile-prefix"),
        pytest.param("013800138000", id="mobile-after-a-digit"),
        pytest.param("8613800138000", id="country-code-without-separator"),
        pytest.param("1380013800", id="ten-digits"),
        pytest.param("111010519491231002X", id="id-after-a-digit"),
        pytest.param("11010519491231002X1", id="digit-after-the-check-x"),
        pytest.param("1101051949123100201", id="nineteen-digits"),
        pytest.param("110105194912310020", id="id-with-wrong-check-digit"),
        pytest.param("138-0013-8000", id="mobile-with-dashes"),
        pytest.param("0839-3200000", id="landline"),
        pytest.param("张三 男 1949-12-31", id="no-long-digit-run"),
        pytest.param("", id="empty"),
    ],
)
def test_other_numbers_are_not_identifiers(text: str) -> None:
    assert find_personal_data(text) is None
    assert refuse_personal_data(text) == text
    assert redact_identifiers(text) == text


def test_refusal_message_does_not_repeat_the_value() -> None:
    with pytest.raises(ValueError, match="send a pseudonym") as caught:
        refuse_personal_data("联系人13800138000")
    assert "13800138000" not in str(caught.value)


def test_redaction_replaces_each_identifier_and_keeps_the_rest() -> None:
    text = "患者11010519491231002X，电话13800138000，座机0839-3200000，编号110105194912310020"
    assert redact_identifiers(text) == (
        f"患者{REDACTED}，电话{REDACTED}，座机0839-3200000，编号110105194912310020"
    )


def test_redaction_of_fullwidth_digits_keeps_the_surrounding_text() -> None:
    assert redact_identifiers("电话１３８００１３８０００。") == f"电话{REDACTED}。"


digitless = st.text(st.characters(codec="utf-8", categories=["L", "M", "P", "S", "Z"]), max_size=20)
separator = st.text(st.characters(codec="utf-8", exclude_categories=["Nd", "Cs"]), min_size=1, max_size=3)


@settings(max_examples=150)
@given(
    before=digitless,
    after=digitless,
    sep_before=separator,
    sep_after=separator,
    prefix=st.sampled_from("3456789"),
    rest=st.text("0123456789", min_size=9, max_size=9),
)
def test_a_mobile_anywhere_bounded_by_non_digits_is_found_and_redacted(
    *, before: str, after: str, sep_before: str, sep_after: str, prefix: str, rest: str
) -> None:
    number = "1" + prefix + rest
    text = before + sep_before + number + sep_after + after
    assert find_personal_data(text) is not None
    redacted = redact_identifiers(text)
    assert number not in redacted
    assert redacted == before + sep_before + REDACTED + sep_after + after


@settings(max_examples=150)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Nd", "Cs"])))
def test_text_without_digits_is_clean(text: str) -> None:
    assert find_personal_data(text) is None
    assert redact_identifiers(text) == text


@settings(max_examples=150)
@given(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60))
def test_redacted_text_is_always_clean(text: str) -> None:
    assert find_personal_data(redact_identifiers(text)) is None


def test_guarded_fields_are_the_contracts() -> None:
    assert frozenset({"person_ref", "township", "grid", "facility", "officer_name", "note"}) == GUARDED_FIELDS
    assert "phone" not in GUARDED_FIELDS


def test_valid_id_examples_are_distinct_from_wrong_ones() -> None:
    # Guards the table above: a typo in a "valid" example would make the positive tests vacuous.
    for number in VALID_IDS:
        assert re.fullmatch(r"\d{17}[\dX]", number)
        assert check_char(number[:17]) == number[17]
        assert find_personal_data(wrong_check(number)) is None
