"""Verification codes as a product: start, check and cancel, with guardrails against SMS pumping.

``start_verification(phone)`` makes a code with :mod:`secrets`, keeps only a keyed hash of it
(HMAC-SHA256 with ``SENDCLOUD_VERIFY_SECRET``) and enqueues its send; ``check_verification``
compares in constant time, at most ``max_attempts`` times, and approves once.

The code is never returned, logged, stored in clear or put on a result stream. The send job
carries it *sealed*: ``(code + pad) mod 10^length``, where ``pad`` is a PRF of the secret and
the verification id (HMAC-SHA256 as a one-time pad), so the queued message and the job's
record reveal nothing without the secret; the worker, which has it, unseals just before the
call (:func:`unseal`).

Choices the issue left open:

- **A resend sends the same code** and keeps the verification, its expiry and its attempt
  count: a late first SMS still works, a voice call (``channel="voice"``) reads the code the
  SMS carried, and asking again never buys more guesses or more time.
- **Limits are rolling windows** (an hour, 24 hours) on Redis's clock. A rolling day under
  SendCloud's per-day limit (498) keeps every calendar day under it too.
- Only sends that went ahead count against the limits; a refused request costs nothing.
- After ``max_attempts`` wrong codes the verification is locked until it expires: a new start
  for that phone is refused (``locked``) rather than handing out fresh guesses.

Everything a decision needs happens in one Lua script per call (:data:`START_LUA`,
:data:`CHECK_LUA`), so concurrent starts or checks cannot both pass a limit or both approve.
Keys (all under ``sendcloud:verify:``): ``v:<phone>`` (the verification), ``phone:<phone>``,
``client:<sha256>``, ``range:<prefix>`` and ``global`` (send times, sorted sets), ``breaker``,
``stats:<minute>`` (starts and approvals, for the approval rate) and ``counts`` (counters the
worker exposes as metrics).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from producers import validation as v
from producers.campaign import results_maxlen
from producers.contract import (
    KEY_PREFIX,
    SEND_CODE_ACTOR,
    SEND_VOICE_CODE_ACTOR,
    SMS_RESULTS_STREAM,
)
from producers.errors import SettingError, VerificationRefused

if TYPE_CHECKING:
    from producers.producer import Producer

Channel = Literal["sms", "voice"]
CheckStatus = Literal["approved", "wrong_code", "expired", "too_many_attempts", "not_found"]

VERIFY_PREFIX = f"{KEY_PREFIX}verify:"
COUNTS_KEY = f"{VERIFY_PREFIX}counts"
BREAKER_KEY = f"{VERIFY_PREFIX}breaker"
GLOBAL_KEY = f"{VERIFY_PREFIX}global"
STATS_PREFIX = f"{VERIFY_PREFIX}stats:"
#: How long a finished verification stays readable (status, "already used") after its expiry.
KEEP_AFTER_EXPIRY = 3600


@dataclass(frozen=True)
class VerifySettings:
    """Every limit, with its ``SENDCLOUD_VERIFY_*`` variable (the field name, upper-cased)."""

    secret: str = ""
    ttl: int = 600  # seconds a code is valid
    max_attempts: int = 5  # wrong codes before the verification locks
    cooldown: int = 60  # seconds between two sends to one phone
    phone_per_hour: int = 5
    phone_per_day: int = 10  # keep under the account's daily limit: SendCloud answers 498 past it
    client_per_hour: int = 10  # per client_id (an IP, a device, a session)
    client_per_day: int = 50
    range_digits: int = 7  # a number range: its first digits
    range_per_hour: int = 50
    range_per_day: int = 200
    global_per_minute: int = 600  # the breaker opens above this many sends a minute
    approval_floor: float = 0.2  # ... or when fewer than this share of verifications is approved
    approval_window: int = 1800  # over the verifications started this long ago
    approval_grace: int = 120  # leaving out the newest, whose users are still typing
    approval_min_started: int = 100  # and only once that many were started
    breaker_seconds: int = 600  # how long the breaker stays open
    sign_id: int | None = None  # SMS signature, when start_verification is given none
    sign_name: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> VerifySettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f"SENDCLOUD_VERIFY_{f.name.upper()}"
            raw = env.get(name, "").strip()
            if not raw:
                continue
            if f.name in ("secret", "sign_name"):
                values[f.name] = raw
            elif f.name == "approval_floor":
                values[f.name] = _number(name, raw, float, 0.0, 1.0)
            else:
                values[f.name] = _number(name, raw, int, 0 if f.name == "cooldown" else 1, None)
        settings = cls(**values)
        if settings.range_digits > 11:
            raise SettingError("SENDCLOUD_VERIFY_RANGE_DIGITS", "must be at most 11")
        return settings

    def require_secret(self) -> bytes:
        if len(self.secret) < 16:
            raise SettingError(
                "SENDCLOUD_VERIFY_SECRET",
                "is required (at least 16 characters) to hash and seal verification codes",
            )
        return self.secret.encode()


def _number(name: str, raw: str, kind: type, low: float, high: float | None) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingError(name, f"must be a number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingError(name, f"must be {bound}, got {raw!r}")
    return value


# -- the code: made, sealed for the worker, hashed for the check -------------------------------


def new_code(length: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(length))


def _pad(secret: bytes, verification_id: str, length: int) -> int:
    digest = hmac.new(secret, b"seal\0" + verification_id.encode(), hashlib.sha256).digest()
    # 64 bits reduced mod 10^6 or less: a bias under 10^-13, nothing an observer can use.
    return int.from_bytes(digest[:8], "big") % 10**length


def seal(secret: bytes, verification_id: str, code: str) -> str:
    mod = 10 ** len(code)
    return str((int(code) + _pad(secret, verification_id, len(code))) % mod).zfill(len(code))


def unseal(secret: bytes, verification_id: str, sealed: str) -> str:
    """The code a sealed job carries; the worker calls this just before the send."""
    mod = 10 ** len(sealed)
    return str((int(sealed) - _pad(secret, verification_id, len(sealed))) % mod).zfill(len(sealed))


def code_hash(secret: bytes, verification_id: str, code: str) -> str:
    message = b"check\0" + verification_id.encode() + b"\0" + code.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def client_digest(client_id: str) -> str:
    """A client id is often an IP address: only its hash is stored."""
    return hashlib.sha256(client_id.encode()).hexdigest()[:32]


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    id: str
    phone: str
    channel: Channel
    expires_at: datetime  # the code is refused after this
    resend_at: datetime  # the earliest time a resend to this phone is allowed
    send_key: str  # the idempotency key of this send's job (its result: producers.get_result)
    resent: bool  # True when an earlier, still valid verification was reused


@dataclass(frozen=True)
class CheckResult:
    status: CheckStatus
    attempts_left: int
    verification_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.status == "approved"


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the scripts ----------------------------------------------------------------------------

# Shared: Redis's clock, and the approval share of the verifications started in the window.
_COMMON_LUA = """
local function sendcloud_now()
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: verification, phone sends, client sends, range sends, global sends, breaker, counts,
#       stream.
# ARGV: new id, check hash, sealed code, channel, ttl, cooldown, phone/h, phone/d, client/h,
#       client/d, range/h, range/d, global/min, floor, window, grace, min started,
#       breaker seconds, has client (1/0), stream maxlen, keep after expiry, stats prefix.
# Replies {'refused', rule, retry_after} or {'started'|'resent', id, sealed, expires_at,
# resend_at, sends (this one's number), seconds left}.
START_LUA = _COMMON_LUA + """
local now = sendcloud_now()
local channel = ARGV[4]
local function refuse(rule, retry_after)
    redis.call('HINCRBY', KEYS[7], 'refused:' .. channel .. ':' .. rule, 1)
    return {'refused', rule, string.format('%.3f', math.max(retry_after, 0.001))}
end
local function trip(reason, message)
    local seconds = tonumber(ARGV[18])
    if redis.call('SET', KEYS[6], reason, 'EX', seconds, 'NX') then
        local t = redis.call('TIME')
        redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[20], '*', 'key', KEYS[6],
            'kind', 'alert', 'outcome', 'verifications_refused', 'status_code', '',
            'message', message, 'reason', reason, 'refused_seconds', seconds,
            'finished_at', t[1] .. '.' .. string.format('%06d', t[2]))
    end
    return refuse('breaker', seconds)
end
-- A window's limit: nil when under it, else the seconds until its oldest send leaves it.
local function over(key, span, limit)
    local oldest = redis.call('ZRANGEBYSCORE', key, now - span, '+inf', 'WITHSCORES', 'LIMIT',
        0, 1)
    if #oldest == 0 then return nil end
    if redis.call('ZCOUNT', key, now - span, '+inf') < limit then return nil end
    return tonumber(oldest[2]) + span - now
end

local v = redis.call('HMGET', KEYS[1], 'id', 'status', 'expires_at', 'sealed', 'sends')
local live = v[1] and tonumber(v[3]) > now
if live and v[2] == 'locked' then return refuse('locked', tonumber(v[3]) - now) end
local reuse = live and v[2] == 'pending'

local open = redis.call('PTTL', KEYS[6])
if open > 0 then return refuse('breaker', open / 1000) end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - 60)
if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[13]) then
    return trip('rate', 'verification sends exceeded ' .. ARGV[13] .. ' a minute')
end
local started, approved = 0, 0
local first = math.floor((now - tonumber(ARGV[15])) / 60)
local last = math.floor((now - tonumber(ARGV[16])) / 60)
for minute = first, last do
    local s = redis.call('HMGET', ARGV[22] .. minute, 'started', 'approved')
    started = started + tonumber(s[1] or '0')
    approved = approved + tonumber(s[2] or '0')
end
if started >= tonumber(ARGV[17]) and approved / started < tonumber(ARGV[14]) then
    return trip('approval', string.format('only %d of %d verifications were approved', approved,
        started))
end

local windows = {{KEYS[2], 3600, ARGV[7], 'phone_hour'}, {KEYS[2], 86400, ARGV[8], 'phone_day'},
    {KEYS[4], 3600, ARGV[11], 'range_hour'}, {KEYS[4], 86400, ARGV[12], 'range_day'}}
if ARGV[19] == '1' then
    windows[#windows + 1] = {KEYS[3], 3600, ARGV[9], 'client_hour'}
    windows[#windows + 1] = {KEYS[3], 86400, ARGV[10], 'client_day'}
end
local previous = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #previous > 0 and now - tonumber(previous[2]) < tonumber(ARGV[6]) then
    return refuse('cooldown', tonumber(previous[2]) + tonumber(ARGV[6]) - now)
end
for _, w in ipairs(windows) do
    local wait = over(w[1], w[2], tonumber(w[3]))
    if wait then return refuse(w[4], wait) end
end

local id, sealed, expires_at, sends
if reuse then
    id, sealed, expires_at = v[1], v[4], tonumber(v[3])
    sends = redis.call('HINCRBY', KEYS[1], 'sends', 1)
    redis.call('HSET', KEYS[1], 'channel', channel, 'last_send_at', now)
    redis.call('HINCRBY', KEYS[7], channel .. ':resent', 1)
else
    id, sealed, expires_at, sends = ARGV[1], ARGV[3], now + tonumber(ARGV[5]), 1
    local minute = math.floor(now / 60)
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'id', id, 'check', ARGV[2], 'sealed', sealed,
        'status', 'pending', 'channel', channel, 'attempts', 0, 'sends', 1,
        'created_at', now, 'expires_at', expires_at, 'last_send_at', now, 'minute', minute)
    redis.call('HINCRBY', ARGV[22] .. minute, 'started', 1)
    redis.call('EXPIRE', ARGV[22] .. minute, tonumber(ARGV[15]) + 120)
    redis.call('HINCRBY', KEYS[7], channel .. ':started', 1)
end
redis.call('EXPIREAT', KEYS[1], math.ceil(expires_at + tonumber(ARGV[21])))
local member = string.format('%.6f', now) .. ':' .. id
for i = 2, 5 do
    if i ~= 3 or ARGV[19] == '1' then
        redis.call('ZADD', KEYS[i], now, member)
        redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - 86400)
        redis.call('EXPIRE', KEYS[i], 86400)
    end
end
return {reuse and 'resent' or 'started', id, sealed, string.format('%.6f', expires_at),
    string.format('%.6f', now + tonumber(ARGV[6])), sends, string.format('%.3f', expires_at - now)}
"""

# KEYS: verification, counts. ARGV: id, candidate hash, max attempts, stats prefix.
# Replies {status, attempts left, id}; 'retry' when the verification changed since its id was
# read.
CHECK_LUA = _COMMON_LUA + """
local now = sendcloud_now()
local v = redis.call('HMGET', KEYS[1], 'id', 'check', 'status', 'expires_at', 'attempts',
    'minute', 'channel')
if not v[1] then return {'not_found', 0, ''} end
if v[1] ~= ARGV[1] then return {'retry', 0, v[1]} end
local max = tonumber(ARGV[3])
local attempts = tonumber(v[5])
if v[3] == 'approved' or v[3] == 'cancelled' then return {'not_found', 0, v[1]} end
if now >= tonumber(v[4]) then return {'expired', 0, v[1]} end
if v[3] == 'locked' or attempts >= max then return {'too_many_attempts', 0, v[1]} end
-- Constant time: every byte is compared whatever the first difference.
local stored, given = v[2], ARGV[2]
local diff = (#stored == #given) and 0 or 1
for i = 1, math.min(#stored, #given) do
    diff = bit.bor(diff, bit.bxor(string.byte(stored, i), string.byte(given, i)))
end
if diff == 0 then
    redis.call('HSET', KEYS[1], 'status', 'approved', 'approved_at', now)
    redis.call('HINCRBY', ARGV[4] .. v[6], 'approved', 1)
    redis.call('HINCRBY', KEYS[2], v[7] .. ':approved', 1)
    return {'approved', max - attempts, v[1]}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts >= max then
    redis.call('HSET', KEYS[1], 'status', 'locked')
    redis.call('HINCRBY', KEYS[2], v[7] .. ':locked', 1)
    return {'too_many_attempts', 0, v[1]}
end
return {'wrong_code', max - attempts, v[1]}
"""

# KEYS: verification. ARGV: id ('' for whichever is pending). Reply 1 when one was cancelled.
CANCEL_LUA = """
local v = redis.call('HMGET', KEYS[1], 'id', 'status')
if not v[1] or v[2] ~= 'pending' or (ARGV[1] ~= '' and ARGV[1] ~= v[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', 'cancelled')
return 1
"""


def verification_key(phone: str) -> str:
    return f"{VERIFY_PREFIX}v:{phone}"


# -- the API --------------------------------------------------------------------------------


class Verifier:
    """Verifications on ``producer``'s Redis, sent through its broker."""

    def __init__(self, producer: Producer, settings: VerifySettings | None = None) -> None:
        self.producer = producer
        self.redis = producer.redis
        self.settings = settings or VerifySettings.from_env()
        self._start = self.redis.register_script(START_LUA)
        self._check = self.redis.register_script(CHECK_LUA)
        self._cancel = self.redis.register_script(CANCEL_LUA)

    def start(
        self,
        phone: str,
        *,
        channel: Channel = "sms",
        client_id: str | None = None,
        sign_id: int | None = None,
        sign_name: str | None = None,
        length: int = 6,
        ttl: int | None = None,
    ) -> Verification:
        """Send a code to ``phone`` (a new verification, or the pending one's code again)."""
        s = self.settings
        secret = s.require_secret()
        phone = v.validate_phone(phone, "phone")
        if channel not in ("sms", "voice"):
            raise v.fail("channel", "must be 'sms' or 'voice'", channel)
        length = v.validate_choice(length, "length", (4, 5, 6))
        ttl = s.ttl if ttl is None else v.validate_positive_int(ttl, "ttl")
        if client_id is not None and (not isinstance(client_id, str) or not client_id.strip()):
            raise v.fail("client_id", "must be a non-empty string", client_id)
        if channel == "sms":
            sign_id, sign_name = self._signature(sign_id, sign_name)
        verification_id = uuid.uuid4().hex
        code = new_code(length)
        reply = self._start(
            keys=[
                verification_key(phone),
                f"{VERIFY_PREFIX}phone:{phone}",
                f"{VERIFY_PREFIX}client:{client_digest(client_id or '')}",
                f"{VERIFY_PREFIX}range:{phone[: s.range_digits]}",
                GLOBAL_KEY, BREAKER_KEY, COUNTS_KEY, SMS_RESULTS_STREAM,
            ],
            args=[
                verification_id, code_hash(secret, verification_id, code),
                seal(secret, verification_id, code), channel, ttl, s.cooldown,
                s.phone_per_hour, s.phone_per_day, s.client_per_hour, s.client_per_day,
                s.range_per_hour, s.range_per_day, s.global_per_minute, s.approval_floor,
                s.approval_window, s.approval_grace, s.approval_min_started, s.breaker_seconds,
                int(client_id is not None), results_maxlen(), KEEP_AFTER_EXPIRY, STATS_PREFIX,
            ],
        )  # fmt: skip
        del code
        outcome, *rest = [_text(x) for x in reply]
        if outcome == "refused":
            rule, retry_after = rest
            raise VerificationRefused(rule, float(retry_after))
        verification_id, sealed, expires_at, resend_at, sends, left = rest
        send_key = self._send(phone, channel, f"verify-{verification_id}-{sends}",
                              verification_id, sealed, float(left), sign_id, sign_name)
        return Verification(
            id=verification_id, phone=phone, channel=channel,
            expires_at=_time(float(expires_at)), resend_at=_time(float(resend_at)),
            send_key=send_key, resent=outcome == "resent",
        )  # fmt: skip

    def check(self, phone: str, code: str, *, verification_id: str | None = None) -> CheckResult:
        secret = self.settings.require_secret()
        phone = v.validate_phone(phone, "phone")
        if not isinstance(code, str):
            raise v.fail("code", "must be a string", code)
        key = verification_key(phone)
        for _ in range(3):  # a verification replaced between the read and the script: again
            current = self.redis.hget(key, "id")
            if current is None:
                return CheckResult("not_found", 0, None)
            current_id = _text(current)
            if verification_id is not None and verification_id != current_id:
                return CheckResult("not_found", 0, None)
            # A code of another shape is hashed like any other: it just does not match.
            status, left, found = (
                _text(x) for x in self._check(
                    keys=[key, COUNTS_KEY],
                    args=[current_id, code_hash(secret, current_id, code.strip()),
                          self.settings.max_attempts, STATS_PREFIX],
                )
            )  # fmt: skip
            if status != "retry":
                return CheckResult(status, int(left), found or None)  # type: ignore[arg-type]
        return CheckResult("not_found", 0, None)

    def cancel(self, phone: str, *, verification_id: str | None = None) -> bool:
        """Stop the pending verification of ``phone``: its code is refused from now on."""
        phone = v.validate_phone(phone, "phone")
        return bool(self._cancel(keys=[verification_key(phone)], args=[verification_id or ""]))

    def status(self, phone: str) -> dict[str, Any] | None:
        """What is known of ``phone``'s verification, without its hash or sealed code."""
        phone = v.validate_phone(phone, "phone")
        raw = self.redis.hgetall(verification_key(phone))
        if not raw:
            return None
        f = {_text(k): _text(val) for k, val in raw.items()}
        attempts = int(f.get("attempts", "0"))
        return {
            "id": f.get("id"),
            "phone": phone,
            "status": f.get("status"),
            "channel": f.get("channel"),
            "sends": int(f.get("sends", "0")),
            "attempts_left": max(0, self.settings.max_attempts - attempts),
            "created_at": _time(float(f["created_at"])).isoformat(),
            "expires_at": _time(float(f["expires_at"])).isoformat(),
            "last_send_at": _time(float(f["last_send_at"])).isoformat(),
        }

    def _signature(
        self, sign_id: int | None, sign_name: str | None
    ) -> tuple[int | None, str | None]:
        if sign_id is None and sign_name is None:
            sign_id, sign_name = self.settings.sign_id, self.settings.sign_name
        if sign_id is not None:
            return v.validate_positive_int(sign_id, "sign_id"), None
        if isinstance(sign_name, str) and sign_name.strip():
            return None, sign_name
        raise v.fail("sign_id", "sign_id or sign_name is required for an SMS code "
                     "(or set SENDCLOUD_VERIFY_SIGN_ID)")

    def _send(self, phone: str, channel: str, key: str, verification_id: str, sealed: str,
              seconds_left: float, sign_id: int | None, sign_name: str | None) -> str:
        # One job per send, keyed by the verification and the send's number; the same start
        # retried by an app after a lost reply is refused by the cooldown, never doubled.
        payload: dict[str, Any] = {
            "key": "", "phone": phone, "verification_id": verification_id,
            "sealed_code": sealed, "enqueued_at": 0.0, "expires_at": 0.0,
            "expires_in": max(seconds_left, 1.0),
        }  # fmt: skip
        if channel == "voice":
            return self.producer._submit("voice_code", SEND_VOICE_CODE_ACTOR, key, [payload])
        payload.update(sign_id=sign_id, sign_name=sign_name, msg_type=0)
        return self.producer._submit("code", SEND_CODE_ACTOR, key, [payload])



def approval(client: Any, settings: VerifySettings) -> tuple[int, int]:
    """(started, approved) over the breaker's window, on Redis's clock: the share the breaker
    compares with ``approval_floor``."""
    seconds, micros = client.time()
    now = float(seconds) + float(micros) / 1e6
    first = int((now - settings.approval_window) // 60)
    last = int((now - settings.approval_grace) // 60)
    pipe = client.pipeline(transaction=False)
    for minute in range(first, last + 1):
        pipe.hmget(f"{STATS_PREFIX}{minute}", "started", "approved")
    started = approved = 0
    for s, a in pipe.execute():
        started += int(s or 0)
        approved += int(a or 0)
    return started, approved
