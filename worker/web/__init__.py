"""The web side of sendcloud-jobs, served by ``sendcloud-jobs web``.

* ``app``: ``create_app(settings)``, the ASGI app made of small mounted apps (the hook paths,
  ``/healthz``; more can be mounted beside them);
* ``hooks``: the SendCloud webhook receiver (SMSHook, mail WebHook): verify, then append;
* ``parsing``: a hook body, form or JSON, into the inbox's shape;
* ``store``: the one Lua script a hook costs (window, token dedupe, append);
* ``inbox``: the inbox streams' names and entry format, and ``decode_entry`` for readers;
* ``server``: uvicorn on a socket bound up front.

Imports only plumbing (settings, logs): the receiver verifies and appends, nothing more.
"""
