from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from simulator import Simulator
from tests.test_simulator_support import API_USER, Clock, SimClient, make_sim


@pytest.fixture
def setup() -> tuple[Simulator, SimClient, Clock]:
    return make_sim()


def query(client: SimClient, **params: Any) -> dict[str, Any]:
    return client.api("data/emailStatus", method="GET", **params)


def test_reply_is_shaped_like_the_docs_example(setup):
    sim, client, clock = setup
    ids = sim.seed_email_status(2, start=datetime(2024, 5, 1, 9, 31, 59), spacing_seconds=139)
    clock.advance(5)
    assert sim.advance_email_status([ids[0]], status=1) == [ids[0]]
    clock.advance(5)
    assert sim.advance_email_status([ids[1]], status=4, sub_status=406) == [ids[1]]
    reply = query(client, days=1)
    assert reply["result"] is True and reply["statusCode"] == 200 and reply["message"] == "请求成功"
    assert reply["info"]["total"] == "2" and reply["info"]["voListSize"] == 2
    first, second = reply["info"]["voList"]
    assert list(first) == ["emailId", "status", "subStatus", "subStatusDesc", "apiUser",
                           "recipients", "requestTime", "modifiedTime", "sendLog"]
    assert first == {"emailId": ids[0], "status": "送达", "subStatus": None, "subStatusDesc": None,
                     "apiUser": API_USER, "recipients": ids[0].split("$")[1],
                     "requestTime": "2024-05-01 09:31:59", "modifiedTime": "2024-05-01 10:00:05",
                     "sendLog": "successfully delivered"}
    assert list(second) == ["emailId", "status", "subStatus", "subStatDesc", "apiUser",
                            "recipients", "requestTime", "modifiedTime", "sendLog"]
    assert (second["status"], second["subStatus"], second["subStatDesc"], second["sendLog"]) == (
        "无效邮件", "406", "地址不存在", "unrouteable address")
    assert second["requestTime"] == "2024-05-01 09:34:18"
    assert second["modifiedTime"] == "2024-05-01 10:00:10"


def test_default_seed_ends_now_and_records_are_sorted_by_request_time(setup):
    sim, client, _ = setup
    late = sim.seed_email_status(2, start=datetime(2024, 5, 1, 9, 0))
    early = sim.seed_email_status(2, start=datetime(2024, 5, 1, 8, 0), status=5)
    recent = sim.seed_email_status(3, recipients=["a@x.com", "b@x.com", "c@x.com"])
    vo = query(client, days=1)["info"]["voList"]
    assert [v["emailId"] for v in vo] == early + late + recent
    assert [v["requestTime"] for v in vo[-3:]] == [
        "2024-05-01 09:59:57", "2024-05-01 09:59:58", "2024-05-01 09:59:59"]
    assert [v["recipients"] for v in vo[-3:]] == ["a@x.com", "b@x.com", "c@x.com"]
    assert vo[0]["status"] == "软退信" and vo[0]["subStatus"] == "509"


def test_advance_picks_pending_records_oldest_first(setup):
    sim, client, clock = setup
    ids = sim.seed_email_status(5)
    clock.advance(30)
    assert sim.advance_email_status(count=2) == ids[:2]
    assert sim.advance_email_status(count=1, status=5, sub_status=506) == ids[2:3]
    assert sim.advance_email_status(status=4) == ids[3:]
    assert sim.advance_email_status() == []
    with pytest.raises(ValueError):
        sim.advance_email_status(ids, status=4, sub_status=506)
    with pytest.raises(ValueError):
        sim.advance_email_status(ids, status=1, sub_status=401)
    with pytest.raises(ValueError):
        sim.advance_email_status(ids, status=2)
    statuses = [(v["status"], v["subStatus"]) for v in query(client, days=1)["info"]["voList"]]
    assert statuses == [("送达", None), ("送达", None), ("软退信", "506"), ("无效邮件", "406"),
                        ("无效邮件", "406")]


def test_days_and_date_range_select_shanghai_calendar_days(setup):
    sim, client, _ = setup
    today = sim.seed_email_status(1, start=datetime(2024, 5, 1, 0, 0, 1))
    yesterday = sim.seed_email_status(1, start=datetime(2024, 4, 30, 23, 59, 59))
    old = sim.seed_email_status(1, start=datetime(2024, 4, 1, 23, 59, 59))
    edge = sim.seed_email_status(1, start=datetime(2024, 4, 2, 0, 0))
    ids = lambda reply: [v["emailId"] for v in reply["info"]["voList"]]  # noqa: E731
    assert ids(query(client, days=1)) == today
    assert ids(query(client, days=2)) == yesterday + today
    assert ids(query(client, days=30)) == edge + yesterday + today
    assert ids(query(client, startDate="2024-04-01", endDate="2024-05-01")) == (
        old + edge + yesterday + today)
    assert ids(query(client, startDate="2024-04-30", endDate="2024-04-30")) == yesterday


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, 40006),
        ({"days": 0}, 40006),
        ({"days": 31}, 40006),
        ({"days": "two"}, 40006),
        ({"startDate": "2024-5-1", "endDate": "2024-05-02"}, 40007),
        ({"endDate": "2024-05-02"}, 40007),
        ({"startDate": "2024-05-01"}, 40008),
        ({"startDate": "2024-05-01", "endDate": "2024-02-30"}, 40008),
        ({"startDate": "2024-05-02", "endDate": "2024-05-01"}, 40008),
        ({"startDate": "2024-03-31", "endDate": "2024-05-01"}, 40008),
        ({"days": 1, "start": "-1"}, 40002),
        ({"days": 1, "limit": 101}, 40004),
        ({"days": 1, "status": 2}, 40017),
        ({"days": 1, "apiUserList": ""}, 40010),
        ({"days": 1, "email": "nope"}, 40012),
        ({"days": 1, "labelId": "x"}, 40015),
        ({"days": 1, "apiKey": "wrong"}, 40005),
    ],
)
def test_parameter_errors(setup, params, expected):
    _, client, _ = setup
    reply = query(client, **params)
    assert reply["statusCode"] == expected and reply["result"] is False


def test_filters_and_paging(setup):
    sim, client, _ = setup
    mine = sim.seed_email_status(6, recipients=[f"r{i}@x.com" for i in range(6)])
    theirs = sim.seed_email_status(2, api_user="sub_user", start=datetime(2024, 5, 1, 8, 0))
    sim.advance_email_status(mine[:2], status=1)
    sim.advance_email_status(mine[2:3], status=4, sub_status=401)
    ids = lambda reply: [v["emailId"] for v in reply["info"]["voList"]]  # noqa: E731
    assert ids(query(client, days=1)) == mine
    assert ids(query(client, days=1, status=1)) == mine[:2]
    assert ids(query(client, days=1, status=18)) == mine[3:]
    assert ids(query(client, days=1, subStatus="401;509")) == mine[2:3]
    assert ids(query(client, days=1, emailIds=f"{mine[4]};{mine[1]}")) == [mine[1], mine[4]]
    assert ids(query(client, days=1, email="R5@x.com")) == [mine[5]]
    assert ids(query(client, days=1, apiUserList="sub_user")) == theirs
    assert ids(query(client, days=1, apiUserList=f"sub_user;{API_USER}")) == theirs + mine
    assert ids(query(client, days=1, labelId=12)) == []
    page = query(client, days=1, start=4, limit=3)["info"]
    assert (page["total"], page["voListSize"], ids({"info": page})) == ("6", 2, mine[4:])


def test_post_is_accepted_too(setup):
    sim, client, _ = setup
    sim.seed_email_status(1)
    assert client.api("data/emailStatus", days=1)["info"]["total"] == "1"


def test_rate_limit_is_3000_calls_per_minute_with_lower_case_statuscode(setup):
    _, client, clock = setup
    for _ in range(3000):
        assert query(client, days=1)["statusCode"] == 200
    limited = query(client, days=1)
    assert limited == {"result": False, "statuscode": 50000,
                       "message": "interface frequency is limited", "info": {}}
    clock.advance(60)
    assert query(client, days=1)["statusCode"] == 200


def test_query_cache_mimics_the_ten_minute_cache(setup):
    sim, client, clock = setup
    sim.email_status_cache_seconds = 600
    ids = sim.seed_email_status(1)
    assert query(client, days=1)["info"]["voList"][0]["status"] == "请求中"
    sim.advance_email_status(ids)
    clock.advance(599)
    assert query(client, days=1)["info"]["voList"][0]["status"] == "请求中"
    assert query(client, days=1, limit=5)["info"]["voList"][0]["status"] == "送达"
    clock.advance(1)
    assert query(client, days=1)["info"]["voList"][0]["status"] == "送达"
