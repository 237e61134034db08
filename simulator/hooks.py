"""The simulator's webhook side: which events each accepted send and email lead to, and the truth.

With an SMS hook URL set, every accepted ``send``, ``sendCode`` and ``sendVoice`` (200/311)
leads to one ``request`` event (its smsIds and phones) and, per accepted smsId, exactly one
final outcome drawn from ``sms_mix`` (``deliver``, ``workererror`` with a 410..460 code,
``delivererror`` with a 500..590 code), then, for a share ``reply_rate`` of the delivered, a
``reply``. The outcome of each smsId is kept (one byte each) as the truth tests compare a
receiver's view with; ``stats()['sms']['expected']`` names it in the product's words
(deliver: delivered, delivererror: undelivered, workererror: rejected).

With a mail hook URL set, every email seeded as requesting (emailStatus 18) gets a
``request`` event per seeding call and a final status drawn from ``mail_mix`` (``deliver``,
``invalid`` or ``soft_bounce`` with a substat), which is written to its emailStatus record as
well, so polling and hooks tell the same story; a delivered email is then opened
(``open_rate``) and an opened one clicked (``click_rate``). Emails moved by
``advance_email_status`` post the event of their new status.

Events can also be made by hand (``trigger_sms``, ``trigger_mail``) for a known smsId or
emailId; they count as ``triggered``, not as chosen outcomes. Delivery itself is
:mod:`simulator.hook_dispatch`'s.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from simulator.email_status import SUB_STATUS_TEXT, EmailRecord, EmailStatusStore
from simulator.hook_dispatch import Event, HookDispatcher
from simulator.hook_events import (
    DELIVER_ERRORS,
    MAIL_FINAL_EVENTS,
    MAIL_SUBSTATS,
    REPLIES,
    SMS_EXPECTED,
    SMS_FINAL_EVENTS,
    WORKER_ERRORS,
    HookSettings,
    mail_event_fields,
    mail_request_fields,
    sms_outcome_fields,
    sms_reply_fields,
    sms_request_fields,
)
from simulator.ledger import Batch, Ledger

Outcome = tuple[str, int | None]  # (event, statusCode)
#: Each smsId's outcome as one byte: an index in this table, plus REPLIED if a reply follows.
OUTCOMES: list[Outcome] = [
    ("deliver", None),
    *(("workererror", code) for code in WORKER_ERRORS),
    *(("delivererror", code) for code in DELIVER_ERRORS),
]
_FIRST = {event: next(i for i, (e, _) in enumerate(OUTCOMES) if e == event)
          for event in SMS_FINAL_EVENTS}
_CODES = {"workererror": len(WORKER_ERRORS), "delivererror": len(DELIVER_ERRORS)}
REPLIED = 0x80
MAIL_STATUS = {"deliver": 1, "invalid": 4, "soft_bounce": 5}
STATUS_EVENT = {status: event for event, status in MAIL_STATUS.items()}


class SmsSource:
    """One accepted request: its ledger batch and, once started, one outcome byte per smsId."""

    __slots__ = ("_cursor", "_hooks", "batch", "outcomes")

    def __init__(self, batch: Batch, hooks: Hooks) -> None:
        self.batch, self._hooks = batch, hooks
        self.outcomes: bytearray | None = None
        self._cursor = -1

    def start(self, rng: random.Random, settings: HookSettings) -> int:
        mix = settings.sms_mix
        delivered = mix.get("deliver", 0.0)
        refused = delivered + mix.get("workererror", 0.0)
        outcomes = bytearray(len(self.batch.sms_ids))
        roll, pick, reply_rate = rng.random, rng.randrange, settings.reply_rate
        worker, deliver_error = _FIRST["workererror"], _FIRST["delivererror"]
        for i in range(len(outcomes)):
            r = roll()
            if r < delivered:
                outcomes[i] = REPLIED if reply_rate > 0 and roll() < reply_rate else 0
            elif r < refused:
                outcomes[i] = worker + pick(_CODES["workererror"])
            else:
                outcomes[i] = deliver_error + pick(_CODES["delivererror"])
        self.outcomes = outcomes
        self._hooks.sms_chosen.update(outcomes)
        return 1 + len(outcomes) + sum(b >= REPLIED for b in outcomes)

    def next_event(self) -> Event | None:
        batch, user, i = self.batch, self._hooks.sms_user, self._cursor
        self._cursor += 1
        if i < 0:
            return Event("sms", sms_request_fields(sms_user=user, template_id=batch.template_id,
                                                   sms_ids=batch.sms_ids, phones=batch.phones))
        assert self.outcomes is not None
        if i >= len(self.outcomes):
            return None
        event, code = OUTCOMES[self.outcomes[i] & ~REPLIED]
        sms_id, phone = batch.sms_ids[i], batch.phones[i]
        first = Event("sms", sms_outcome_fields(event, sms_user=user, sms_id=sms_id,
                                                phone=phone, template_id=batch.template_id,
                                                status_code=code))
        if self.outcomes[i] & REPLIED:
            first.then = Event("sms", sms_reply_fields(
                sms_user=user, template_id=batch.template_id, sms_id=sms_id, phone=phone,
                content=REPLIES[i % len(REPLIES)], reply_time=self._hooks.clock_ms()))
        return first


class ReadySource:
    """Events whose content is known already (emails, events made by hand)."""

    def __init__(self, events: list[Event], counter: str | None = None,
                 counts: Counter[str] | None = None) -> None:
        self._events, self._counter, self._counts = events, counter, counts
        self._next = 0

    def start(self, rng: random.Random, settings: HookSettings) -> int:
        if self._counter is not None and self._counts is not None:
            self._counts[self._counter] += len(self._events)
        return sum(1 + event.chain() for event in self._events)

    def next_event(self) -> Event | None:
        if self._next >= len(self._events):
            return None
        self._next += 1
        return self._events[self._next - 1]


class Hooks:
    def __init__(self, *, settings: HookSettings, ledger: Ledger, emails: EmailStatusStore,
                 sms_user: str, api_user: str, clock_ms: Callable[[], int]) -> None:
        self._initial = settings
        self._ledger, self._emails = ledger, emails
        self.sms_user, self.api_user, self.clock_ms = sms_user, api_user, clock_ms
        self.dispatcher = HookDispatcher(settings, clock_ms)
        self._reset_state(settings)

    @property
    def settings(self) -> HookSettings:
        return self.dispatcher.settings

    def _reset_state(self, settings: HookSettings) -> None:
        self.sms_chosen: Counter[int] = Counter()
        self.mail_chosen: Counter[str] = Counter()
        self._sources: list[SmsSource] = []
        self._mail_rng = random.Random(f"mail:{settings.seed}")
        self._messages = 0
        self._ledger.listener = self._accepted if settings.sms_url else None

    def configure(self, changes: dict[str, Any]) -> HookSettings:
        settings = self.settings.updated(changes)
        if settings.seed != self.settings.seed:
            self._mail_rng = random.Random(f"mail:{settings.seed}")
        self.dispatcher.configure(settings)
        self._ledger.listener = self._accepted if settings.sms_url else None
        return settings

    def reset(self) -> None:
        self.dispatcher.reset(self._initial)
        self._reset_state(self._initial)

    def close(self) -> None:
        self.dispatcher.close()

    # -- SMS -------------------------------------------------------------------------------

    def _accepted(self, batch: Batch) -> None:
        source = SmsSource(batch, self)
        self._sources.append(source)
        self.dispatcher.submit(source)

    def sms_outcomes(self, sms_ids: Sequence[str] | None = None) -> dict[str, Outcome]:
        """The outcome chosen for each smsId (all, or those asked for that have one)."""
        wanted = None if sms_ids is None else set(sms_ids)
        _, sources = self.dispatcher.snapshot(lambda: [(s.batch.sms_ids, s.outcomes)
                                                       for s in self._sources])
        found: dict[str, Outcome] = {}
        for ids, outcomes in sources:
            if outcomes is None:
                continue
            for sms_id, byte in zip(ids, outcomes, strict=True):
                if wanted is None or sms_id in wanted:
                    found[sms_id] = OUTCOMES[byte & ~REPLIED]
        return found

    def trigger_sms(self, sms_id: str, event: str, *, status_code: int | None = None,
                    reply_content: str = "TD") -> None:
        if not self.settings.sms_url:
            raise ValueError("sms_url: no SMS hook is set")
        entry = self._ledger.find(sms_id)
        if entry is None:
            raise ValueError(f"sms_id: {sms_id!r} is not in the ledger")
        template_id, user = entry.template_id, self.sms_user
        if event == "request":
            fields = sms_request_fields(sms_user=user, template_id=template_id,
                                        sms_ids=[sms_id], phones=[entry.phone])
        elif event == "reply":
            fields = sms_reply_fields(sms_user=user, template_id=template_id, sms_id=sms_id,
                                      phone=entry.phone, content=reply_content,
                                      reply_time=self.clock_ms())
        elif event in SMS_FINAL_EVENTS:
            fields = sms_outcome_fields(event, sms_user=user, template_id=template_id,
                                        sms_id=sms_id, phone=entry.phone,
                                        status_code=status_code)
        else:
            raise ValueError("event: must be request, deliver, workererror, delivererror "
                             "or reply")
        self.dispatcher.submit(ReadySource([Event("sms", fields)], "triggered",
                                           self.dispatcher.counts))

    # -- mail ------------------------------------------------------------------------------

    def emails_sent(self, email_ids: list[str]) -> None:
        """Emails just seeded as requesting: draw each one's fate, record it, post it."""
        settings = self.settings
        if not settings.mail_url or not email_ids:
            return
        records = {r.email_id: r for r in self._emails.records()}
        chosen = [records[i] for i in email_ids]
        self._messages += 1
        events = [Event("mail", mail_request_fields(
            api_user=self.api_user, email_ids=email_ids,
            recipients=[r.recipient for r in chosen],
            message_id=f"{email_ids[0].split('_', 1)[0]}_{self._messages}.sim-inbound0"))]
        rng, mix = self._mail_rng, settings.mail_mix
        with self.dispatcher.lock:  # the counts are read by stats() on other threads
            events += [self._settle(record, rng, mix, settings) for record in chosen]
        self.dispatcher.submit(ReadySource(events))

    def _settle(self, record: EmailRecord, rng: random.Random, mix: dict[str, float],
                settings: HookSettings) -> Event:
        """Draw one email's fate, write it to its record; its events."""
        r, cut, event = rng.random(), 0.0, MAIL_FINAL_EVENTS[-1]
        for name in MAIL_FINAL_EVENTS:  # the last takes what rounding leaves
            cut += mix.get(name, 0.0)
            if r < cut:
                event = name
                break
        substat = rng.choice(MAIL_SUBSTATS[event]) if event in MAIL_SUBSTATS else None
        self._emails.advance([record.email_id], count=None, status=MAIL_STATUS[event],
                             sub_status=substat)
        self.mail_chosen[event] += 1
        if substat is not None:
            self.mail_chosen[f"{event}:{substat}"] += 1
        first = self._mail_event(event, record.email_id, record.recipient, substat)
        if event == "deliver" and rng.random() < settings.open_rate:
            self.mail_chosen["open"] += 1
            first.then = self._mail_event("open", record.email_id, record.recipient)
            if rng.random() < settings.click_rate:
                self.mail_chosen["click"] += 1
                first.then.then = self._mail_event("click", record.email_id,
                                                   record.recipient)
        return first

    def emails_advanced(self, email_ids: list[str]) -> None:
        """Emails moved by hand to a final status: post the event of that status."""
        if not self.settings.mail_url:
            return
        records = {r.email_id: r for r in self._emails.records()}
        events = [self._mail_event(STATUS_EVENT[r.status], r.email_id, r.recipient,
                                   r.sub_status)
                  for r in (records[i] for i in email_ids) if r.status in STATUS_EVENT]
        if events:
            self.dispatcher.submit(ReadySource(events, "advanced", self.dispatcher.counts))

    def trigger_mail(self, email_id: str, event: str, *, substat: int | None = None) -> None:
        if not self.settings.mail_url:
            raise ValueError("mail_url: no mail hook is set")
        record = next((r for r in self._emails.records() if r.email_id == email_id), None)
        if record is None:
            raise ValueError(f"email_id: {email_id!r} is not a known email")
        if event == "request":
            fields = mail_request_fields(api_user=self.api_user, email_ids=[email_id],
                                         recipients=[record.recipient],
                                         message_id=email_id.split("$", 1)[0])
            built = Event("mail", fields)
        else:
            built = self._mail_event(event, email_id, record.recipient, substat)
        self.dispatcher.submit(ReadySource([built], "triggered", self.dispatcher.counts))

    def _mail_event(self, event: str, email_id: str, recipient: str,
                    substat: int | None = None) -> Event:
        desc = "" if substat is None else SUB_STATUS_TEXT.get(substat, "").split("-", 1)[-1]
        return Event("mail", mail_event_fields(event, api_user=self.api_user, email_id=email_id,
                                               recipient=recipient, substat=substat,
                                               substat_desc=desc))

    # -- the truth -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        counts, (sms, mail) = self.dispatcher.snapshot(
            lambda: (Counter(self.sms_chosen), Counter(self.mail_chosen)))
        outcomes: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        for byte, n in sms.items():
            event, code = OUTCOMES[byte & ~REPLIED]
            outcomes[event] += n
            if code is not None:
                codes[str(code)] += n
        posted = {channel: {key.split(":", 1)[1]: n for key, n in counts.items()
                            if key.startswith(f"{channel}:")} for channel in ("sms", "mail")}
        return {
            "sms": {
                "outcomes": {event: outcomes[event] for event in SMS_FINAL_EVENTS},
                "status_codes": dict(sorted(codes.items())),
                "replies": sum(n for byte, n in sms.items() if byte & REPLIED),
                "expected": {SMS_EXPECTED[e]: outcomes[e] for e in SMS_FINAL_EVENTS},
                "posted": posted["sms"],
            },
            "mail": {
                "outcomes": {e: mail[e] for e in MAIL_FINAL_EVENTS},
                "substats": {k.split(":", 1)[1]: n for k, n in sorted(mail.items())
                             if ":" in k},
                "opens": mail["open"], "clicks": mail["click"], "posted": posted["mail"],
            },
            "duplicates": {"same_token": counts.get("duplicates_same_token", 0),
                           "fresh_token": counts.get("duplicates_fresh_token", 0)},
            **{name: counts.get(name, 0) for name in (
                "attempts", "retries", "given_up", "held_back", "reordered", "triggered",
                "advanced", "pending", "window")},
        }
