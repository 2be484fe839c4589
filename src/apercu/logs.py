"""Logging for every apercu process, configured in one place (`configure`): readable text, or one JSON object per
line (`APERCU_LOG_FORMAT=json`) for a log pipeline to index without parsing prose.

A structured line is an ordinary log call whose one argument is a mapping, e.g.
`log.info("%(method)s %(path)s %(status)d", fields)`: the text formatter prints the sentence, the JSON formatter
prints the sentence as `message` and every item of the mapping as a key of its own. So a line reads well on a
terminal and is queryable in JSON, from the same call, and modules need no logging helper of their own.

The id of the request being answered (web) or of the request that queued the task being run (worker) is kept in
a context variable (`request_context`), so every line logged meanwhile carries it, whichever module logs it:
one request can be followed from the upload to the worker that processed its image.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from apercu.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("apercu_request_id", default=None)
_MARK = "_apercu_handler"  # set on the handler `configure` installs, so that configuring again replaces it


def current_request_id() -> str | None:
    """The request id of what this thread (or task) is handling, if any."""
    return REQUEST_ID.get()


@contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Lines logged inside carry `request_id` (None: none)."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


def configure(settings: Settings, level: str | int | None = None) -> None:
    """Send every logger's lines to stderr in the configured format, at `level` (default APERCU_LOG_LEVEL).

    Replaces the handler an earlier call installed and leaves any other alone (a test runner's, say); a process
    has the one handler, so the web server's and the worker's own loggers are routed here rather than formatted
    by them (see `api.server.GunicornLogger` and `tasks.runner`)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _MARK, True)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level if level is not None else settings.log_level)
    logging.captureWarnings(True)  # a library's warnings too (Celery's, say): one format for every line


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    return record.args if isinstance(record.args, Mapping) else {}


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.fromtimestamp(record.created, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`<UTC time> <LEVEL> <logger>: <message>`, then ` request_id=<id>` when the line belongs to a request."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        request_id = _fields(record).get("request_id") or REQUEST_ID.get()
        if request_id and "%(request_id)" not in str(record.msg):
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the line's fields, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            entry.setdefault(str(key), value)
        if entry.get("request_id") is None and (request_id := REQUEST_ID.get()):
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)
