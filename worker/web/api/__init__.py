"""The HTTP API under ``/v1/``, for apps not written in Python, mounted by ``sendcloud-jobs web``.

* ``app``: ``api_app(...)``, the Starlette app of every route below, and ``producer_for``;
* ``routing``: the key check every route goes through, JSON bodies, errors as JSON;
* ``keys``: API keys (hashed at rest, one scope each: send, read, admin), made by
  ``sendcloud-jobs web api-key`` or ``POST /v1/keys``;
* ``sends``: SMS, codes, voice codes, member changes, verifications, a job's result;
* ``campaigns``: start from an uploaded CSV, cancel, status, the report as streamed CSV;
* ``openapi``: the OpenAPI 3 document served at ``/v1/openapi.json``.

Validation and errors are the producers' own: every call goes through ``producers``, and their
exceptions become JSON answers naming the field and the rule.
"""
