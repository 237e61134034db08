"""Fault injection: what the network and SendCloud's front end do to a request on a bad day.

Faults are configured per endpoint path (``"/smsapi/send"``) or for every path (``"*"``); a
path's own setting replaces ``"*"`` rather than adding to it. Each request rolls its dice once,
in a fixed order, from a ``random.Random`` seeded at construction, so a test that sends the same
requests sees the same faults.

What each fault does to one request:
- ``latency``: the reply is held back that many seconds (outside the simulator's lock);
- ``reset_rate``: the connection is reset before anything happens: no effect, no reply;
- ``gateway_error_rate``: HTTP 502 with an HTML body, as a load balancer answers: no effect;
- ``server_error_rate``: HTTP 200 ``{"statusCode": 501, "message": "sever exception"}``:
  no effect;
- ``throttle_rate``: a frequency-limit reply, no effect. apiv2 paths answer the documented
  ``{"result": false, "statuscode": 50000, "message": "interface frequency is limited",
  "info": {}}`` (lower-case ``statuscode``); smsapi paths answer
  ``{"result": false, "statusCode": 50001, "message": "Frequency limited", "info": {}}``
  (the return-code table's 50001);
- ``drop_after_accept_rate``: the request is processed in full (ledger written, sendRequestId
  remembered) and then the reply is lost: the connection closes with no response.

And one limit: ``capacity``, the requests an endpoint serves at once (0: no limit). A request
beyond it waits its turn, then is served (latency included), as at a provider whose front end
is the bottleneck: more clients then add waiting, not throughput. ``Faults.busy(path)`` says
how many are being served and how many wait.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

ALL = "*"


@dataclass(frozen=True)
class FaultConfig:
    latency: float = 0.0
    server_error_rate: float = 0.0
    throttle_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_accept_rate: float = 0.0
    gateway_error_rate: float = 0.0
    capacity: float = 0  # a whole number; stored as an int

    def __post_init__(self) -> None:
        if not math.isfinite(self.latency) or self.latency < 0:
            raise ValueError(f"latency must be a finite number >= 0, got {self.latency}")
        if not math.isfinite(self.capacity) or self.capacity < 0 \
                or self.capacity != int(self.capacity):
            raise ValueError(f"capacity must be a whole number >= 0, got {self.capacity}")
        object.__setattr__(self, "capacity", int(self.capacity))  # 8.0 from JSON is 8
        for field in fields(self):
            if field.name.endswith("_rate"):
                rate = getattr(self, field.name)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"{field.name} must be within 0..1, got {rate}")

    def to_json(self) -> dict[str, float]:
        return asdict(self)


class _Slots:
    """An endpoint's ``capacity``: a semaphore, and how many hold it or wait for it."""

    def __init__(self, capacity: int) -> None:
        self.semaphore = threading.Semaphore(capacity)
        self.serving = 0
        self.waiting = 0
        self.lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self.lock:
            self.waiting += 1
        self.semaphore.acquire()
        with self.lock:
            self.waiting -= 1
            self.serving += 1
        try:
            yield
        finally:
            with self.lock:
                self.serving -= 1
            self.semaphore.release()


@dataclass(frozen=True)
class FaultDecision:
    latency: float = 0.0
    reset: bool = False
    gateway_error: bool = False
    server_error: bool = False
    throttle: bool = False
    drop_after_accept: bool = False
    slots: _Slots | None = None

    @contextmanager
    def served(self) -> Iterator[None]:
        """Holds one of the endpoint's slots, if it has a ``capacity``, while the body runs."""
        if self.slots is None:
            yield
        else:
            with self.slots.hold():
                yield


NO_FAULT = FaultDecision()


class Faults:
    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)
        self._configs: dict[str, FaultConfig] = {}
        self._slots: dict[str, _Slots] = {}

    def set(
        self,
        endpoint: str = ALL,
        *,
        latency: float = 0.0,
        server_error_rate: float = 0.0,
        throttle_rate: float = 0.0,
        reset_rate: float = 0.0,
        drop_after_accept_rate: float = 0.0,
        gateway_error_rate: float = 0.0,
        capacity: float = 0,
    ) -> FaultConfig:
        """Replace the faults of ``endpoint`` (a path such as "/smsapi/send", or "*")."""
        if endpoint != ALL and not endpoint.startswith("/"):
            raise ValueError(f"endpoint must be '*' or a path starting with '/', got {endpoint!r}")
        config = FaultConfig(
            latency=latency,
            server_error_rate=server_error_rate,
            throttle_rate=throttle_rate,
            reset_rate=reset_rate,
            drop_after_accept_rate=drop_after_accept_rate,
            gateway_error_rate=gateway_error_rate,
            capacity=capacity,
        )
        with self._lock:
            self._configs[endpoint] = config
            # Requests already holding or awaiting the old slots finish under them.
            if config.capacity:
                self._slots[endpoint] = _Slots(int(config.capacity))
            else:
                self._slots.pop(endpoint, None)
        return config

    def busy(self, endpoint: str) -> tuple[int, int]:
        """(being served, waiting) under ``endpoint``'s capacity; (0, 0) without one."""
        with self._lock:
            slots = self._slots.get(endpoint)
        if slots is None:
            return 0, 0
        with slots.lock:
            return slots.serving, slots.waiting

    def clear(self, endpoint: str | None = None) -> None:
        """Remove the faults of one endpoint, or of all of them."""
        with self._lock:
            if endpoint is None:
                self._configs.clear()
                self._slots.clear()
            else:
                self._configs.pop(endpoint, None)
                self._slots.pop(endpoint, None)

    def reset(self) -> None:
        """No faults, and the dice back at their seed."""
        with self._lock:
            self._configs.clear()
            self._slots.clear()
            self._rng = random.Random(self._seed)

    def configs(self) -> dict[str, FaultConfig]:
        with self._lock:
            return dict(self._configs)

    def decide(self, path: str) -> FaultDecision:
        with self._lock:
            where = path if path in self._configs else ALL
            config = self._configs.get(where)
            if config is None:
                return NO_FAULT
            return FaultDecision(
                latency=config.latency,
                reset=self._roll(config.reset_rate),
                gateway_error=self._roll(config.gateway_error_rate),
                server_error=self._roll(config.server_error_rate),
                throttle=self._roll(config.throttle_rate),
                drop_after_accept=self._roll(config.drop_after_accept_rate),
                slots=self._slots.get(where),
            )

    def _roll(self, rate: float) -> bool:
        # A zero rate draws nothing, so turning one fault on leaves the others' sequence alone.
        return rate > 0.0 and self._rng.random() < rate


def config_from_json(data: dict[str, Any]) -> dict[str, float]:
    """The keyword arguments of :meth:`Faults.set` found in a JSON object."""
    names = {field.name for field in fields(FaultConfig)}
    unknown = set(data) - names - {"endpoint"}
    if unknown:
        raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
    return {name: float(data[name]) for name in names if name in data}
