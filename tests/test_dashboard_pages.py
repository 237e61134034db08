"""The dashboard's pages and their JSON against a real Redis, real workers and the simulator:
what each shows, the streamed report, dead-letter actions, masking, and no secret anywhere."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator

import pytest
import redis
from dramatiq.brokers.redis import RedisBroker
from starlette.testclient import TestClient

from producers import campaign_report, start_campaign
from producers.contract import SMS_QUEUE
from tests.dashboard_support import PASSWORDS, add_users, csrf_of, dashboard_clients, log_in
from tests.jobs_harness import TEMPLATE_ID, Stack, mainland, stack_factory
from tests.test_dlq import dead_letter_one
from worker.broker import dead_letters as dlq
from worker.email_status.poller import CURSOR_KEY, GAPS_KEY
from worker.jobs.pause import pause_key


@pytest.fixture
def web(redis_url: str, redis_client: redis.Redis) -> Iterator[Callable[..., TestClient]]:
    add_users(redis_client)

    with dashboard_clients(redis_url) as make:
        def logged_in(user: str = "olga", **env: str) -> TestClient:
            client = make(**env)
            assert log_in(client, user).status_code == 303
            return client

        yield logged_in


@pytest.fixture
def stack(redis_url: str) -> Iterator[Stack]:
    with stack_factory(redis_url) as make:
        yield make()


@pytest.fixture
def dead_letter(redis_url: str) -> Iterator[Callable[[str], None]]:
    """``dead_letter(key)``: a real worker dead-letters a job of that key (its own broker each
    time: the failing actor is declared once a broker)."""
    brokers: list[RedisBroker] = []

    def make(key: str) -> None:
        broker = RedisBroker(url=redis_url)
        broker.add_middleware(dlq.DeadLetterReasons())
        brokers.append(broker)
        dead_letter_one(broker, key, [])

    yield make
    for broker in brokers:
        broker.close()


def test_the_overview_shows_depths_pause_poller_and_outcomes(
    web: Callable[..., TestClient], stack: Stack, redis_client: redis.Redis,
) -> None:
    done = stack.producer.send_sms(TEMPLATE_ID, [mainland(1)])
    with stack.running(2):
        assert stack.wait_until(lambda: stack.producer.get_result(done) is not None)
    stack.producer.send_sms(TEMPLATE_ID, [mainland(2)])  # waits: no worker runs now
    redis_client.set(pause_key("sim_sms_user"), "1", px=120_000)
    redis_client.hset(CURSOR_KEY, mapping={"until": "1", "until_iso": "2026-12-07T10:00:00+08:00",
                                           "window": "2026-12-04..2026-12-07",
                                           "polled_at": "2026-12-07T10:00:05+08:00"})
    redis_client.hset(GAPS_KEY, "2026-10-01..2026-10-03", "|gap")
    client = web()

    data = client.get("/dashboard/overview.json").json()
    sms = next(q for q in data["queues"] if q["queue"] == SMS_QUEUE)
    assert (sms["ready"], sms["delayed"], sms["dead"]) == (1, 0, 0)
    assert data["pauses"][0]["account"] == "sim_sms_user"
    assert 0 < data["pauses"][0]["seconds_left"] <= 120
    assert data["poller"] == {"polled_at": "2026-12-07T10:00:05+08:00",
                              "until": "2026-12-07T10:00:00+08:00",
                              "window": "2026-12-04..2026-12-07",
                              "gaps": ["2026-10-01..2026-10-03"]}
    assert len(data["outcomes"]["minutes"]) == 60
    assert sum(data["outcomes"]["outcomes"]["sent"]) == 1
    page = client.get("/dashboard/").text
    assert "SMS sending for sim_sms_user is paused" in page
    assert "2026-10-01..2026-10-03" in page


def test_a_campaign_page_its_progress_and_its_streamed_report(
    web: Callable[..., TestClient], stack: Stack,
) -> None:
    phones = [mainland(i) for i in range(2500)]
    start_campaign("spring", TEMPLATE_ID, [*phones, "12345"], producer=stack.producer)
    client = web()
    before = client.get("/dashboard/campaigns/spring/status.json").json()
    assert (before["valid"], before["done"], before["pending"], before["percent"]) == \
        (2500, 0, 2500, 0.0)
    with stack.running(2):
        assert stack.wait_until(
            lambda: client.get("/dashboard/campaigns/spring/status.json").json()["finished"])
    after = client.get("/dashboard/campaigns/spring/status.json").json()
    assert (after["accepted"], after["done"], after["percent"]) == (2500, 2500, 100.0)
    assert after["funnel"][:4] == [{"label": "delivered", "value": 0},
                                   {"label": "undelivered", "value": 0},
                                   {"label": "rejected", "value": 0},
                                   {"label": "accepted, no receipt yet", "value": 2500}]
    assert sum(step["value"] for step in after["funnel"]) == after["valid"]
    assert after["failures"] == []

    listing = client.get("/dashboard/campaigns.json").json()["campaigns"]
    assert [(c["campaign_id"], c["done"]) for c in listing] == [("spring", 2500)]
    assert 'href="/dashboard/campaigns/spring"' in client.get("/dashboard/campaigns").text

    with client.stream("GET", "/dashboard/campaigns/spring/report.csv") as response:
        assert response.headers["content-type"].startswith("text/csv")
        assert "content-length" not in response.headers  # streamed, not built whole
        streamed = "".join(response.iter_text())
    expected = io.StringIO()
    campaign_report("spring", expected, producer=stack.producer)
    assert streamed == expected.getvalue()
    assert len(list(csv.reader(io.StringIO(streamed)))) == 1 + 2500 + 1

    assert client.get("/dashboard/campaigns/nope").status_code == 404
    assert client.get("/dashboard/campaigns/nope/status.json").status_code == 404
    assert client.get("/dashboard/campaigns/nope/report.csv").status_code == 404


def test_a_job_page_shows_record_outcome_and_recipients_masked_on_request(
    web: Callable[..., TestClient], stack: Stack,
) -> None:
    key = stack.producer.send_sms(TEMPLATE_ID, [mainland(7), mainland(8)])
    with stack.running(2):
        assert stack.wait_until(lambda: stack.producer.get_result(key) is not None)
    page = web().get("/dashboard/jobs", params={"key": key}).text
    assert 'id="outcome">sent<' in page
    assert mainland(7) in page and mainland(8) in page
    masked = web(SENDCLOUD_WEB_MASK_PHONES="1").get("/dashboard/jobs", params={"key": key}).text
    assert mainland(7) not in masked and mainland(8) not in masked
    assert "138****0007" in masked and "138****0008" in masked
    assert 'id="outcome">sent<' in masked
    missing = web().get("/dashboard/jobs", params={"key": "no-such-key"})
    assert missing.status_code == 404
    assert "no job with key &#39;no-such-key&#39;" in missing.text


def test_the_report_is_masked_too(web: Callable[..., TestClient], stack: Stack) -> None:
    start_campaign("masked", TEMPLATE_ID, [mainland(5)], producer=stack.producer)
    text = web(SENDCLOUD_WEB_MASK_PHONES="1").get("/dashboard/campaigns/masked/report.csv").text
    assert text.splitlines()[1].startswith("138****0005,pending")


def test_dead_letters_are_listed_replayed_one_by_one_and_purged_with_confirmation(
    web: Callable[..., TestClient], dead_letter: Callable[[str], None],
    redis_client: redis.Redis,
) -> None:
    dead_letter("dl-1")
    dead_letter("dl-2")
    client = web()
    letters = client.get("/dashboard/dead-letters.json").json()["letters"]
    assert [(x["key"], x["replayable"]) for x in letters] == [("dl-1", True), ("dl-2", True)]
    assert letters[0]["reason"].startswith("InvalidRequestError: template does not exist")
    page = client.get("/dashboard/dead-letters")
    token = csrf_of(page.text)
    assert "InvalidRequestError" in page.text

    replayed = client.post("/dashboard/dead-letters/replay",
                           data={"csrf_token": token, "message_id": letters[0]["message_id"]})
    assert "1 message(s) replayed" in replayed.text
    assert redis_client.hlen(f"dramatiq:{SMS_QUEUE}.msgs") == 1
    assert [x.key for x in dlq.list_dead_letters(redis_client)] == ["dl-2"]

    refused = client.post("/dashboard/dead-letters/purge", data={"csrf_token": token})
    assert refused.status_code == 422
    assert "confirm: type purge" in refused.text
    assert len(dlq.list_dead_letters(redis_client)) == 1
    purged = client.post("/dashboard/dead-letters/purge",
                         data={"csrf_token": token, "confirm": "purge"})
    assert "1 dead letter(s) purged" in purged.text
    assert dlq.list_dead_letters(redis_client) == []
    assert "No dead letters." in client.get("/dashboard/dead-letters").text


def test_no_page_or_json_shows_a_secret_a_password_or_a_code(
    web: Callable[..., TestClient], stack: Stack, dead_letter: Callable[[str], None],
    redis_client: redis.Redis,
) -> None:
    secrets_env = {"SENDCLOUD_SMS_KEY": "sms-key-SECRET-1", "SENDCLOUD_API_KEY": "api-key-SECRET-2",
                   "SENDCLOUD_VERIFY_SECRET": "verify-SECRET-3"}
    code = "918273"
    code_key = stack.producer.send_code(mainland(3), code, sign_id=1)
    sms_key = stack.producer.send_sms(TEMPLATE_ID, [mainland(4)])
    with stack.running(2):
        assert stack.wait_until(lambda: all(stack.producer.get_result(k) is not None
                                            for k in (code_key, sms_key)))
    dead_letter("dl-secret")  # before the campaign: its worker knows no other actor
    start_campaign("spring", TEMPLATE_ID, [mainland(i) for i in range(10)],
                   producer=stack.producer)
    client = web(**secrets_env)
    hashes = [h.decode() for h in redis_client.hvals("sendcloud:web:user:olga")
              if h.startswith(b"$argon2")]
    forbidden = [*secrets_env.values(), *PASSWORDS.values(), code, *hashes,
                 "dashboard-test-secret", "sim-sms-key", "sim-api-key"]
    pages = ["/dashboard/", "/dashboard/overview.json", "/dashboard/campaigns",
             "/dashboard/campaigns.json", "/dashboard/campaigns/spring",
             "/dashboard/campaigns/spring/status.json", "/dashboard/campaigns/spring/report.csv",
             f"/dashboard/jobs?key={code_key}", f"/dashboard/jobs?key={sms_key}",
             "/dashboard/dead-letters", "/dashboard/dead-letters.json", "/dashboard/login"]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        body = response.text + str(response.headers)
        for value in forbidden:
            assert value not in body, (path, value)
    assert 'id="outcome">sent<' in client.get(f"/dashboard/jobs?key={code_key}").text
