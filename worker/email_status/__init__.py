"""The emailStatus poller: one record per status change on ``sendcloud:results:email_status``.

- ``window``:    which span of time one poll reads, and the gaps it reports
- ``records``:   an emailStatus item as a result record, and its change fingerprint
- ``poller``:    pages through a window and emits each change once
- ``ratelimit``: the call budget shared by every process that calls emailStatus
- ``actor``:     the Dramatiq actor that runs one poll, and the slot claim
- ``scheduler``: the APScheduler process that enqueues polls

May import ``worker.sendcloud``, ``worker.runtime``, the process plumbing and ``producers``.
"""
