"""The SendCloud API client: the only place that knows SendCloud's wire format.

- ``client``:  :class:`SendCloudClient`, signed requests over httpx, typed replies
- ``models``:  the typed replies
- ``errors``:  the exception tree (drawn in its docstring)
- ``codes``:   every documented return code, its meaning and its error class
- ``signing``: the SMS signature (MD5 and SHA-256)
- ``retries``: short jittered retries of transient failures within one call (tenacity)

May import ``worker.settings`` and ``worker.metrics`` only: nothing of jobs, queues or Redis.
"""
