"""The baseline for ``bench.overhead``: a bare Dramatiq actor making the same signed POST.

``dramatiq bench.bare_app --queues bench.bare`` (the Procfile's command on this module). Out of
the box Dramatiq (its default middleware) and httpx, and nothing else: no idempotency record,
no retries, no result record, no logging, no metrics. It sends exactly the request that
``worker.sendcloud.client.SendCloudClient.send_code`` sends (same parameters, same signature),
so the difference in throughput is what the product adds around the call.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import dramatiq
import httpx
from dramatiq.brokers.redis import RedisBroker

from worker.sendcloud.signing import sign

QUEUE = "bench.bare"
ACTOR = "bench_bare_send_code"

broker = RedisBroker(url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)

_local = threading.local()


def _client() -> httpx.Client:
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        # Read at first use, not import, so a process may import this module before configuring.
        base_url = os.environ.get("SENDCLOUD_BASE_URL", "http://127.0.0.1:8765")
        client = httpx.Client(base_url=base_url, timeout=15.0,
                              headers={"Accept": "application/json"})
        _local.client = client
    return client


def signed_code_params(payload: dict[str, Any]) -> dict[str, str]:
    params = {
        "phone": str(payload["phone"]),
        "code": str(payload["code"]),
        "msgType": str(payload.get("msg_type") or 0),
        "signId": str(payload["sign_id"]),
        "smsUser": os.environ.get("SENDCLOUD_SMS_USER", ""),
        "timestamp": str(int(time.time() * 1000)),
    }
    params["signature"] = sign(params, os.environ.get("SENDCLOUD_SMS_KEY", ""))
    return params


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, max_retries=0)
def bare_send_code(payload: dict[str, Any]) -> None:
    reply = _client().post("/smsapi/sendCode", data=signed_code_params(payload))
    reply.raise_for_status()
