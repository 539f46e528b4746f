"""Log handlers, configured once by the entry point.

Under systemd (``JOURNAL_STREAM`` set) each record is one JSON object, so
journald keeps ``error_id`` and ``playbook`` as fields a technician can grep;
on a terminal it is one readable line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Literal

from graylogic_supervisor.clock import isoformat

LogFormat = Literal["text", "json", "auto"]
CONTEXT_FIELDS = ("error_id", "playbook")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": isoformat(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [f"{f}={getattr(record, f)}" for f in CONTEXT_FIELDS if getattr(record, f, None)]
        return f"{line} [{' '.join(context)}]" if context else line


def configure_logging(level: str, log_format: LogFormat = "auto") -> None:
    if log_format == "auto":
        log_format = "json" if os.environ.get("JOURNAL_STREAM") else "text"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paho and aiosqlite log every packet and every call at DEBUG: keep them quiet.
    for chatty in ("mqtt", "aiosqlite", "asyncio"):
        logging.getLogger(chatty).setLevel(max(logging.getLevelName(level), logging.INFO))
    # httpx logs every request URL at INFO: a token in a webhook's query string must not leak.
    for secretive in ("httpx", "httpcore"):
        logging.getLogger(secretive).setLevel(logging.WARNING)
