"""A faithful local stand-in for SendCloud's SMS and mail APIs, with fault injection.

``Simulator`` serves the documented endpoints in process (``sim.transport()`` for httpx) and,
through :func:`simulator.server.serve_in_thread`, over real HTTP; :mod:`simulator.admin`
drives one in another process. With ``hooks=HookSettings(...)`` (or the admin API) it
POSTs signed SMSHook and mail WebHook events to a receiver, as SendCloud does
(:mod:`simulator.hooks`).

Imports nothing of ``worker`` or ``producers``: it plays SendCloud, not a client of it.
"""

from simulator.addresslist import AddressListView, MemberView
from simulator.core import DEMO_CREDENTIALS, Simulator
from simulator.faults import FaultConfig
from simulator.hook_events import HookSettings
from simulator.ledger import Ledger, LedgerEntry
from simulator.sms import Template

__all__ = [
    "DEMO_CREDENTIALS",
    "AddressListView",
    "FaultConfig",
    "HookSettings",
    "Ledger",
    "LedgerEntry",
    "MemberView",
    "Simulator",
    "Template",
]
