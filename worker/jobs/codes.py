"""Verification codes by SMS (``sendcloud_send_code``) and by voice (``sendcloud_send_voice_code``).

Both run on the codes queue so they never wait behind bulk sends, and both carry ``expires_at``:
a code is never sent after it (the job ends as ``expired``), nor retried into a time after it.
A verification's job (``producers.verification``) carries its code sealed; ``prepare`` opens it.
"""

from __future__ import annotations

from producers.contract import CODES_QUEUE, SEND_CODE_ACTOR, SEND_VOICE_CODE_ACTOR
from worker.jobs.runner import Payload
from worker.jobs.sms import SmsFamily
from worker.jobs.verification import unsealed
from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.models import SmsResult
from worker.settings import Settings


class _ExpiringCode(SmsFamily):
    queue_name = CODES_QUEUE

    def expires_at(self, payload: Payload) -> float | None:
        value = payload.get("expires_at")
        return None if value is None else float(value)

    def prepare(self, payload: Payload, settings: Settings) -> Payload:
        return unsealed(payload, settings)


class CodeJob(_ExpiringCode):
    actor_name = SEND_CODE_ACTOR

    def kind(self, payload: Payload) -> str:
        return "code"

    def call(self, client: SendCloudClient, payload: Payload, request_id: str) -> SmsResult:
        sign_id = payload.get("sign_id")
        return client.send_code(
            str(payload["phone"]),
            str(payload["code"]),
            msg_type=int(payload.get("msg_type") or 0),
            sign_id=None if sign_id is None else int(sign_id),
            sign_name=payload.get("sign_name"),
            send_request_id=request_id,
        )


class VoiceCodeJob(_ExpiringCode):
    actor_name = SEND_VOICE_CODE_ACTOR

    def kind(self, payload: Payload) -> str:
        return "voice_code"

    def call(self, client: SendCloudClient, payload: Payload, request_id: str) -> SmsResult:
        return client.send_voice(
            str(payload["phone"]), str(payload["code"]), send_request_id=request_id
        )
