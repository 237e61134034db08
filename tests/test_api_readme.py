"""The README's HTTP API commands, run as written (port aside) against a real
``sendcloud-jobs web``: every curl succeeds, one for each endpoint family."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import redis

from producers.contract import CODES_QUEUE, MEMBERS_QUEUE, SMS_QUEUE
from producers.idempotency import record_key
from tests.test_web_server import CLI, Web, web_env
from tests.test_web_server import web_server as web_server  # the fixture

README = Path(__file__).resolve().parent.parent / "README.md"
FAMILIES = ("/sms", "/codes", "/verifications", "/members/", "/campaigns", "/jobs/")


def api_commands() -> str:
    text = README.read_text()
    section = text[text.index("## HTTP API"):]
    section = section[:section.index("\n## ")]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def json_answers(text: str) -> list[dict[str, object]]:
    """The JSON objects curl printed one after another (no newline between them)."""
    decoder = json.JSONDecoder()
    found, position = [], 0
    while (start := text.find("{", position)) != -1:
        answer, position = decoder.raw_decode(text, start)
        found.append(answer)
    return found


def test_the_readme_api_commands_run_as_written(
    web_server: Callable[..., Web], redis_url: str, redis_client: redis.Redis, tmp_path: Path,
) -> None:
    commands = api_commands()
    lines = commands.replace("\\\n", " ").splitlines()
    curls = [line for line in lines if line.startswith("curl ")]
    for family in FAMILIES:
        assert any(f"$API{family}" in curl for curl in curls), family
    web = web_server(redis_url, SENDCLOUD_VERIFY_SECRET="readme-verify-secret-0123456")
    # The one liberty taken: the server's port is a free one, not 8080.
    script = commands.replace("http://127.0.0.1:8080", web.url)
    env = {**web_env(redis_url), "PATH": f"{Path(CLI).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    answers = json_answers(done.stdout)
    assert len(answers) == len(curls) - 1  # every curl answered JSON but the CSV report
    assert answers[0] == {"key": "order-1001-sms", "result": "/v1/jobs/order-1001-sms"}
    assert {"status": "wrong_code", "attempts_left": 4}.items() <= answers[3].items()
    assert "phone,outcome,smsId" in done.stdout  # the report's header
    assert answers[-1]["key"] == "order-1001-sms" and answers[-1]["state"] == "queued"
    assert redis_client.exists(record_key("order-1001-sms"))
    for queue in (SMS_QUEUE, CODES_QUEUE, MEMBERS_QUEUE):
        assert redis_client.llen(f"dramatiq:{queue}") > 0, queue
    # The keys were printed to the script, never to the log.
    keys = re.findall(r"scj_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", done.stdout + done.stderr)
    assert keys == []
    log = web.log.read_text()
    assert "Bearer" not in log and "scj_" not in log
