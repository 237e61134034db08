"""The operator's dashboard, mounted at ``/dashboard`` by ``sendcloud-jobs web --dashboard``.

Server-rendered Jinja2 pages (``templates/``) with a little JavaScript and a vendored Chart.js
(``static/``): ``app`` (the Starlette app and its middleware), ``views`` (the pages and
actions), ``security`` (login, session, CSRF, roles, login rate limits, masking), ``users``
(operators stored in Redis with Argon2 hashes), ``reads`` (what the overview reads), ``queues``
(dead letters) and ``reports`` (the campaign report streamed as CSV).
"""
