"""``sendcloud-jobs receipts``: the process that matches delivery receipts to their jobs.

The web process appends each verified SMSHook event to the inbox stream; this consumer turns
each (smsId, event) into one record on ``sendcloud:results:sms_delivery`` (see
:mod:`worker.receipts`). Run one or more (the Procfile's ``receipts`` entry); each takes its
share of the inbox, and one that dies leaves its entries to the others. Stop it with Ctrl-C or
SIGTERM: it finishes the batch in hand.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType
from typing import Any

from worker import connections


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "receipts", help="match SMS delivery receipts (from `sendcloud-jobs web`) to their jobs",
        description="Read the SMS hook inbox and write one delivery record per (smsId, event) "
        "to the sms_delivery result stream, with each recipient's state and the campaign's "
        "counts; read the mail hook inbox and publish each event to the email_status stream. "
        "Uses REDIS_URL, SENDCLOUD_RECEIPT_WINDOW, SENDCLOUD_RECEIPT_MATCH_WAIT and "
        "SENDCLOUD_RECEIPT_RETRY.",
    )
    parser.add_argument("--name", default=None,
                        help="this consumer's name in the group (default: host and pid)")
    parser.set_defaults(func=run_receipts)


def run_receipts(args: argparse.Namespace) -> int:
    import threading

    import structlog

    from worker.logs import configure_logging
    from worker.receipts.consumer import Consumer
    from worker.receipts.mail import MailEvents
    from worker.receipts.matcher import Matcher
    from worker.settings import Settings
    from worker.web.inbox import MAIL_INBOX

    settings = Settings.from_env()
    configure_logging(settings)
    client = connections.redis_client(settings)
    client.ping()  # unreachable: one line at start-up (see worker.cli.main)
    matcher = Matcher(client, window=settings.receipt_window,
                      match_wait=settings.receipt_match_wait, maxlen=settings.results_maxlen)
    consumer = Consumer(client, matcher, name=args.name, retry_after=settings.receipt_retry)
    mail = Consumer(client, MailEvents(client, window=settings.receipt_window,
                                       maxlen=settings.results_maxlen),
                    name=args.name, retry_after=settings.receipt_retry, inbox=MAIL_INBOX)
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    log = structlog.get_logger("sendcloud.receipts")
    log.info("receipts.started", consumer=consumer.name)
    # Mail hooks are few beside SMS receipts: a thread of their own is enough.
    mail_thread = threading.Thread(target=mail.run, kwargs={"stop": lambda: stopping},
                                   name="mail-receipts", daemon=True)
    mail_thread.start()
    try:
        consumer.run(stop=lambda: stopping)
    except KeyboardInterrupt:
        stopping = True
    finally:
        mail_thread.join(timeout=5)
        log.info("receipts.stopped", consumer=consumer.name, recorded=consumer.totals.recorded,
                 duplicate=consumer.totals.duplicate, mail_recorded=mail.totals.recorded)
        client.close()
    return 0
