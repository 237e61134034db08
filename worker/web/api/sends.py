"""Single jobs and verifications: SMS, codes, voice codes, member changes, a job's result.

Each POST is one producers call with the body's fields as its arguments, the
``Idempotency-Key`` header as its ``idempotency_key``; the answer is 202 with the job's key
(``GET /v1/jobs/{key}`` reads its result). A repeat with the same key and body answers the
same key and enqueues nothing new once a worker has taken the job; the same key with another
body is a 409.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from producers import Producer
from worker.web.api.keys import KeyStore
from worker.web.api.routing import (
    ApiError,
    ApiRoute,
    Endpoint,
    blocking,
    idempotency_key,
    json_object,
    no_idempotency_key,
)

SMS_FIELDS = ("template_id", "phones", "vars", "msg_type", "tag")
CODE_FIELDS = ("phone", "code", "sign_id", "sign_name", "msg_type", "expires_in")
VOICE_FIELDS = ("phone", "code", "expires_in")
MEMBER_FIELDS = {
    "add": ("address", "members", "names", "vars"),
    "update": ("address", "members", "new_members", "names", "vars"),
    "delete": ("address", "members"),
}
VERIFY_FIELDS = ("phone", "channel", "client_id", "sign_id", "sign_name", "length", "ttl")
CHECK_FIELDS = ("phone", "code", "verification_id")
CANCEL_FIELDS = ("phone", "verification_id")
_USE_VERIFICATION = "a repeated start within a code's life sends the same code again"


def _present(body: dict[str, Any]) -> dict[str, Any]:
    """JSON null means "not given": the producers' own default applies."""
    return {name: value for name, value in body.items() if value is not None}


def accepted(key: str) -> JSONResponse:
    return JSONResponse({"key": key, "result": f"/v1/jobs/{key}"}, status_code=202)


def send_routes(producer: Producer, keys: KeyStore) -> list[ApiRoute]:
    async def send_sms(request: Request) -> Response:
        body = _present(await json_object(request, SMS_FIELDS, ("template_id", "phones")))
        key = await blocking(producer.send_sms, body.pop("template_id"), body.pop("phones"),
                             idempotency_key=idempotency_key(request), **body)
        return accepted(key)

    async def send_code(request: Request) -> Response:
        body = _present(await json_object(request, CODE_FIELDS, ("phone", "code")))
        key = await blocking(producer.send_code, body.pop("phone"), body.pop("code"),
                             idempotency_key=idempotency_key(request), **body)
        return accepted(key)

    async def send_voice_code(request: Request) -> Response:
        body = _present(await json_object(request, VOICE_FIELDS, ("phone", "code")))
        key = await blocking(producer.send_voice_code, body.pop("phone"), body.pop("code"),
                             idempotency_key=idempotency_key(request), **body)
        return accepted(key)

    def member_change(op: str) -> Endpoint:
        call = {"add": producer.add_members, "update": producer.update_members,
                "delete": producer.delete_members}[op]

        async def change_members(request: Request) -> Response:
            body = _present(await json_object(request, MEMBER_FIELDS[op],
                                              ("address", "members")))
            key = await blocking(call, body.pop("address"), body.pop("members"),
                                 idempotency_key=idempotency_key(request), **body)
            return accepted(key)

        change_members.__name__ = f"{op}_members"
        return change_members

    async def start_verification(request: Request) -> Response:
        no_idempotency_key(request, _USE_VERIFICATION)
        body = _present(await json_object(request, VERIFY_FIELDS, ("phone",)))
        started = await blocking(producer.start_verification, body.pop("phone"), **body)
        return JSONResponse({
            "id": started.id, "phone": started.phone, "channel": started.channel,
            "expires_at": started.expires_at.isoformat(),
            "resend_at": started.resend_at.isoformat(),
            "send_key": started.send_key, "resent": started.resent,
        }, status_code=201)  # fmt: skip

    async def check_verification(request: Request) -> Response:
        no_idempotency_key(request, "a check is answered from the verification's own record")
        body = _present(await json_object(request, CHECK_FIELDS, ("phone", "code")))
        result = await blocking(producer.check_verification, body.pop("phone"),
                                body.pop("code"), **body)
        return JSONResponse({"status": result.status, "attempts_left": result.attempts_left,
                             "verification_id": result.verification_id})

    async def cancel_verification(request: Request) -> Response:
        no_idempotency_key(request, "cancelling twice is harmless")
        body = _present(await json_object(request, CANCEL_FIELDS, ("phone",)))
        cancelled = await blocking(producer.cancel_verification, body.pop("phone"), **body)
        return JSONResponse({"cancelled": cancelled})

    async def get_job(request: Request) -> Response:
        key = request.path_params["key"]
        record = await blocking(producer.get_record, key)
        if record is None:
            raise ApiError(404, "key", "names no job (never enqueued, or expired)")
        if record.get("result") is not None:
            # get_result adds each recipient's delivery receipt to the final record.
            record["result"] = await blocking(producer.get_result, key)
        return JSONResponse(record)

    return [
        ApiRoute("/sms", send_sms, methods=["POST"], scope="send", keys=keys),
        ApiRoute("/codes", send_code, methods=["POST"], scope="send", keys=keys),
        ApiRoute("/voice-codes", send_voice_code, methods=["POST"], scope="send", keys=keys),
        *(ApiRoute(f"/members/{op}", member_change(op), methods=["POST"], scope="send",
                   keys=keys) for op in MEMBER_FIELDS),
        ApiRoute("/verifications", start_verification, methods=["POST"], scope="send",
                 keys=keys),
        ApiRoute("/verifications/check", check_verification, methods=["POST"], scope="send",
                 keys=keys),
        ApiRoute("/verifications/cancel", cancel_verification, methods=["POST"], scope="send",
                 keys=keys),
        ApiRoute("/jobs/{key:path}", get_job, methods=["GET"], scope="read", keys=keys),
    ]
