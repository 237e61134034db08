"""The web side of sendcloud-jobs, served by ``sendcloud-jobs web``.

* ``app``: ``create_app(settings)``, the ASGI app made of small mounted apps (the hook paths,
  ``/healthz``; more can be mounted beside them);
* ``hooks``: the SendCloud webhook receiver (SMSHook, mail WebHook): verify, then append;
* ``parsing``: a hook body, form or JSON, into the inbox's shape;
* ``store``: the one Lua script a hook costs (window, token dedupe, append);
* ``inbox``: the inbox streams' names and entry format, and ``decode_entry`` for readers;
* ``server``: uvicorn on a socket bound up front;
* ``api/``: the HTTP API under ``/v1/`` (its own unit: it enqueues through ``producers``);
* ``dashboard/``: the operator's dashboard (its own unit: it reads ``producers``, the broker,
  the jobs' and the poller's keys).

The modules here import only plumbing (settings, logs, connections): the receiver verifies
and appends, nothing more; ``api`` and ``dashboard`` may import more (docs/architecture.md).
"""
