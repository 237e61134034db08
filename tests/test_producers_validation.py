"""The validation functions on their own: normalisation and the rule each refusal names."""

from __future__ import annotations

from typing import Any

import pytest

from producers import validation as v
from producers.errors import ProducerValidationError


def refused(call: Any, *args: Any, **kwargs: Any) -> ProducerValidationError:
    with pytest.raises(ProducerValidationError) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == f"{info.value.field}: {info.value.rule}"
    return info.value


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("13812345678", "13812345678"),
        ("138 1234 5678", "13812345678"),
        ("138-1234-5678", "13812345678"),
        ("+8613812345678", "13812345678"),
        ("+86 138 1234 5678", "13812345678"),
        ("008619912345678", "19912345678"),
        ("8615012345678", "15012345678"),
    ],
)
def test_mainland_numbers_are_normalised(raw: str, normalized: str) -> None:
    assert v.validate_phone(raw) == normalized


@pytest.mark.parametrize(
    "raw",
    [
        "12812345678",  # second digit below 3
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "+8513812345678",  # another country's prefix
        "1381234567a",
        "١٣٨١٢٣٤٥٦٧٨",  # Arabic-Indic digits match \d but are not a phone number
        "13812345678\n",
        "",
    ],
)
def test_bad_mainland_numbers_are_refused(raw: str) -> None:
    error = refused(v.validate_phone, raw, "phone")
    assert error.field == "phone"
    assert error.rule == v.MAINLAND_RULE


def test_phone_must_be_a_string() -> None:
    assert refused(v.validate_phone, 13812345678, "phone").rule == "must be a string"


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("+447911123456", "+447911123456"),
        ("+1 415-555-0100", "+14155550100"),
        ("+123456", "+123456"),
    ],
)
def test_international_numbers(raw: str, normalized: str) -> None:
    assert v.validate_phone(raw, international=True) == normalized


@pytest.mark.parametrize("raw", ["447911123456", "+12345", "+1234567890123456", "+0123456789"])
def test_bad_international_numbers(raw: str) -> None:
    assert refused(v.validate_phone, raw, international=True).rule == v.INTERNATIONAL_RULE


def test_phone_list_reports_the_index_of_the_bad_number() -> None:
    error = refused(v.validate_phones, ["13812345678", "13912345678", "12345"])
    assert error.field == "phones[2]"
    assert str(error) == "phones[2]: must be a mainland mobile number (11 digits starting 13-19)"


def test_the_first_problem_in_order_is_reported() -> None:
    error = refused(v.validate_phones, ["13812345678", 13912345678, "bad"])
    assert (error.field, error.rule) == ("phones[1]", "must be a string")
    error = refused(v.validate_phones, ["13812345678", "bad", b"13912345678"])
    assert error.field == "phones[1]"
    error = refused(v.validate_phones, ["+447911123456", "+44 7911 123456"], international=True)
    assert (error.field, error.rule) == ("phones[1]", "duplicate of phones[0]")


def test_duplicates_are_found_after_normalisation() -> None:
    error = refused(v.validate_phones, ["13812345678", "139 1234 5678", "+86 13812345678"])
    assert (error.field, error.rule) == ("phones[2]", "duplicate of phones[0]")


def test_phone_list_limits() -> None:
    assert refused(v.validate_phones, []).rule == "must not be empty"
    assert refused(v.validate_phones, "13812345678").rule == "must be a list of phone numbers"
    many = [f"138{i:08d}" for i in range(2001)]
    assert refused(v.validate_phones, many).rule == "must hold at most 2000 numbers (got 2001)"
    assert len(v.validate_phones(many, max_count=None)) == 2001
    assert v.validate_phones(iter(["13812345678"])) == ["13812345678"]


def test_sms_vars() -> None:
    converted = v.validate_sms_vars({"name": "lucy", "%money%": 100})
    assert converted == {"name": "lucy", "%money%": "100"}
    assert v.validate_sms_vars({}) is None
    assert refused(v.validate_sms_vars, {"a": "x" * 33}).field == "vars['a']"
    assert v.validate_sms_vars({"a": "x" * 32}) == {"a": "x" * 32}
    for link in ("see http://x.cn", "HTTPS://x.cn", "www.example.com"):
        assert refused(v.validate_sms_vars, {"a": link}).rule.startswith("must not contain links")
    assert refused(v.validate_sms_vars, {"a": 1.5}).rule == "must be a string or an integer"
    assert refused(v.validate_sms_vars, {"a": True}).field == "vars['a']"
    assert refused(v.validate_sms_vars, {"": "x"}).rule == "keys must be non-empty strings"
    assert refused(v.validate_sms_vars, ["x"]).rule == "must be a dict of strings"


def test_tag_is_measured_as_compact_json() -> None:
    fits = {"k": "x" * (128 - len('{"k":""}'))}
    assert v.validate_tag(fits) == fits
    error = refused(v.validate_tag, {"k": "x" * (129 - len('{"k":""}'))})
    assert (error.field, error.rule) == ("tag", "must be at most 128 characters as JSON")


@pytest.mark.parametrize("code", ["1234", "12345", "123456"])
def test_codes(code: str) -> None:
    assert v.validate_code(code) == code


@pytest.mark.parametrize("code", ["123", "1234567", "12a4", 1234, "١٢٣٤", " 1234"])
def test_bad_codes(code: object) -> None:
    assert refused(v.validate_code, code).rule == "must be a string of 4-6 digits"


def test_keys() -> None:
    assert v.validate_key("k" * 100) == "k" * 100
    for bad in ("", "k" * 101, "has space", "tab\t", "ключ", 5):
        assert refused(v.validate_key, bad).field == "idempotency_key"


def test_numbers_and_choices() -> None:
    assert v.validate_positive_int(7, "template_id") == 7
    for bad in (0, -1, True, "7", 7.0):
        assert refused(v.validate_positive_int, bad, "template_id").field == "template_id"
    assert v.validate_choice(2, "msg_type", (0, 2)) == 2
    assert refused(v.validate_choice, 1, "msg_type", (0, 2)).rule == "must be 0 or 2"
    assert refused(v.validate_choice, False, "msg_type", (0, 1)).rule == "must be 0 or 1"
    for bad in (0, -5, float("nan"), float("inf"), True, "60"):
        assert refused(v.validate_expiry, bad).field == "expires_in"


def test_addresses() -> None:
    assert v.validate_address("news@maillist.sendcloud.org") == "news@maillist.sendcloud.org"
    local = "a" * (48 - len("@x.org"))
    assert v.validate_address(f"{local}@x.org") == f"{local}@x.org"
    for bad in (f"{local}a@x.org", "news", "a@b", "a;b@x.org", "a@@x.org", "a b@x.org", ""):
        error = refused(v.validate_address, bad)
        assert (error.field, error.rule) == (
            "address",
            "must be an e-mail address of at most 48 characters",
        )


def test_member_lists() -> None:
    assert v.validate_emails([" a@x.org", "b@x.org"], "members") == ["a@x.org", "b@x.org"]
    error = refused(v.validate_emails, ["a@x.org", "b@x.org", "A@X.org"], "members")
    assert (error.field, error.rule) == ("members[2]", "duplicate of members[0]")
    assert refused(v.validate_emails, [], "members").rule == "must not be empty"
    assert refused(v.validate_emails, ["a@x.org", "nope"], "members").field == "members[1]"


def test_member_names_and_vars() -> None:
    assert v.validate_member_names(["A", "B"], 2) == ["A", "B"]
    error = refused(v.validate_member_names, ["A"], 2)
    assert (error.field, error.rule) == ("names", "must hold one entry per member (2), got 1")
    assert refused(v.validate_member_names, ["A", "B;C"], 2).field == "names[1]"
    assert refused(v.validate_member_names, ["A", ""], 2).field == "names[1]"
    assert v.validate_member_vars([{"money": 99}, {}], 2) == [{"money": "99"}, {}]
    assert refused(v.validate_member_vars, [{}, {"name": "x"}], 2).field == "vars[1]"
    assert refused(v.validate_member_vars, [{"%money%": "1"}], 1).rule == (
        "keys must not be wrapped in '%'"
    )
    assert refused(v.validate_member_vars, [{"a": "x;y"}], 1).field == "vars[0]"
    fits = {"k": "x" * (1024 - len('{"k":""}'))}
    assert v.validate_member_vars([fits], 1) == [fits]
    error = refused(v.validate_member_vars, [{"k": "x" * (1025 - len('{"k":""}'))}], 1)
    assert (error.field, error.rule) == ("vars[0]", "must be at most 1024 characters as JSON")
    assert refused(v.validate_member_vars, {"a": "b"}, 1).rule == "must be a list of dicts"
