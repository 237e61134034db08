"""The simulator's SMSHook side over real HTTP: a served simulator, its admin API, a receiver.

Every test checks every signature the receiver got; counts are compared with the truth the
simulator exposes (``hook_stats``, ``sms_outcomes``), never with timings.
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from typing import Any

from simulator.hook_events import DELIVER_ERRORS, WORKER_ERRORS
from tests.hook_receiver import phones

TABLES = {"workererror": WORKER_ERRORS, "delivererror": DELIVER_ERRORS}


def test_every_accepted_number_gets_one_request_and_one_outcome_matching_the_truth(rig):
    r = rig(seed=11)
    sent = [r.send(phones(500, 500 * k)) for k in range(3)]
    stats = r.settle()
    requests = r.receiver.events("request")
    assert sorted(map(tuple, (e.fields["smsIds"] for e in requests))) == sorted(map(tuple, sent))
    for event in requests:
        assert event.fields["phones"] == [i.split("$")[1] for i in event.fields["smsIds"]]
        assert event.fields["smsUser"] == "sim_sms_user" and event.fields["templateId"] == "1"
    finals = [e for e in r.receiver.events() if e.event != "request"]
    by_id = {e.fields["smsId"]: e for e in finals}
    assert len(by_id) == len(finals) == 1500  # exactly one outcome per smsId
    truth = r.admin.sms_outcomes()
    assert set(truth) == {i for ids in sent for i in ids} == set(by_id)
    for sms_id, event in by_id.items():
        code = event.fields.get("statusCode")
        assert (event.event, None if code is None else int(code)) == truth[sms_id]
        assert event.fields["phone"] == sms_id.split("$")[1]
        if event.event != "deliver":
            message = TABLES[event.event][int(code)]
            assert event.fields["message"] == message
            assert base64.b64decode(event.fields["encodeMessage"]).decode() == message
    seen = Counter(e.event for e in finals)
    assert stats["sms"]["outcomes"] == {k: seen[k] for k in ("deliver", "workererror",
                                                                "delivererror")}
    assert stats["sms"]["status_codes"] == dict(sorted(Counter(
        str(e.fields["statusCode"]) for e in finals if "statusCode" in e.fields).items()))
    assert stats["sms"]["expected"] == {"delivered": seen["deliver"],
                                        "undelivered": seen["delivererror"],
                                        "rejected": seen["workererror"]}
    # The default mix (0.9 / 0.07 / 0.03), within four standard deviations of 1500 draws.
    for event, share, slack in (("deliver", 0.9, 0.031), ("delivererror", 0.07, 0.027),
                                ("workererror", 0.03, 0.018)):
        assert abs(seen[event] / 1500 - share) < slack, (event, seen[event])
    assert stats["sms"]["posted"] == {"request": 3, **{k: v for k, v in seen.items()}}
    assert stats["attempts"] == r.receiver.posts == 1503
    assert (stats["retries"], stats["given_up"]) == (0, 0)


def test_a_custom_mix_and_replies_are_honoured_exactly_as_the_stats_say(rig):
    r = rig(seed=3, sms_mix={"deliver": 0.5, "workererror": 0.5}, reply_rate=0.4,
            encoding="json")
    ids = r.send(phones(400))
    stats = r.settle()
    assert stats["sms"]["outcomes"]["delivererror"] == 0
    assert set(stats["sms"]["status_codes"]) <= {str(c) for c in WORKER_ERRORS}
    delivered = {e.fields["smsId"] for e in r.receiver.events("deliver")}
    replies = r.receiver.events("reply")
    assert len(delivered) == stats["sms"]["outcomes"]["deliver"]
    assert len(replies) == stats["sms"]["replies"] > 0
    assert {e.fields["smsId"] for e in replies} <= delivered
    order = [(e.event, e.fields.get("smsId")) for e in r.receiver.events()]
    for reply in replies:  # a reply is posted only once its deliver was accepted
        sms_id = reply.fields["smsId"]
        assert order.index(("deliver", sms_id)) < order.index(("reply", sms_id))
        assert base64.b64decode(reply.fields["encodeReplyContent"]).decode() \
            == reply.fields["replyContent"]
    [request] = r.receiver.events("request")
    assert request.content_type == "application/json"
    assert isinstance(request.raw["smsIds"], str) and request.fields["smsIds"] == ids
    assert isinstance(request.raw["timestamp"], int) and isinstance(request.raw["eventType"], int)


def test_mixed_encoding_sends_both_and_each_verifies(rig):
    r = rig(seed=5, encoding="mixed")
    r.send(phones(200))
    r.settle()
    types = Counter(e.content_type.split(";")[0] for e in r.receiver.events())
    assert set(types) == {"application/json", "application/x-www-form-urlencoded"}
    assert sum(types.values()) == 201


def test_duplicates_follow_the_ratio_and_the_seed(rig):
    def run(r: Any) -> tuple[dict[str, Any], set[tuple[str, str, bool]]]:
        r.send(phones(300))
        stats = r.settle()
        posts: dict[tuple[str, str], list[str]] = {}
        for event in r.receiver.events():
            posts.setdefault((event.event, event.item.split("$")[-1]), []).append(event.token)
        twice = {(event, phone, tokens[0] == tokens[1])
                 for (event, phone), tokens in posts.items() if len(tokens) == 2}
        assert all(len(tokens) in (1, 2) for tokens in posts.values())
        same = sum(1 for *_, same in twice if same)
        assert stats["duplicates"] == {"same_token": same, "fresh_token": len(twice) - same}
        return stats, twice

    r = rig(seed=21, duplicate_ratio=0.2)
    first_stats, first = run(r)
    assert 30 < len(first) < 90 and 0 < first_stats["duplicates"]["same_token"] < len(first)
    r.restart(seed=21, duplicate_ratio=0.2)
    again_stats, again = run(r)
    assert again == first and again_stats["duplicates"] == first_stats["duplicates"]


def test_held_back_events_arrive_after_later_ones_as_counted(rig):
    def run(r: Any) -> dict[str, Any]:
        r.send(phones(300))
        stats = r.settle()
        # One connection: events not held arrive in the order they were drawn (the request,
        # then the smsIds in order); an event arrives late if a later one came before it.
        ranks = [-1 if e.event == "request" else int(e.item.split("$")[1]) - 13900000000
                 for e in r.receiver.events()]
        late = sum(1 for i, rank in enumerate(ranks) if any(x > rank for x in ranks[:i]))
        assert stats["reordered"] == late
        return stats

    r = rig(seed=8, sms_mix={"deliver": 1.0}, reorder_ratio=0.1, connections=1)
    first = run(r)
    assert 10 < first["held_back"] < 60 and 0 < first["reordered"] <= first["held_back"]
    r.restart(seed=8, sms_mix={"deliver": 1.0}, reorder_ratio=0.1, connections=1)
    assert run(r)["held_back"] == first["held_back"]


def test_refused_posts_are_retried_until_accepted_and_nothing_is_lost(rig):
    r = rig(connections=1)
    r.receiver.status_for = lambda n: 500 if n <= 6 else 200
    ids = r.send(phones(40))
    stats = r.settle()
    assert len(r.receiver.refused) == 6 and stats["retries"] == 6
    assert stats["given_up"] == 0 and stats["attempts"] == 41 + 6
    assert sorted(e.fields["smsId"] for e in r.receiver.events() if e.event != "request") \
        == sorted(ids)


def test_an_unreachable_receiver_is_retried_until_it_is_there(rig):
    r = rig(max_attempts=1000)
    r.admin.configure_hooks(sms_url="http://127.0.0.1:9/sms")  # discard port: nothing answers
    ids = r.send(phones(20))
    while r.admin.hook_stats()["retries"] < 21:  # every event failed at least once
        assert not r.admin.wait_for_hooks(0.05)
    r.admin.configure_hooks(sms_url=r.receiver.url("/sms"))
    stats = r.settle()
    assert stats["given_up"] == 0
    assert sorted(e.fields["smsId"] for e in r.receiver.events("deliver")
                  + r.receiver.events("workererror") + r.receiver.events("delivererror")) \
        == sorted(ids)


def test_events_are_given_up_after_max_attempts(rig):
    r = rig(max_attempts=3)
    r.receiver.status_for = lambda n: 503
    r.send(phones(5))
    stats = r.settle()
    assert stats["given_up"] == 6 and stats["attempts"] == 18 == r.receiver.posts
    assert r.receiver.accepted == []


def test_a_send_answers_while_the_receiver_holds_every_hook(rig):
    r = rig(connections=1)
    r.receiver.gate = gate = threading.Event()
    r.send(phones(3))
    assert r.receiver.first_arrival.wait(30)
    r.send(phones(3, 100))  # the only connection is held by the receiver
    with r.receiver.lock:
        r.receiver.log.append("second send answered")
    gate.set()
    r.settle()
    log = r.receiver.log
    assert log.index("arrived 1") < log.index("second send answered") < log.index("answered 1")
    assert len(r.receiver.events()) == 8
