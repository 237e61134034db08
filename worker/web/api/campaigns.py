"""Campaigns: start one from an uploaded file of numbers, follow it, cancel it, read its report.

``POST /v1/campaigns`` takes ``multipart/form-data``: ``file`` (one number a line, or a CSV
with ``column``), ``campaign_id``, ``template_id`` and optionally ``vars`` and ``tag`` (JSON
objects), ``msg_type``, ``column``, ``skip_header``. The file is read exactly as
``sendcloud-jobs campaign start`` reads one (producers.campaign_input), streamed into
``producers.start_campaign``. The campaign id is the idempotency key: the same id and file
again resumes a start that died; another file under the id is a 409.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from producers import (
    CampaignStatus,
    Producer,
    campaign_status,
    cancel_campaign,
    start_campaign,
)
from producers.campaign_csv import campaign_report_rows
from producers.campaign_input import NumberSource
from producers.campaign_report import REPORT_HEADER
from worker.web.api.keys import KeyStore
from worker.web.api.routing import ApiError, ApiRoute, blocking, no_idempotency_key

START_FIELDS = ("file", "campaign_id", "template_id", "vars", "tag", "msg_type", "column",
                "skip_header")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_ROWS_PER_PIECE = 500  # report rows sent in one piece of the streamed answer
MAX_FORM_FIELD_BYTES = 64 * 1024


def status_json(status: CampaignStatus) -> dict[str, Any]:
    return {**dataclasses.asdict(status), "pending": status.pending,
            "delivery_pending": status.delivery_pending}


def _integer(form: FormData, name: str) -> object:
    """A form's number as an int for the producers to check; other text as it came, which
    they refuse naming the field."""
    text = form.get(name)
    if not isinstance(text, str):
        return None
    return int(text) if _INTEGER.fullmatch(text.strip()) else text


def _json_object(form: FormData, name: str) -> dict[str, Any] | None:
    text = form.get(name)
    if text is None or text == "":
        return None
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ApiError(422, name, "must be a JSON object")
    return value


def _flag(form: FormData, name: str) -> bool:
    text = form.get(name)
    if text is None or text == "":
        return False
    if text not in ("true", "false"):
        raise ApiError(422, name, "must be true or false")
    return text == "true"


async def _read_form(request: Request) -> FormData:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "body", "must be multipart/form-data with the numbers as 'file'")
    try:
        form = await request.form(max_files=1, max_fields=len(START_FIELDS),
                                  max_part_size=MAX_FORM_FIELD_BYTES)
    except HTTPException as exc:  # python-multipart's own refusal, with its reason
        raise ApiError(422, "body", f"is not a readable multipart form ({exc.detail})") from None
    for name in form:
        if name not in START_FIELDS:
            raise ApiError(422, name, f"is not a field of this call (fields: "
                                      f"{', '.join(START_FIELDS)})")
    return form


def _start(producer: Producer, form: FormData, upload: UploadFile) -> dict[str, Any]:
    column = form.get("column")
    upload.file.seek(0)
    source = NumberSource(upload.file, column if isinstance(column, str) and column else None,
                          _flag(form, "skip_header"))
    msg_type = _integer(form, "msg_type")
    result = start_campaign(
        form.get("campaign_id"),  # type: ignore[arg-type]  # the producers check it
        _integer(form, "template_id"),  # type: ignore[arg-type]
        source, _json_object(form, "vars"), tag=_json_object(form, "tag"),
        msg_type=0 if msg_type is None else msg_type,  # type: ignore[arg-type]
        producer=producer,
    )
    skipped = source.skipped_header
    return {**dataclasses.asdict(result),
            "header_skipped": None if skipped is None else {"line": skipped[0],
                                                            "text": skipped[1]}}


def _report_pieces(rows: Iterator[tuple[str, ...]]) -> Iterator[str]:
    """The CSV text a few hundred rows at a time (Starlette reads this in a thread)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_HEADER)
    for count, row in enumerate(rows, 1):
        writer.writerow(row)
        if count % _ROWS_PER_PIECE == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def campaign_routes(producer: Producer, keys: KeyStore) -> list[ApiRoute]:
    async def start(request: Request) -> Response:
        no_idempotency_key(request, "the campaign_id is the campaign's idempotency key")
        form = await _read_form(request)
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "file", "is required: the numbers, as an uploaded file")
            for name in ("campaign_id", "template_id"):
                if not form.get(name):
                    raise ApiError(422, name, "is required")
            body = await blocking(_start, producer, form, upload)
        finally:
            await form.close()
        status = 200 if body["resumed"] else 201
        return JSONResponse(body, status_code=status)

    async def status(request: Request) -> Response:
        found = await blocking(campaign_status, request.path_params["campaign_id"],
                               producer=producer)
        return JSONResponse(status_json(found))

    async def cancel(request: Request) -> Response:
        found = await blocking(cancel_campaign, request.path_params["campaign_id"],
                               producer=producer)
        return JSONResponse(status_json(found))

    async def report(request: Request) -> Response:
        campaign_id = request.path_params["campaign_id"]
        # Before the first byte: an unknown campaign is still a 404, not a broken stream.
        rows = await blocking(campaign_report_rows, campaign_id, producer=producer)
        return StreamingResponse(
            _report_pieces(rows), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{campaign_id}.csv"'})

    return [
        ApiRoute("/campaigns", start, methods=["POST"], scope="send", keys=keys),
        ApiRoute("/campaigns/{campaign_id}", status, methods=["GET"], scope="read", keys=keys),
        ApiRoute("/campaigns/{campaign_id}/cancel", cancel, methods=["POST"], scope="send",
                 keys=keys),
        ApiRoute("/campaigns/{campaign_id}/report", report, methods=["GET"], scope="read",
                 keys=keys),
    ]
