"""JSON log lines on stdout: one object per line with the record's ``extra`` fields."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from queue import SimpleQueue
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str)


class ThreadQueueHandler(QueueHandler):
    """Queues the record for the writer thread, which formats it: the JSON encoding stays off the loop.

    What could change before the thread formats it is fixed here: the message with its arguments merged
    in, and the traceback's text (its frames are gone by then). The ``extra`` fields the gateway logs are
    plain values, or request data that is never changed after it is logged.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


def configure_logging(level: str) -> QueueListener:
    """Route the root logger (and uvicorn's) to stdout as JSON lines; returns the writer to stop at exit.

    Records are formatted and written by a thread: a write to stdout blocks when the pipe or the disk
    behind it is slow (a container log reader, page-cache writeback), and on the event loop it would
    hold up every stream; the JSON encoding of the access line was a tenth of the loop's CPU per request.
    """
    writer = logging.StreamHandler(sys.stdout)
    writer.setFormatter(JsonFormatter())
    lines: SimpleQueue[logging.LogRecord] = SimpleQueue()
    handler = ThreadQueueHandler(lines)
    listener = QueueListener(lines, writer)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # asyncio warns on every write to a socket its client has closed; the relay handles that case.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    # The gateway writes its own access line with the request id.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs one INFO line per request, and the queue poller asks vLLM once a second: the gateway's
    # own lines already say what matters (the access line, a failed poll).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    listener.start()
    return listener
