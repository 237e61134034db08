"""The OpenAPI document: in step with the live route table, served behind a key, and
schemathesis's generated calls against a real ``sendcloud-jobs web`` find no server error and
no answer the document does not describe."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_support import Api, api_fixture  # noqa: F401  (fixture `api`)
from tests.test_web_server import CLI, Web, web_env
from tests.test_web_server import web_server as web_server  # the fixture
from worker.web.api.openapi import openapi_document

VERIFY = {"SENDCLOUD_VERIFY_SECRET": "schemathesis-verify-secret-0123"}


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method in item}


def test_every_route_is_documented_and_nothing_else(api: Callable[..., Api]) -> None:
    a = api()
    served = {(method, re.sub(r"\{(\w+):path\}", r"{\1}", route.path))
              for route in a.routes for method in route.methods or () if method != "HEAD"}
    assert served == documented(openapi_document())
    answer = a.http.get("/openapi.json", headers=a.auth("read"))
    assert answer.json() == openapi_document()
    assert a.http.get("/openapi.json").status_code == 401


def create_key(redis_url: str, scope: str) -> str:
    done = subprocess.run([CLI, "web", "api-key", "create", "--name", f"fuzz-{scope}",
                           "--scope", scope], env=web_env(redis_url), capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    web_server: Callable[..., Web], redis_url: str,
) -> None:
    web = web_server(redis_url, **VERIFY)
    auth = {"Authorization": f"Bearer {create_key(redis_url, 'admin')}"}
    document = httpx.get(f"{web.url}/v1/openapi.json", headers=auth).json()
    schema = schemathesis.openapi.from_dict(document)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == len(documented(document))
    for operation in operations:
        if operation.method.upper() == "DELETE":
            continue  # revoking random ids: covered by test_api_auth, and it would end the run

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=f"{web.url}/v1", headers=auth, checks=checks)

        call()
