"""Delivery receipts: SendCloud's SMSHook events matched to the jobs that sent them.

- ``matcher``:  one event to at most one record on ``sendcloud:results:sms_delivery``, through
  the smsId index, with the recipient's delivery state and the campaign's counts
- ``consumer``: the consumer group over the web process's inbox stream that feeds the matcher

May import ``worker.jobs`` (record helpers), ``worker.sendcloud`` (the SMSHook code table),
the process plumbing and ``producers``.
"""
