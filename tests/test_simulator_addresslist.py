from __future__ import annotations

import json
from typing import Any

import pytest

from simulator import Simulator
from tests.test_simulator_support import Clock, SimClient, make_sim

LIST = "devs@maillist.sendcloud.org"


@pytest.fixture
def setup() -> tuple[Simulator, SimClient, Clock]:
    sim, client, clock = make_sim()
    reply = client.api("addresslist/add", address=LIST, name="developers", desc="team")
    assert reply["statusCode"] == 200
    return sim, client, clock


def code(reply: dict[str, Any]) -> int:
    return int(reply["statusCode"])


def add_members(client: SimClient, members: list[str], **params: Any) -> dict[str, Any]:
    return client.api("addressmember/add", address=LIST, members=";".join(members), **params)


def test_wrong_api_credentials_are_40005(setup):
    _, client, _ = setup
    for params in ({"apiKey": "nope"}, {"apiUser": "other"}, {"apiUser": ""}):
        reply = client.api("addresslist/list", **params)
        assert reply == {"result": False, "statusCode": 40005, "message": "认证失败", "info": {}}


def test_add_list_reply_shape(setup):
    _, client, _ = setup
    reply = client.api("addresslist/add", address="ops@maillist.sendcloud.org", name="ops")
    assert reply["result"] is True and reply["message"] == "请求成功"
    assert reply["info"] == {"data": {
        "gmtCreated": "2024-05-01 10:00:00", "gmtUpdated": "2024-05-01 10:00:00",
        "address": "ops@maillist.sendcloud.org", "memberCount": 0, "description": "",
        "listType": 0, "name": "ops"}}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"name": "x"}, 40503),
        ({"address": "", "name": "x"}, 40503),
        ({"address": "a" * 30 + "@maillist.sendcloud.org", "name": "x"}, 40504),
        ({"address": "not-an-address", "name": "x"}, 40511),
        ({"address": "n@maillist.sendcloud.org"}, 40501),
        ({"address": "n@maillist.sendcloud.org", "name": ""}, 40501),
        ({"address": "n@maillist.sendcloud.org", "name": "n" * 49}, 40502),
        ({"address": "n@maillist.sendcloud.org", "name": "x", "desc": ""}, 40506),
        ({"address": "n@maillist.sendcloud.org", "name": "x", "desc": "d" * 251}, 40507),
        ({"address": LIST.upper(), "name": "x"}, 40505),
    ],
)
def test_add_list_validation(setup, params, expected):
    sim, client, _ = setup
    assert code(client.api("addresslist/add", **params)) == expected
    assert list(sim.address_lists) == [LIST]


def test_list_paging_filter_and_get(setup):
    _, client, clock = setup
    for i in range(4):
        clock.advance(1)
        client.api("addresslist/add", address=f"l{i}@maillist.sendcloud.org", name=f"l{i}")
    page = client.api("addresslist/list", method="GET", start=1, limit=2)["info"]
    assert page["total"] == 5 and page["count"] == 2
    assert [d["address"] for d in page["dataList"]] == ["l0@maillist.sendcloud.org",
                                                         "l1@maillist.sendcloud.org"]
    assert set(page["dataList"][0]) == {"gmtCreated", "gmtUpdated", "memberUpdated", "address",
                                        "description", "memberCount", "name"}
    some = client.api("addresslist/list", address=f"l3@maillist.sendcloud.org;{LIST}")["info"]
    assert [d["name"] for d in some["dataList"]] == ["developers", "l3"]
    assert code(client.api("addresslist/list", start=-1)) == 40002
    assert code(client.api("addresslist/list", start="")) == 40001
    assert code(client.api("addresslist/list", limit=101)) == 40004
    assert code(client.api("addresslist/list", limit="ten")) == 40004
    assert client.api("addresslist/list", limit=0)["info"]["count"] == 0


def test_update_and_delete_list(setup):
    sim, client, _ = setup
    new = "team@maillist.sendcloud.org"
    add_members(client, ["a@x.com"])
    assert code(client.api("addresslist/update", address=LIST)) == 40511
    assert code(client.api("addresslist/update", address=LIST, newAddress="")) == 40509
    assert code(client.api("addresslist/update", address=LIST,
                           newAddress="n" * 40 + "@mail.org")) == 40510
    assert code(client.api("addresslist/update", address="nope@maillist.sendcloud.org",
                           name="x")) == 40517
    client.api("addresslist/add", address="later@maillist.sendcloud.org", name="later")
    reply = client.api("addresslist/update", address=LIST, newAddress=new, name="team", desc="d")
    assert reply["info"] == {"count": 1}
    listed = client.api("addresslist/list")["info"]["dataList"]
    assert [d["address"] for d in listed] == [new, "later@maillist.sendcloud.org"]
    view = sim.address_lists[new]
    assert (view.name, view.description, [m.member for m in view.members]) == (
        "team", "d", ["a@x.com"])
    members = client.api("addressmember/list", address=new)["info"]["dataList"]
    assert members[0]["address"] == new
    assert code(client.api("addresslist/delete", address=LIST)) == 40517
    assert client.api("addresslist/delete", address=new)["info"] == {"count": 1}
    assert list(sim.address_lists) == ["later@maillist.sendcloud.org"]


def test_update_to_an_existing_alias_is_40505(setup):
    _, client, _ = setup
    client.api("addresslist/add", address="b@maillist.sendcloud.org", name="b")
    assert code(client.api("addresslist/update", address=LIST,
                           newAddress="b@maillist.sendcloud.org")) == 40505


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("addressmember/list", {}),
        ("addressmember/get", {"members": "a@x.com"}),
        ("addressmember/add", {"members": "a@x.com"}),
        ("addressmember/update", {"members": "a@x.com"}),
        ("addressmember/delete", {"members": "a@x.com"}),
        ("addresslist/update", {"name": "x"}),
        ("addresslist/delete", {}),
    ],
)
def test_a_list_the_user_does_not_have_is_40517(setup, path, params):
    _, client, _ = setup
    reply = client.api(path, address="ghost@maillist.sendcloud.org", **params)
    assert code(reply) == 40517 and reply["result"] is False


def test_add_members_reports_invalid_and_duplicate_addresses(setup):
    sim, client, _ = setup
    reply = add_members(client, ["1@qq.com", "2.@qq.com", "1@QQ.com", "4@qq.com"],
                        names="one;two;three;four",
                        vars='{"money":"99"};{"a":"1"};{"a":"2"};["not", "an object"]')
    assert reply["result"] is True and reply["statusCode"] == 200
    assert reply["info"] == {"count": 1, "invalidCount": 3,
                             "invalidAddressList": ["2.@qq.com", "1@QQ.com", "4@qq.com"],
                             "reasonList": ["address invalid", "address duplicate",
                                            "vars invalid"]}
    member = sim.address_lists[LIST].member("1@qq.com")
    assert member is not None and (member.name, member.vars) == ("one", {"money": "99"})


def test_add_overwrites_vars_and_update_merges_them(setup):
    sim, client, _ = setup
    add_members(client, ["1@1.com"], vars='{"money":"99","date":"2024-05-01"}')
    add_members(client, ["1@1.com"], vars='{"location":"Shanghai","name":"ignored"}')
    view = sim.address_lists[LIST].member("1@1.com")
    assert view is not None and view.vars == {"location": "Shanghai"}
    client.api("addressmember/update", address=LIST, members="1@1.com",
               vars='{"money":"100","location":"Beijing"}')
    view = sim.address_lists[LIST].member("1@1.com")
    assert view is not None and view.vars == {"location": "Beijing", "money": "100"}


def test_update_members_reasons_rename_and_names(setup):
    sim, client, _ = setup
    add_members(client, ["a@x.com", "b@x.com"], names="A;B")
    reply = client.api("addressmember/update", address=LIST,
                       members="a@x.com;bad@;a@x.com;zz@x.com;b@x.com",
                       newMembers="a2@x.com;c@x.com;d@x.com;e@x.com;a2@x.com",
                       names="A2;;;;")
    assert reply["info"] == {
        "count": 1, "invalidCount": 4,
        "invalidAddressList": ["bad@", "a@x.com", "zz@x.com", "b@x.com"],
        "reasonList": ["address invalid", "address duplicate", "address not found",
                       "address duplicate"]}
    members = [(m.member, m.name) for m in sim.address_lists[LIST].members]
    assert members == [("a2@x.com", "A2"), ("b@x.com", "B")]  # a renamed member keeps its place


def test_member_count_and_vars_rules(setup):
    sim, client, _ = setup
    many = [f"m{i}@x.com" for i in range(1001)]
    assert code(add_members(client, many)) == 40515
    assert code(client.api("addressmember/add", address=LIST)) == 40512
    assert code(client.api("addressmember/add", address=LIST, members=";;")) == 40514
    assert code(add_members(client, ["a" * 45 + "@x.com"])) == 40513
    assert code(add_members(client, ["a@x.com", "b@x.com"], names="only-one")) == 40521
    assert code(add_members(client, ["a@x.com", "b@x.com"], vars='{"a":"1"}')) == 40521
    assert code(add_members(client, ["a@x.com"], vars="")) == 40520
    assert code(add_members(client, ["a@x.com"], vars="{oops}")) == 40522
    long_vars = json.dumps({"k": "v" * 1020})
    assert code(add_members(client, ["a@x.com"], vars=long_vars)) == 40531
    assert code(client.api("addressmember/add", members="a@x.com")) == 40503
    assert sim.address_lists[LIST].members == ()
    assert add_members(client, many[:1000])["info"]["count"] == 1000
    assert len(sim.address_lists[LIST].members) == 1000


def test_vars_may_hold_semicolons_inside_strings(setup):
    sim, client, _ = setup
    add_members(client, ["a@x.com", "b@x.com"], vars='{"note":"x;y\\";z"};')
    a, b = sim.address_lists[LIST].members
    assert (a.vars, b.vars) == ({"note": 'x;y";z'}, {})


def test_member_list_get_and_delete(setup):
    _, client, clock = setup
    add_members(client, ["a@x.com", "b@x.com", "c@x.com"], names="A;;C", vars='{"m":1};;')
    listed = client.api("addressmember/list", method="GET", address=LIST, limit=2)["info"]
    assert listed["total"] == 3 and listed["count"] == 2
    assert listed["dataList"][0] == {"gmtCreated": "2024-05-01 10:00:00",
                                     "gmtUpdated": "2024-05-01 10:00:00", "address": LIST,
                                     "member": "a@x.com", "name": "A", "vars": '{"m":"1"}'}
    assert listed["dataList"][1] == {"gmtCreated": "2024-05-01 10:00:00",
                                     "gmtUpdated": "2024-05-01 10:00:00", "address": LIST,
                                     "member": "b@x.com", "vars": ""}
    got = client.api("addressmember/get", address=LIST, members="c@x.com;zz@x.com")["info"]
    assert got["count"] == 1 and got["dataList"][0]["member"] == "c@x.com"
    assert code(client.api("addressmember/get", address=LIST, members="bad@")) == 40518
    assert code(client.api("addressmember/list", address=LIST, start="x")) == 40002
    clock.advance(5)
    deleted = client.api("addressmember/delete", address=LIST, members="a@x.com;zz@x.com")
    assert deleted["info"] == {"count": 1}
    assert code(client.api("addressmember/delete", address=LIST, members="bad@")) == 40518
    lists = client.api("addresslist/list")["info"]["dataList"]
    assert lists[0]["memberCount"] == 2 and lists[0]["memberUpdated"] == "2024-05-01 10:00:05"
