"""The dashboard in a real browser: headless Debian chromium (chromium-driver) through Selenium,
against ``sendcloud-jobs web --dashboard`` under uvicorn, real ``dramatiq worker.app`` processes
(the Procfile's worker entry) draining a campaign on the simulator in a child process.

It logs in, watches the campaign's progress bar move without a reload, cancels the campaign,
replays a dead letter (which the workers then send) and downloads the report.

``SENDCLOUD_DASHBOARD_SCREENSHOTS=docs`` also writes docs/dashboard-overview.png,
dashboard-campaign.png and dashboard-dead-letters.png (the README's pictures):

    SENDCLOUD_DASHBOARD_SCREENSHOTS=docs .venv/bin/pytest -m browser tests/test_dashboard_browser.py

Under ``CI=true`` a missing chromium or chromedriver fails the test; elsewhere it is skipped
with the reason.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from bench.common import (
    REPO,
    SimHost,
    WorkerGroup,
    wait_for,
    worker_command,
    worker_env,
    worker_groups,
)
from producers import Producer, campaign_status, start_campaign
from producers.contract import SEND_SMS_ACTOR, SMS_QUEUE
from tests.dashboard_support import PASSWORDS, WEB_SECRET, add_users
from tests.jobs_harness import stop_worker
from tests.redis_server import free_port
from tests.webhooks import SMS_KEY
from worker.broker import dead_letters as dlq
from worker.sendcloud.errors import InvalidRequestError

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TEMPLATE_ID = 7001
CHUNKS = 16  # 2000 numbers each: one SendCloud call per chunk
LATENCY = 0.8  # seconds per simulated call: the campaign drains in a few seconds, visibly


def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = (f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver "
                  "(.ci/run installs them)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _need_browser()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager never downloads a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,960"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(tmp_path / "downloads"),
        "download.prompt_for_download": False,
    })
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def sim() -> Iterator[SimHost]:
    with SimHost(latency={"*": LATENCY}, templates=[TEMPLATE_ID]) as host:
        # One call at a time: the drain takes CHUNKS * LATENCY however fast the workers are,
        # so the campaign is still running when the test cancels it, on a loaded machine too.
        host.admin.set_faults("*", latency=LATENCY, capacity=1)
        yield host


@pytest.fixture
def web_url(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[str]:
    """``sendcloud-jobs web --dashboard`` in a process of its own; its base URL."""
    add_users(redis_client)
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "SENDCLOUD_SMS_HOOK_KEY": SMS_KEY,
           "SENDCLOUD_WEB_SECRET": WEB_SECRET, "PYTHONUNBUFFERED": "1"}
    command = Path(sys.executable).parent / "sendcloud-jobs"
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen([str(command), "web", "--dashboard", "--port", str(port)],
                               cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "web.log").read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_for(up, 30, interval=0.1), "the web process did not answer within 30 s"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def dead_letter_a_real_job(redis_url: str, producer: Producer) -> str:
    """An SMS job whose message died before any worker claimed it (a worker of a release whose
    send refused it, say): its job never ended, so a replay runs it."""
    key = producer.send_sms(TEMPLATE_ID, ["13900000001"], idempotency_key="browser-replay")
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(dlq.DeadLetterReasons())

    @dramatiq.actor(broker=broker, queue_name=SMS_QUEUE, actor_name=SEND_SMS_ACTOR,
                    max_retries=0)
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise InvalidRequestError("template is not approved yet", code=431,
                                  endpoint="smsapi/send")

    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        assert wait_for(lambda: dlq.count_dead_letters(broker.client, "dramatiq", SMS_QUEUE) == 1,
                        30)
    finally:
        stop_worker(worker)
        broker.close()
    return key


def _shot(driver: Any, name: str) -> None:
    target = os.environ.get("SENDCLOUD_DASHBOARD_SCREENSHOTS")
    if target:
        path = (REPO / target / f"dashboard-{name}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))


def test_an_operator_watches_cancels_replays_and_downloads(
    browser: Any, web_url: str, sim: SimHost, redis_url: str, redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(condition: Any, seconds: float = 30) -> Any:
        return WebDriverWait(browser, seconds, poll_frequency=0.1).until(condition)

    producer = Producer(redis_url=redis_url)
    replay_key = dead_letter_a_real_job(redis_url, producer)
    phones = [f"138{i:08d}" for i in range(CHUNKS * 2000)]
    start_campaign("browser", TEMPLATE_ID, phones, producer=producer)

    # Log in: the dashboard sends a visitor without a session to the login page.
    browser.get(f"{web_url}/dashboard/campaigns/browser")
    wait(expected_conditions.presence_of_element_located((By.ID, "login")))
    browser.find_element(By.ID, "name").send_keys("olga")
    browser.find_element(By.ID, "password").send_keys(PASSWORDS["olga"])
    browser.find_element(By.ID, "login").click()
    wait(expected_conditions.presence_of_element_located((By.ID, "progress")))
    assert browser.current_url == f"{web_url}/dashboard/campaigns/browser"
    browser.execute_script("window.notReloaded = true;")

    def progress() -> int:
        return int(browser.find_element(By.ID, "progress").get_attribute("value"))

    assert progress() == 0
    group = WorkerGroup("worker", worker_command("worker", processes=1, threads=2,
                                                 queues=[SMS_QUEUE]),
                        worker_env(redis_url, sim.url), tmp_path / "worker.log")
    with worker_groups(group):
        # The bar moves while the workers drain the campaign, with no reload of the page.
        wait(lambda _: progress() > 0, 60)
        first = progress()
        wait(lambda _: progress() > first, 30)
        assert progress() < CHUNKS * 2000, "the campaign ended before it could be cancelled"
        assert browser.execute_script("return window.notReloaded === true;")
        _shot(browser, "campaign")

        browser.find_element(By.ID, "cancel").click()
        wait(expected_conditions.alert_is_present(), 5).accept()
        wait(expected_conditions.presence_of_element_located((By.ID, "notice")))
        wait(lambda _: browser.find_element(By.ID, "state").text == "finished", 60)
        status = campaign_status("browser", producer=producer)
        assert status.cancel_requested and status.cancelled > 0 and status.accepted > 0
        assert int(browser.find_element(By.ID, "cancelled").text) == status.cancelled

        browser.get(f"{web_url}/dashboard/")
        wait(expected_conditions.presence_of_element_located((By.ID, "queues")))
        _shot(browser, "overview")

        # The dead letter: its reason is shown; Replay puts it back and a worker sends it.
        browser.get(f"{web_url}/dashboard/dead-letters")
        row = wait(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "#letters tbody tr")))
        assert "template is not approved yet" in row.text
        assert replay_key in row.text
        _shot(browser, "dead-letters")
        row.find_element(By.CLASS_NAME, "replay-one").click()
        notice = wait(expected_conditions.presence_of_element_located((By.ID, "notice")))
        assert notice.text == "1 message(s) replayed"
        assert browser.find_element(By.ID, "no-letters").text == "No dead letters."
        assert wait_for(lambda: producer.get_result(replay_key) is not None, 30)
        assert producer.get_result(replay_key)["outcome"] == "sent"  # type: ignore[index]

    # The report downloads as a CSV of every valid number.
    downloads = tmp_path / "downloads"
    browser.get(f"{web_url}/dashboard/campaigns/browser")
    wait(expected_conditions.element_to_be_clickable((By.ID, "report"))).click()
    report = downloads / "campaign-browser.csv"
    assert wait_for(report.exists, 30), list(downloads.glob("*")) if downloads.exists() else []
    with report.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == CHUNKS * 2000
    outcomes = {row["outcome"] for row in rows}
    assert {"sent", "cancelled"} <= outcomes
    producer.close()
    shutil.rmtree(downloads, ignore_errors=True)
