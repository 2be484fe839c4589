"""The production HTTP server: gunicorn's threaded worker, with each request received whole before a thread runs it.

Why: gunicorn's gthread worker gives a connection to one of its threads as soon as bytes arrive, and the thread
then blocks reading the body: 32 uploads stalled mid-body held every thread of the default two processes and the
service stopped answering (issue 7). `worker.BufferingWorker` keeps gthread's processes, thread pool, HTTP parser
and WSGI handling, but receives the head and the body of every request in the worker's event loop, as nginx's
request buffering does, and queues only a complete request for a thread. A stalled client costs a socket and a
file, never a thread, and the connections of a process are capped (`budget`), so stalled sockets cannot exhaust
descriptors either. A request has `request_timeout` seconds to arrive, plus one second per `request_min_rate`
bytes received (a large upload on a slow link is fine, a trickle is not); past that it is answered 408 and closed.

Everything the server refuses before the application runs (a malformed request line, headers too large, a body
larger than the upload limit, shorter than its Content-Length, or too slow) is an `api.errors.ApiError`,
answered with the API's JSON body. So is a request with a body that the access gate (`api.access.Gate`: API key,
backpressure) refuses from its head alone: its body is never received, let alone written to disk.

The modules, in the order a request meets them:
- `head`: where a head ends in the bytes received, and its parse by gunicorn's parser;
- `connection`: a connection and the receiving of its current request (head, gate, body, limits);
- `chunked`: the chunked-body decoder, a pure function of the bytes fed to it;
- `bodies`: where a body goes meanwhile (split into an upload's parts on arrival, or spooled);
- `worker`: the event loop and the threads (gunicorn's gthread worker, overridden);
- `application`: gunicorn configured from the settings, and `serve`; `budget`: connections per process.

Why not a maintained server instead (issue 16): measured by `bench/servers.py` on loopback, one process each,
against the real app (`apercu.api.create_app`, API keys on, APERCU_MAX_PENDING=1): 200 uploads stalled after
their head and half their body, then `GET /` and a normal upload; then, with no body sent, an upload without a
key (401), one whose Content-Length is over the limit (413) and one while the queue is full (503); a request
line that is not one; and what the stalled uploads got within 15 s (the request timeout is 3 s). A cell is the
status and the seconds it took, "-" for no answer within 3 s (Dec 2026, gunicorn 27.0.1, gevent 26.9.0,
uvicorn 0.55.0 with a2wsgi 1.10.10 and 16 threads, granian 2.8.9 with 16 blocking threads, waitress 3.0.2 with
16 threads):

    server            | GET /     | upload    | 401 no key | 413 length | 503 busy  | bad line     | stalled
    ours              | 200 0.01s | 202 0.32s | 401 0.00s  | 413 0.00s  | 503 0.00s | 400 json     | 200x408
    gunicorn gevent   | 200 0.01s | 202 0.09s | 401 0.01s  | 413 0.00s  | 503 0.00s | 400 not json | 200 open
    uvicorn + a2wsgi  | -         | -         | -          | -          | -         | 400 not json | 200 open
    granian (wsgi)    | -         | -         | -          | -          | -         | 400 not json | 200 open
    waitress          | 200 0.01s | 202 0.09s | -          | -          | -         | 400 not json | 200 open

uvicorn+a2wsgi and granian run WSGI on a thread pool, which the stalled uploads fill, as gthread's did. waitress
buffers bodies like this server, but only then runs the app, so a refusal waits for the whole body. gunicorn's
gevent worker meets the bar as stated (a greenlet per connection, the app's before_request gate runs before the
body is read), but it is not a replacement: a stalled upload is never answered nor closed (no request deadline:
200 of them were still open after 15 s, each holding a socket and a greenlet for ever), the errors it answers
itself (400, 414, 431, 501) are not the API's JSON, and it monkey-patches the whole process (SQLAlchemy's
pool, Celery's client, the change-feed thread). The first two are what tests/test_slow_clients.py checks, so
this server stays.
"""

from apercu.api.server.application import serve

__all__ = ["serve"]
