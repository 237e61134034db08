"""Address-list member changes (``sendcloud_members``): add, update or delete up to 1000 members.

Member calls carry no sendRequestId. Adding (which overwrites an existing member, per the
docs), updating values and deleting are safe to repeat, so a call whose reply was lost is simply
retried; the record's ``count`` is what the deciding reply said. A rename (``new_members``) is
the exception: if the first call took effect, its retry finds the old address gone and SendCloud
reports it "address not found", so the record says ``count`` 0 with that reason although the
rename happened. Check the list before renaming again.
"""

from __future__ import annotations

from producers.contract import MEMBERS_ACTOR, MEMBERS_QUEUE, MEMBERS_RESULTS_STREAM
from worker.jobs.results import Ending, members_record
from worker.jobs.runner import JobType, Payload, Record
from worker.sendcloud import errors
from worker.sendcloud.client import SendCloudClient
from worker.sendcloud.models import MemberOpResult

OPS = ("add", "update", "delete")


class MembersJob(JobType):
    actor_name = MEMBERS_ACTOR
    queue_name = MEMBERS_QUEUE
    stream = MEMBERS_RESULTS_STREAM
    sends_sms = False

    def kind(self, payload: Payload) -> str:
        return f"members_{payload.get('op')}"

    def call(self, client: SendCloudClient, payload: Payload, request_id: str) -> MemberOpResult:
        op, address, members = payload["op"], str(payload["address"]), list(payload["members"])
        if op == "add":
            return client.add_members(address, members, names=payload.get("names"),
                                      vars=payload.get("vars"))
        if op == "update":
            return client.update_members(address, members, new_members=payload.get("new_members"),
                                         names=payload.get("names"), vars=payload.get("vars"))
        if op == "delete":
            return client.delete_members(address, members)
        raise errors.InvalidRequestError(f"op: must be one of {', '.join(OPS)}, got {op!r}")

    def success(self, payload: Payload, result: MemberOpResult, *, attempts: int, now: float
                ) -> tuple[str, Record]:
        end = Ending(self.kind(payload), "done", 200, "", attempts, now)
        return "done", members_record(payload, end, result)

    def failure(self, payload: Payload, end: Ending, error: errors.SendCloudError | None
                ) -> Record:
        return members_record(payload, end)
