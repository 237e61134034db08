"""The contract between producers and workers: queue, actor and stream names, and payloads.

Workers import this module; it imports nothing of theirs, so a web app can enqueue jobs with
only dramatiq and redis installed. Payloads are plain JSON-able dicts so that any Dramatiq
encoder carries them and a message can be read with redis-cli.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# Queues. Verification codes have their own queue so they never wait behind bulk sends.
CODES_QUEUE = "sendcloud.codes"
SMS_QUEUE = "sendcloud.sms"
MEMBERS_QUEUE = "sendcloud.members"
STATUS_QUEUE = "sendcloud.status"
ALL_QUEUES = (CODES_QUEUE, SMS_QUEUE, MEMBERS_QUEUE, STATUS_QUEUE)

# Actors, by name: producers enqueue by name and never import the worker's functions.
SEND_SMS_ACTOR = "sendcloud_send_sms"
SEND_CODE_ACTOR = "sendcloud_send_code"
SEND_VOICE_CODE_ACTOR = "sendcloud_send_voice_code"
MEMBERS_ACTOR = "sendcloud_members"
POLL_EMAIL_STATUS_ACTOR = "sendcloud_poll_email_status"

ACTOR_QUEUES = {
    SEND_SMS_ACTOR: SMS_QUEUE,
    SEND_CODE_ACTOR: CODES_QUEUE,
    SEND_VOICE_CODE_ACTOR: CODES_QUEUE,
    MEMBERS_ACTOR: MEMBERS_QUEUE,
    POLL_EMAIL_STATUS_ACTOR: STATUS_QUEUE,
}

# Result streams.
SMS_RESULTS_STREAM = "sendcloud:results:sms"
MEMBERS_RESULTS_STREAM = "sendcloud:results:members"
EMAIL_STATUS_STREAM = "sendcloud:results:email_status"
SMS_DELIVERY_STREAM = "sendcloud:results:sms_delivery"
RESULT_STREAMS = (SMS_RESULTS_STREAM, MEMBERS_RESULTS_STREAM, EMAIL_STATUS_STREAM,
                  SMS_DELIVERY_STREAM)

# Every Redis key the service owns starts with this prefix.
KEY_PREFIX = "sendcloud:"

# Sorted set of jobs not yet final, scored by when each should have moved on (Redis time,
# epoch seconds). The reconciler re-drives those left past it: see worker.jobs.reconciler.
RECONCILE_KEY = f"{KEY_PREFIX}reconcile"
#: Every campaign by when it was opened (Redis time): the dashboard's list. Written when a
#: campaign opens; its purge and discard remove it, and readers drop those that expired.
CAMPAIGNS_KEY = f"{KEY_PREFIX}campaigns"
#: How long a freshly enqueued job may wait in its queue before the reconciler looks at it.
DEFAULT_QUEUED_AFTER = 600

Kind = Literal["sms", "code", "voice_code", "members_add", "members_update", "members_delete"]

Outcome = Literal[
    "sent",  # SendCloud accepted every recipient
    "partial",  # 311: some recipients accepted, the rest refused (see failures)
    "duplicate",  # SendCloud had already accepted this sendRequestId
    "failed",  # a permanent error, or retries ran out
    "expired",  # a verification code that could only have gone out after its expiry
    "needs_review",  # a crash left the job in flight beyond SendCloud's 1-hour dedup window
    "done",  # a member job finished
    "cancelled",  # a campaign chunk stopped before it was sent
]


class SmsJob(TypedDict):
    key: str
    template_id: int
    phones: list[str]
    vars: dict[str, str] | None
    msg_type: int
    tag: dict[str, str] | None
    enqueued_at: float
    campaign_id: NotRequired[str]
    chunk_index: NotRequired[int]


class CodeJob(TypedDict):
    key: str
    phone: str
    # An app's own code; a verification's job carries it sealed instead (producers.verification).
    code: NotRequired[str]
    sealed_code: NotRequired[str]
    verification_id: NotRequired[str]
    sign_id: int | None
    sign_name: str | None
    msg_type: int
    enqueued_at: float  # Redis time when the job was reserved
    expires_at: float  # epoch seconds, Redis time; never sent after this
    expires_in: NotRequired[float]  # seconds from enqueued_at to expires_at


class VoiceCodeJob(TypedDict):
    key: str
    phone: str
    code: NotRequired[str]
    sealed_code: NotRequired[str]
    verification_id: NotRequired[str]
    enqueued_at: float
    expires_at: float
    expires_in: NotRequired[float]


class MembersJob(TypedDict):
    key: str
    op: Literal["add", "update", "delete"]
    address: str
    members: list[str]
    new_members: list[str] | None
    names: list[str] | None
    vars: list[dict[str, str]] | None
    enqueued_at: float
    part: NotRequired[int]  # index of this request when a call was split at 1000 members
    parts: NotRequired[int]
