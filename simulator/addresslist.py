"""apiv2 address lists (``/apiv2/addresslist/*``) and their members (``/apiv2/addressmember/*``).

Follows docs/sendcloud-api/address-list.txt. Results are in creation order. Choices where the
docs are silent:

- aliases and member addresses compare case-insensitively and keep the case first given;
- an alias (``address``/``newAddress``) must look like an email address (else 40511) and be
  at most 48 characters (40504/40510); ``addresslist/delete`` takes one or more aliases
  separated by ";" and fails with 40517 unless every one belongs to the caller;
- ``addresslist/update`` with none of newAddress, name, desc: 40511;
- a parameter that is sent but empty: ``desc`` 40506, ``name`` 40501, ``newAddress`` 40509,
  ``vars`` 40520, ``members`` 40512; ``members`` with only separators: 40514;
- ``members`` entries are checked for length (1-48, else 40513 for the whole request) and
  count (40515); ``names``/``newMembers``/``vars`` counts must equal it (40521);
- in ``add``/``update`` one member's bad address, repeat, missing member, or ``vars`` that
  parse but are not an object of strings/numbers is reported per member ("address invalid",
  "address duplicate", "address not found", "vars invalid"); the whole ``vars`` not parsing is
  40522, one member's vars over 1024 characters 40531; ``get``/``delete`` with a malformed
  address answer 40518;
- ``vars`` may hold ";" inside JSON strings (the split respects quotes); a "name" key is
  dropped; an empty entry means no variables; a blank entry of ``names`` leaves the name as is;
- ``add`` on an existing member replaces its vars only when ``vars`` is sent;
- members are returned with ``vars`` as a compact JSON string, ``""`` when there are none,
  and without ``name`` when none was given (as in the docs' example).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from simulator.protocol import (
    ApiError,
    Params,
    is_email,
    parse_paging,
    shanghai_time,
    split_list,
)

_V = TypeVar("_V")

MAX_ALIAS = 48
MAX_NAME = 48
MAX_DESC = 250
MAX_MEMBER = 48
MAX_MEMBERS = 1000
MAX_MEMBER_VARS = 1024


@dataclass
class Member:
    member: str
    name: str | None
    vars: dict[str, str]
    created: float
    updated: float


@dataclass
class AddressList:
    address: str
    name: str
    description: str
    owner: str
    created: float
    updated: float
    member_updated: float
    members: dict[str, Member] = field(default_factory=dict)


@dataclass(frozen=True)
class MemberView:
    member: str
    name: str | None
    vars: dict[str, str]


@dataclass(frozen=True)
class AddressListView:
    address: str
    name: str
    description: str
    owner: str
    members: tuple[MemberView, ...]

    def member(self, address: str) -> MemberView | None:
        return next((m for m in self.members if m.member.lower() == address.lower()), None)


class AddressBook:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lists: dict[str, AddressList] = {}

    def reset(self) -> None:
        self._lists.clear()

    def snapshot(self) -> dict[str, AddressListView]:
        return {
            book.address: AddressListView(
                book.address, book.name, book.description, book.owner,
                tuple(MemberView(m.member, m.name, dict(m.vars)) for m in book.members.values()),
            )
            for book in self._lists.values()
        }

    # -- lists -----------------------------------------------------------------------------

    def list_lists(self, params: Params, user: str) -> dict[str, Any]:
        start, limit = parse_paging(params)
        wanted = {a.lower() for a in split_list(params.get("address", ""))}
        found = [b for b in self._lists.values()
                 if b.owner == user and (not wanted or b.address.lower() in wanted)]
        page = found[start:start + limit]
        return {"total": len(found), "count": len(page), "dataList": [_list_json(b) for b in page]}

    def add_list(self, params: Params, user: str) -> dict[str, Any]:
        address = _alias(params.get("address", ""), empty=40503, too_long=40504)
        name = _text(params, "name", MAX_NAME, empty=40501, too_long=40502) or ""
        if not name:
            raise ApiError(40501)
        desc = _text(params, "desc", MAX_DESC, empty=40506, too_long=40507) or ""
        if address.lower() in self._lists:
            raise ApiError(40505)
        now = self._clock()
        book = AddressList(address, name, desc, user, now, now, now)
        self._lists[address.lower()] = book
        data = _list_json(book)
        del data["memberUpdated"]
        data["listType"] = 0
        return {"data": data}

    def delete_list(self, params: Params, user: str) -> dict[str, Any]:
        if not params.get("address", "").strip():
            raise ApiError(40503)
        books = [self._owned(alias, user) for alias in split_list(params["address"])]
        for book in books:
            self._lists.pop(book.address.lower(), None)
        return {"count": len({id(b) for b in books})}

    def update_list(self, params: Params, user: str) -> dict[str, Any]:
        if not params.get("address", "").strip():
            raise ApiError(40503)
        new_address = None
        if "newAddress" in params:
            new_address = _alias(params["newAddress"], empty=40509, too_long=40510)
        name = _text(params, "name", MAX_NAME, empty=40501, too_long=40502)
        desc = _text(params, "desc", MAX_DESC, empty=40506, too_long=40507)
        if new_address is None and name is None and desc is None:
            raise ApiError(40511, "newAddress, name or desc is required")
        book = self._owned(params["address"].strip(), user)
        if new_address is not None and new_address.lower() != book.address.lower():
            if new_address.lower() in self._lists:
                raise ApiError(40505)
            self._lists = _rekeyed(self._lists, book.address.lower(), new_address.lower())
            book.address = new_address
        elif new_address is not None:
            book.address = new_address
        book.name = name if name is not None else book.name
        book.description = desc if desc is not None else book.description
        book.updated = self._clock()
        return {"count": 1}

    # -- members ---------------------------------------------------------------------------

    def list_members(self, params: Params, user: str) -> dict[str, Any]:
        book = self._owned(_required(params, "address", 40503), user)
        start, limit = parse_paging(params)
        members = list(book.members.values())
        page = members[start:start + limit]
        return {"dataList": [_member_json(book, m) for m in page], "total": len(members),
                "count": len(page)}

    def get_members(self, params: Params, user: str) -> dict[str, Any]:
        book = self._owned(_required(params, "address", 40503), user)
        wanted = _strict_members(params)
        found = [book.members[m.lower()] for m in wanted if m.lower() in book.members]
        return {"dataList": [_member_json(book, m) for m in found], "count": len(found)}

    def delete_members(self, params: Params, user: str) -> dict[str, Any]:
        book = self._owned(_required(params, "address", 40503), user)
        deleted = sum(1 for m in _strict_members(params)
                      if book.members.pop(m.lower(), None) is not None)
        if deleted:
            book.member_updated = self._clock()
        return {"count": deleted}

    def add_members(self, params: Params, user: str) -> dict[str, Any]:
        return self._change_members(params, user, adding=True)

    def update_members(self, params: Params, user: str) -> dict[str, Any]:
        return self._change_members(params, user, adding=False)

    def _change_members(self, params: Params, user: str, *, adding: bool) -> dict[str, Any]:
        address = _required(params, "address", 40503)
        members = _members(params)
        names = _aligned(params, "names", len(members))
        new_members = None if adding else _aligned(params, "newMembers", len(members))
        var_sets = _parse_member_vars(params, len(members))
        book = self._owned(address, user)
        now = self._clock()
        seen: set[str] = set()
        invalid: list[str] = []
        reasons: list[str] = []
        count = 0
        for i, member in enumerate(members):
            key = member.lower()
            target = new_members[i] if new_members else member
            reason = None
            if not is_email(member) or not is_email(target) or len(target) > MAX_MEMBER:
                reason = "address invalid"
            elif key in seen or (
                target.lower() != key
                and (target.lower() in book.members or target.lower() in seen)
            ):
                reason = "address duplicate"
            elif not adding and key not in book.members:
                reason = "address not found"
            elif var_sets is not None and var_sets[i] is None:
                reason = "vars invalid"
            seen.add(key)
            if reason is not None:
                invalid.append(member)
                reasons.append(reason)
                continue
            name = names[i] if names and names[i] else None
            new_vars = var_sets[i] if var_sets is not None else None
            existing = book.members.get(key)
            if existing is None:
                book.members[key] = Member(member, name, new_vars or {}, now, now)
            else:
                existing.name = name or existing.name
                if new_vars is not None:
                    existing.vars = new_vars if adding else {**existing.vars, **new_vars}
                if target.lower() != key:
                    book.members = _rekeyed(book.members, key, target.lower())
                    existing.member = target
                existing.updated = now
            seen.add(target.lower())
            count += 1
        if count:
            book.member_updated = now
        return {"count": count, "invalidCount": len(invalid), "invalidAddressList": invalid,
                "reasonList": reasons}

    def _owned(self, alias: str, user: str) -> AddressList:
        book = self._lists.get(alias.strip().lower())
        if book is None or book.owner != user:
            raise ApiError(40517)
        return book


def _rekeyed(items: dict[str, _V], old: str, new: str) -> dict[str, _V]:
    """``items`` with ``old`` renamed ``new`` in place, keeping creation order."""
    return {(new if key == old else key): value for key, value in items.items()}


def _required(params: Params, key: str, code: int) -> str:
    value = params.get(key, "").strip()
    if not value:
        raise ApiError(code)
    return value


def _alias(raw: str, *, empty: int, too_long: int) -> str:
    alias = raw.strip()
    if not alias:
        raise ApiError(empty)
    if len(alias) > MAX_ALIAS:
        raise ApiError(too_long)
    if not is_email(alias):
        raise ApiError(40511)
    return alias


def _text(params: Params, key: str, limit: int, *, empty: int, too_long: int) -> str | None:
    if key not in params:
        return None
    value = params[key].strip()
    if not value:
        raise ApiError(empty)
    if len(value) > limit:
        raise ApiError(too_long)
    return value


def _members(params: Params) -> list[str]:
    raw = _required(params, "members", 40512)
    members = split_list(raw)
    if not members:
        raise ApiError(40514)
    if len(members) > MAX_MEMBERS:
        raise ApiError(40515)
    if any(len(m) > MAX_MEMBER for m in members):
        raise ApiError(40513)
    return members


def _strict_members(params: Params) -> list[str]:
    members = _members(params)
    if not all(is_email(m) for m in members):
        raise ApiError(40518)
    return members


def _aligned(params: Params, key: str, count: int) -> list[str] | None:
    if key not in params:
        return None
    values = [v.strip() for v in params[key].split(";")]
    if len(values) != count:
        raise ApiError(40521, f"{key} count is not equal to member addresses")
    return values


def _parse_member_vars(params: Params, count: int) -> list[dict[str, str] | None] | None:
    """Each member's new variables; None for a member whose vars parse but are not valid."""
    if "vars" not in params:
        return None
    raw = params["vars"].strip()
    if not raw:
        raise ApiError(40520)
    pieces = _split_outside_strings(raw)
    if len(pieces) != count:
        raise ApiError(40521)
    result: list[dict[str, str] | None] = []
    for piece in pieces:
        if len(piece) > MAX_MEMBER_VARS:
            raise ApiError(40531)
        if not piece:
            result.append({})
            continue
        try:
            parsed = json.loads(piece)
        except ValueError:
            raise ApiError(40522) from None
        ok = isinstance(parsed, dict) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in parsed.values()
        )
        result.append({k: str(v) for k, v in parsed.items() if k != "name"} if ok else None)
    return result


def _split_outside_strings(raw: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == ";":
            pieces.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    pieces.append("".join(current).strip())
    return pieces


def _list_json(book: AddressList) -> dict[str, Any]:
    return {
        "gmtCreated": shanghai_time(book.created),
        "gmtUpdated": shanghai_time(book.updated),
        "memberUpdated": shanghai_time(book.member_updated),
        "address": book.address,
        "description": book.description,
        "memberCount": len(book.members),
        "name": book.name,
    }


def _member_json(book: AddressList, member: Member) -> dict[str, Any]:
    data: dict[str, Any] = {
        "gmtCreated": shanghai_time(member.created),
        "gmtUpdated": shanghai_time(member.updated),
        "address": book.address,
        "member": member.member,
    }
    if member.name:
        data["name"] = member.name
    data["vars"] = json.dumps(member.vars, ensure_ascii=False, separators=(",", ":")) \
        if member.vars else ""
    return data
