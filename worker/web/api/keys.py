"""API keys: a random secret shown once, stored as its SHA-256 digest, with one scope each.

A key reads ``scj_<id>_<secret>``: ``id`` (12 hex digits) finds its record, ``secret`` is 256
random bits. Only the digest of the whole key is kept, in ``sendcloud:api:key:<id>`` (with
its name, scope, ``created_at`` and ``last_used``, both Redis's ``TIME``); the set
``sendcloud:api:keys`` lists the ids. A plain SHA-256 is enough here, unlike for passwords: a
key of 256 random bits cannot be guessed from its digest however fast the hash, and a slow
hash would cost every request its CPU time.

Scopes: ``send`` enqueues (sends, codes, members, verifications, campaigns), ``read`` reads
(jobs, campaigns' status and reports), ``admin`` may do both and manage the keys.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis

from producers.contract import KEY_PREFIX
from producers.errors import ProducerValidationError

Scope = Literal["send", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("send", "read", "admin")

KEYS_SET = f"{KEY_PREFIX}api:keys"
KEY_PREFIX_RECORD = f"{KEY_PREFIX}api:key:"
TOKEN_PREFIX = "scj_"
_TOKEN = re.compile(r"scj_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_NAME = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?")

_NOW_LUA = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', t[2])
"""
# KEYS: the record, the set of ids. ARGV: digest, name, scope, id. Nothing if the id is taken.
_CREATE_LUA = _NOW_LUA + """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'name', ARGV[2], 'scope', ARGV[3],
           'created_at', now)
redis.call('SADD', KEYS[2], ARGV[4])
return now
"""
# KEYS: the record. ARGV: the presented key's digest. The record's fields when it matches (and
# last_used set), else nothing; a revoked key's record is gone, so it never comes back.
_VERIFY_LUA = _NOW_LUA + """
local digest = redis.call('HGET', KEYS[1], 'digest')
if not digest or digest ~= ARGV[1] then return false end
redis.call('HSET', KEYS[1], 'last_used', now)
return redis.call('HMGET', KEYS[1], 'name', 'scope', 'created_at', 'last_used')
"""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    scope: Scope
    created_at: float
    last_used: float | None = None

    def grants(self, scope: Scope) -> bool:
        return self.scope == scope or self.scope == "admin"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scope": self.scope,
                "created_at": self.created_at, "last_used": self.last_used}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def record_key(key_id: str) -> str:
    return KEY_PREFIX_RECORD + key_id


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ProducerValidationError(
            "name", "must be 1-64 printable ASCII characters, not starting or ending in a space")
    return name


def validate_scope(scope: object) -> Scope:
    if scope not in SCOPES:
        raise ProducerValidationError("scope", f"must be one of {', '.join(SCOPES)}")
    return scope


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _key(key_id: str, name: Any, scope: Any, created_at: Any, last_used: Any) -> ApiKey:
    used = _text(last_used)
    return ApiKey(id=key_id, name=_text(name), scope=cast(Scope, _text(scope)),
                  created_at=float(_text(created_at)), last_used=float(used) if used else None)


class KeyStore:
    """The API keys in Redis, through an asyncio client (the web process's)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._create = client.register_script(_CREATE_LUA)
        self._verify = client.register_script(_VERIFY_LUA)

    async def create(self, name: object, scope: object) -> tuple[ApiKey, str]:
        """A new key: its record and the key itself, which is never stored nor shown again."""
        checked_name, checked_scope = validate_name(name), validate_scope(scope)
        while True:  # an id already taken (one chance in 2**48 per key) draws another
            key_id = secrets.token_hex(6)
            token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            created = await self._create(keys=[record_key(key_id), KEYS_SET],
                                         args=[digest(token), checked_name, checked_scope, key_id])
            if created:
                return _key(key_id, checked_name, checked_scope, created, None), token

    async def verify(self, token: str) -> ApiKey | None:
        """The key ``token`` is, when it is one and not revoked (its ``last_used`` set now)."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key_id = match.group(1)
        presented = digest(token)
        reply = await self._verify(keys=[record_key(key_id)], args=[presented])
        if not reply:
            return None
        return _key(key_id, *reply)

    async def list(self) -> list[ApiKey]:
        ids = sorted(_text(i) for i in await self.client.smembers(KEYS_SET))
        async with self.client.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hmget(record_key(key_id), ["name", "scope", "created_at", "last_used"])
            rows = await pipe.execute()
        return [_key(key_id, *row) for key_id, row in zip(ids, rows, strict=True)
                if row[1] is not None]

    async def revoke(self, key_id: str) -> bool:
        """Remove key ``key_id`` at once; False when there was none (or it was revoked)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(record_key(key_id))
            pipe.srem(KEYS_SET, key_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)
