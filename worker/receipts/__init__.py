"""Delivery receipts: SendCloud's SMSHook events matched to the jobs that sent them.

- ``matcher``:  one event to at most one record on ``sendcloud:results:sms_delivery``, through
  the smsId index, with the recipient's delivery state and the campaign's counts
- ``mail``:     mail WebHook events onto ``sendcloud:results:email_status``, each status change
  once whether the poller or the hook saw it first
- ``consumer``: the consumer groups over the web process's inbox streams that feed those two

May import ``worker.jobs`` (record helpers), ``worker.email_status`` (the poller's seen-hashes
and tables), ``worker.sendcloud`` (the SMSHook code table), the process plumbing and
``producers``.
"""
