"""SMS sends (``sendcloud_send_sms``), and what every SMS-sending job has in common.

A send carries the job's stable ``sendRequestId`` on every attempt. A 200 reply is ``sent``, a
311 is ``partial``: the accepted phones are recorded with their smsIds, each refused phone gets
SendCloud's reason, and nothing is resent. A 312 (every phone refused) is a permanent failure
with a reason per phone.
"""

from __future__ import annotations

from collections.abc import Sequence

from producers.chunk_results import RECIPIENT_OUTCOMES
from producers.contract import SEND_SMS_ACTOR, SMS_QUEUE, SMS_RESULTS_STREAM
from worker.jobs.results import (
    Ending,
    chunk_success_record,
    recipients_alike,
    recipients_of_rejection,
    recipients_of_result,
    sms_record,
)
from worker.jobs.runner import JobType, Payload, Record
from worker.sendcloud import errors
from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.models import SmsResult


class SmsFamily(JobType):
    """Jobs that send SMS (or voice) with a sendRequestId and report per phone."""

    stream = SMS_RESULTS_STREAM
    sends_sms = True

    def phones(self, payload: Payload) -> Sequence[str]:
        return [str(payload["phone"])]

    def success(self, payload: Payload, result: SmsResult, *, attempts: int, now: float
                ) -> tuple[str, Record]:
        outcome = "partial" if result.partial else "sent"
        end = Ending(self.kind(payload), outcome, result.status_code, result.message, attempts,
                     now)
        if payload.get("campaign_id") is not None:
            chunk = chunk_success_record(payload, end, self.phones(payload), result)
            if chunk is not None:
                return outcome, chunk
        recipients = recipients_of_result(self.phones(payload), result)
        return outcome, sms_record(payload, end, recipients=recipients, sms_ids=result.sms_ids)

    def failure(self, payload: Payload, end: Ending, error: errors.SendCloudError | None
                ) -> Record:
        phones = self.phones(payload)
        if isinstance(error, errors.RecipientsRejectedError):
            recipients = recipients_of_rejection(phones, error)
        else:
            recipients = recipients_alike(phones, RECIPIENT_OUTCOMES[end.outcome],
                                          end.status_code, end.message)
        return sms_record(payload, end, recipients=recipients)


class SmsJob(SmsFamily):
    actor_name = SEND_SMS_ACTOR
    queue_name = SMS_QUEUE

    def kind(self, payload: Payload) -> str:
        return "sms"

    def phones(self, payload: Payload) -> Sequence[str]:
        return [str(p) for p in payload["phones"]]

    def call(self, client: SendCloudClient, payload: Payload, request_id: str) -> SmsResult:
        return client.send_sms(
            int(payload["template_id"]),
            self.phones(payload),
            payload.get("vars"),
            msg_type=int(payload.get("msg_type") or 0),
            send_request_id=request_id,
            tag=payload.get("tag"),
        )
