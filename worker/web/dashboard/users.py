"""The dashboard's users, in Redis: ``sendcloud:web:user:<name>`` is a hash of the Argon2 hash
of the password (argon2-cffi's defaults) and the role; ``sendcloud:web:users`` the set of names.

Roles: ``viewer`` reads every page; ``operator`` may also act (cancel a campaign, replay or
purge dead letters). The password itself is never stored, logged or shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from producers.contract import KEY_PREFIX

USERS_KEY = f"{KEY_PREFIX}web:users"
USER_PREFIX = f"{KEY_PREFIX}web:user:"
ROLES = ("viewer", "operator")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024

_hasher = PasswordHasher()
#: Verified against when the user is unknown, so a wrong name costs the same time as a wrong
#: password and does not tell which names exist.
_DUMMY_HASH = _hasher.hash("not a password of anyone")

# KEYS: the user's hash, the set of names. ARGV: name, password hash, role. 0 if it exists.
_ADD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'password_hash', ARGV[2], 'role', ARGV[3],
    'created_at', t[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


class UserError(ValueError):
    """A refused user change: ``field`` and ``rule`` name what was wrong."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def can_act(self) -> bool:
        return self.role == "operator"


def user_key(name: str) -> str:
    return USER_PREFIX + name


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise UserError("name", "must be 1 to 64 letters, digits, '_', '.', '@' or '-', "
                        "starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError("role", f"must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def add_user(client: redis.Redis, name: str, password: str, role: str) -> User:
    """Store a new user; raises :class:`UserError` if one of that name exists."""
    check_name(name)
    check_role(role)
    digest = _hasher.hash(check_password(password))
    if not client.eval(_ADD_LUA, 2, user_key(name), USERS_KEY, name, digest, role):
        raise UserError("name", f"a user named {name!r} exists; remove it first")
    return User(name, role)


def remove_user(client: redis.Redis, name: str) -> bool:
    """Delete the user (their open sessions end at their next request); False if unknown."""
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(user_key(name))
        pipe.srem(USERS_KEY, name)
        deleted, _ = pipe.execute()
    return bool(deleted)


def get_user(client: redis.Redis, name: str) -> User | None:
    role = client.hget(user_key(name), "role")
    if role is None:
        return None
    return User(name, role.decode() if isinstance(role, bytes) else str(role))


def list_users(client: redis.Redis) -> list[User]:
    names = sorted(n.decode() if isinstance(n, bytes) else str(n)
                   for n in client.smembers(USERS_KEY))
    found = [get_user(client, name) for name in names]
    return [user for user in found if user is not None]


def authenticate(client: redis.Redis, name: str, password: str) -> User | None:
    """The user if ``password`` is theirs, else None (same cost for an unknown name)."""
    fields: list[bytes | None] = [None, None]
    if NAME.fullmatch(name):
        fields = client.hmget(user_key(name), ["password_hash", "role"])  # type: ignore[assignment]
    digest, role = fields
    try:
        _hasher.verify(digest.decode() if digest else _DUMMY_HASH, password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        return None
    if digest is None or role is None:
        return None
    return User(name, role.decode())
