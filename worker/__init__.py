"""The worker side of sendcloud-jobs: Dramatiq processes that call SendCloud.

One folder per concern; imports point down this list, never up (``tests/test_architecture.py``
checks it, and ``docs/architecture.md`` draws it):

- ``cli/``           the ``sendcloud-jobs`` command and the embedded demo; may import anything
- ``app.py``         the ``dramatiq worker.app`` entry point: builds the broker, declares actors
- ``jobs/``          the job actors, their runner, idempotency records, pauses, results, campaigns
- ``email_status/``  the emailStatus poller: windows, records, its call budget, its scheduler
- ``broker/``        the RedisBroker and its middleware, dead letters
- ``runtime.py``     what one worker process shares: settings, Redis, the SendCloud client
- ``sendcloud/``     the SendCloud API client: the only place that knows SendCloud's wire format
- ``metrics.py``, ``logs.py``, ``settings.py``: process plumbing, imported by every folder

``worker`` may import ``producers`` (the queue contract and the idempotency records);
``producers`` never imports ``worker``.
"""
