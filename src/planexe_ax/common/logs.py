"""Structured logging: one JSON object per line on stderr, with the ``extra=`` fields of each call."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from planexe_ax.bus.tracing import ids_of_current

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as JSON: ts, level, logger, msg, the current span's trace_id and span_id, every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line for ``record``."""
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ids = ids_of_current()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO") -> None:
    """Send the planexe_ax loggers to stderr as JSON lines at ``level`` (others at WARNING)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("planexe_ax").setLevel(level.upper())
