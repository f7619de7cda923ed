"""The relay's log lines on stderr: readable text (the default) or one JSON object per line.

JSON lines carry ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, plus the
fields a log call attaches with ``extra=`` (``space``, ``peer``, ``code``, ``close_code``...)
when it has them, and ``exception`` with the traceback for a logged exception.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMATS = ("text", "json")
# The fields a relay log call may attach with ``extra=``; others stay out of the JSON.
FIELDS = ("space", "peer", "address", "member", "code", "close_code", "seq", "entries")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(level: str, log_format: str) -> None:
    """Send every log line to stderr in ``log_format`` ("text" or "json") from ``level`` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
