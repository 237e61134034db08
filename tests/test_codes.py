"""The code table against the docs' text: every documented code, its meaning, one Kind, one class.

The docs are parsed here rather than copied, so an edit to either side shows up. The vendored
copy in docs/ is also compared with the shared copy beside the repository, when it exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.sendcloud import codes, errors
from worker.sendcloud.codes import CODES, ERROR_CLASSES, HOOK_CODES, Kind

DOCS = Path(__file__).resolve().parent.parent / "docs" / "sendcloud-api"
SHARED = DOCS.parent.parent.parent / "shared" / "sendcloud-api"
CODE_LINE = re.compile(r"^(\d{3,5}) (\S.*?)\s*$")


def section(text: str, start: str, end: str | None = None) -> dict[int, str]:
    """``code meaning`` lines between the line ``start`` and the line starting with ``end``."""
    lines = text.splitlines()
    begin = lines.index(start) + 1
    found: dict[int, str] = {}
    for line in lines[begin:]:
        if end is not None and line.startswith(end):
            break
        match = CODE_LINE.match(line)
        if match:
            code = int(match.group(1))
            assert code not in found, f"{code} listed twice in one table"
            found[code] = match.group(2)
    return found


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def api_codes() -> dict[int, str]:
    return section(read("return-codes.txt"), "API Return Code Meaning")


def sms_codes() -> dict[int, str]:
    return section(read("sms.txt"), "API return code meaning", "SMSHook")


def hook_codes() -> dict[int, str]:
    return section(read("sms.txt"), "SMSHook error code (statusCode) meaning")


def email_status_codes() -> dict[int, str]:
    text = read("email-status.txt")
    found = re.findall(r'"statuscode": (\d+), "message": "([^"]+)"', text)
    return {int(code): meaning for code, meaning in found}


def test_the_docs_tables_were_found() -> None:
    # Guards the parser: an empty parse would make every other test pass vacuously.
    assert len(api_codes()) == 239 and {200, 40000, 50001, 6001} <= api_codes().keys()
    assert len(sms_codes()) == 28 and {311, 461, 601} <= sms_codes().keys()
    assert len(hook_codes()) == 11
    assert email_status_codes() == {50000: "interface frequency is limited"}


@pytest.mark.parametrize(
    ("table", "documented"),
    [
        (CODES, api_codes),
        (CODES, sms_codes),
        (CODES, email_status_codes),
        (HOOK_CODES, hook_codes),
    ],
    ids=["return-codes.txt", "sms.txt", "email-status.txt", "sms.txt SMSHook"],
)
def test_every_documented_code_is_in_the_table_with_the_docs_meaning(
    table: dict[int, codes.Code], documented: object
) -> None:
    assert callable(documented)
    for code, meaning in documented().items():
        assert code in table, f"{code} ({meaning}) missing"
        # 501 is "Abnormal sever" in return-codes.txt and "sever exception" in sms.txt: the
        # table keeps the SMS wording, so a code in both documents may match either.
        both = {meaning, sms_codes().get(code), api_codes().get(code)} - {None}
        assert table[code].meaning in (both if code in sms_codes() else {meaning}), code
        assert isinstance(table[code].kind, Kind)


def test_the_table_holds_no_code_the_docs_do_not() -> None:
    documented = api_codes().keys() | sms_codes().keys() | email_status_codes().keys()
    assert set(CODES) == documented
    assert set(HOOK_CODES) == hook_codes().keys()


def test_codes_shared_by_sms_and_api_tables_agree() -> None:
    # 200 and 501 appear in both documents; one entry must serve both.
    for code in api_codes().keys() & sms_codes().keys():
        assert CODES[code].kind in (Kind.OK, Kind.SERVER), code


def test_hook_codes_and_call_codes_are_separate() -> None:
    assert not set(CODES) & set(HOOK_CODES)
    assert {c.kind for c in HOOK_CODES.values()} == {Kind.UNDELIVERABLE}
    assert {c.source for c in HOOK_CODES.values()} == {"hook"}


def test_sources_name_the_document() -> None:
    for code in sms_codes():
        assert CODES[code].source == "sms" or code in api_codes(), code
    for code in api_codes().keys() - sms_codes().keys():
        assert CODES[code].source == "api", code


def test_every_failing_kind_has_exactly_one_error_class() -> None:
    for kind in Kind:
        if kind.succeeded:
            assert kind not in ERROR_CLASSES, kind
        else:
            cls = ERROR_CLASSES[kind]
            assert issubclass(cls, errors.SendCloudError), kind
    assert set(ERROR_CLASSES) == {k for k in Kind if not k.succeeded}


@pytest.mark.parametrize("code", sorted(c for c in CODES if not CODES[c].kind.succeeded))
def test_error_for_raises_the_kinds_class(code: int) -> None:
    exc = codes.error_for(code, "", endpoint="/smsapi/send")
    assert type(exc) is ERROR_CLASSES[CODES[code].kind]
    assert (exc.code, exc.message, exc.endpoint) == (code, CODES[code].meaning, "/smsapi/send")


@pytest.mark.parametrize(
    ("code", "transient"),
    [(501, True), (50000, True), (50001, True), (40516, True), (461, False), (412, False),
     (400, False), (40000, False), (496, False), (499, False), (40005, False)],
)
def test_which_codes_are_retried_soon(code: int, transient: bool) -> None:
    assert codes.error_for(code, "m", endpoint="/x").transient is transient


def test_an_undocumented_code_fails_visibly() -> None:
    exc = codes.error_for(99999, "new", endpoint="/x")
    assert type(exc) is errors.InvalidRequestError and not exc.transient


@pytest.mark.parametrize("name", ["return-codes.txt", "sms.txt", "address-list.txt",
                                  "email-status.txt", "webhooks.txt"])
def test_vendored_docs_match_the_shared_copy(name: str) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} does not exist here")
    assert (DOCS / name).read_bytes() == (SHARED / name).read_bytes(), name


def test_no_shared_doc_is_missing_from_the_vendored_copy() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} does not exist here")
    assert {p.name for p in SHARED.glob("*.txt")} <= {p.name for p in DOCS.glob("*.txt")}
