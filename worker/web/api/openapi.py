"""The OpenAPI 3.1 document of the API, served at ``GET /v1/openapi.json``.

Written out here rather than generated: the routes take their bodies through the producers,
which hold the rules, so there are no models to generate it from. ``tests/test_api_openapi.py``
keeps it in step with the live route table (every route and method documented, nothing more)
and runs schemathesis against it.
"""

from __future__ import annotations

from typing import Any

VERSION = "1"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["field", "rule", "message"],
        "properties": {
            "field": {"type": ["string", "null"],
                      "description": "the field, header or path parameter at fault"},
            "rule": {"type": "string", "description": "the rule it broke"},
            "message": {"type": "string"},
        },
    }},
}
_ERRORS = {
    "401": "no key, or not a valid one",
    "403": "the key's scope does not allow this call",
    "404": "nothing under this name",
    "405": "the path takes other methods",
    "409": "the Idempotency-Key or campaign id was used with other input",
    "413": "the body is too large",
    "415": "the body is not of the media type this call takes",
    "422": "bad input: the field and the rule",
    "429": "a verification guardrail said no (see Retry-After)",
    "503": "Redis is unreachable, or the server lacks a setting this call needs",
}
_JOB = {"type": "object", "required": ["key", "result"], "properties": {
    "key": {"type": "string", "description": "the job's idempotency key"},
    "result": {"type": "string", "description": "where to read the job's result"},
}}
_IDEMPOTENCY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "1-100 printable ASCII characters. The same key and body again answer the "
                   "same job; the same key with another body is a 409.",
    "schema": {"type": "string"},
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
_PHONE = {"type": "string", "description": "a mainland mobile number (international '+...' "
                                           "for msg_type 2)"}
_CODE = {"type": "string", "description": "4-6 digits"}
_EMAILS = {"type": "array", "items": {"type": "string"}, "description": "e-mail addresses"}
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_CAMPAIGN_ID = {"name": "campaign_id", "in": "path", "required": True,
                "schema": {"type": "string"}}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required,
              "additionalProperties": False}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _operation(summary: str, scope: str | None, ok: str, ok_schema: dict[str, Any] | None,
               *, body: dict[str, Any] | None = None, parameters: list[Any] | None = None,
               media: str = "application/json") -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if ok_schema is None:
        responses[ok] = {"description": summary}
    else:
        responses[ok] = {"description": summary, "content": {media: {"schema": ok_schema}}}
    for status, text in _ERRORS.items():
        responses[status] = {"description": text,
                             "content": {"application/json": {"schema": _ERROR}}}
    operation: dict[str, Any] = {
        "summary": summary, "responses": responses,
        "description": "Any valid key." if scope is None else
                       f"Needs a key of scope {scope!r} (or 'admin').",
    }
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    return operation


def _send(summary: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"post": _operation(summary, "send", "202", _JOB, body=_body(properties, required),
                               parameters=[_IDEMPOTENCY])}


def _members(op: str, extra: dict[str, Any]) -> dict[str, Any]:
    properties = {"address": {"type": "string"}, "members": _EMAILS, **extra}
    return _send(f"{op} members of an address list", properties, ["address", "members"])


def openapi_document() -> dict[str, Any]:
    member_vars = {"type": "array", "items": _ANY_OBJECT}
    names = {"type": "array", "items": {"type": "string"}}
    campaign_form = {"type": "object", "required": ["file", "campaign_id", "template_id"],
                     "properties": {
                         "file": {"type": "string", "format": "binary",
                                  "description": "one number a line, or a CSV with column"},
                         "campaign_id": {"type": "string"}, "template_id": {"type": "string"},
                         "vars": {"type": "string", "description": "a JSON object"},
                         "tag": {"type": "string", "description": "a JSON object"},
                         "msg_type": {"type": "string"}, "column": {"type": "string"},
                         "skip_header": {"type": "string", "enum": ["true", "false"]},
                     }}
    start_campaign = _operation(
        "start a campaign from an uploaded file of numbers", "send", "201", _ANY_OBJECT,
        body={"required": True, "content": {"multipart/form-data": {"schema": campaign_form}}})
    start_campaign["responses"]["200"] = {
        "description": "the same id and file again: the start resumed",
        "content": {"application/json": {"schema": _ANY_OBJECT}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "sendcloud-jobs", "version": VERSION,
                 "description": "SendCloud SMS and mail jobs, validated and idempotent, run by "
                                "sendcloud-jobs workers. Errors: {\"error\": {\"field\", "
                                "\"rule\", \"message\"}}."},
        "servers": [{"url": "/v1"}],
        "security": [{"apiKey": []}],
        "components": {"securitySchemes": {"apiKey": {
            "type": "http", "scheme": "bearer",
            "description": "an API key from `sendcloud-jobs web api-key create`"}}},
        "paths": {
            "/sms": _send("an SMS from a template to up to 2000 numbers", {
                "template_id": {"type": "integer"}, "phones": {"type": "array", "items": _PHONE},
                "vars": _STRING_MAP, "msg_type": {"type": "integer", "enum": [0, 1]},
                "tag": _STRING_MAP}, ["template_id", "phones"]),
            "/codes": _send("a verification code the caller made", {
                "phone": _PHONE, "code": _CODE, "sign_id": {"type": "integer"},
                "sign_name": {"type": "string"}, "msg_type": {"type": "integer", "enum": [0, 2]},
                "expires_in": {"type": "number"}}, ["phone", "code"]),
            "/voice-codes": _send("a code read out by a voice call", {
                "phone": _PHONE, "code": _CODE, "expires_in": {"type": "number"}},
                ["phone", "code"]),
            "/members/add": _members("add", {"names": names, "vars": member_vars}),
            "/members/update": _members("update", {"new_members": _EMAILS, "names": names,
                                                   "vars": member_vars}),
            "/members/delete": _members("delete", {}),
            "/verifications": {"post": _operation(
                "start a verification: a code made, sent and checked here", "send", "201",
                _ANY_OBJECT, body=_body({
                    "phone": _PHONE, "channel": {"type": "string", "enum": ["sms", "voice"]},
                    "client_id": {"type": "string"}, "sign_id": {"type": "integer"},
                    "sign_name": {"type": "string"},
                    "length": {"type": "integer", "enum": [4, 5, 6]},
                    "ttl": {"type": "integer"}}, ["phone"]))},
            "/verifications/check": {"post": _operation(
                "check a code: approved once, else why not", "send", "200", _ANY_OBJECT,
                body=_body({"phone": _PHONE, "code": {"type": "string"},
                            "verification_id": {"type": "string"}}, ["phone", "code"]))},
            "/verifications/cancel": {"post": _operation(
                "stop a phone's pending verification", "send", "200", _ANY_OBJECT,
                body=_body({"phone": _PHONE, "verification_id": {"type": "string"}},
                           ["phone"]))},
            "/jobs/{key}": {"get": _operation(
                "a job's state, attempts and final result", "read", "200", _ANY_OBJECT,
                parameters=[{"name": "key", "in": "path", "required": True,
                             "schema": {"type": "string"}}])},
            "/campaigns": {"post": start_campaign},
            "/campaigns/{campaign_id}": {"get": _operation(
                "a campaign's totals and progress", "read", "200", _ANY_OBJECT,
                parameters=[_CAMPAIGN_ID])},
            "/campaigns/{campaign_id}/cancel": {"post": _operation(
                "stop the chunks not yet sent", "send", "200", _ANY_OBJECT,
                parameters=[_CAMPAIGN_ID])},
            "/campaigns/{campaign_id}/report": {"get": _operation(
                "every recipient's outcome, as CSV", "read", "200", {"type": "string"},
                parameters=[_CAMPAIGN_ID], media="text/csv")},
            "/keys": {
                "get": _operation("the API keys (never the keys themselves)", "admin", "200",
                                  _ANY_OBJECT),
                "post": _operation("a new API key, shown in this answer only", "admin", "201",
                                   _ANY_OBJECT, body=_body({
                                       "name": {"type": "string"},
                                       "scope": {"type": "string",
                                                 "enum": ["send", "read", "admin"]}},
                                       ["name", "scope"])),
            },
            "/keys/{key_id}": {"delete": _operation(
                "revoke a key at once", "admin", "204", None,
                parameters=[{"name": "key_id", "in": "path", "required": True,
                             "schema": {"type": "string"}}])},
            "/openapi.json": {"get": _operation("this document", None, "200", _ANY_OBJECT)},
        },
    }
