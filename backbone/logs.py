"""Log lines that say who wrote them: every line carries the stage, the system (adapters) and the
event id (where the line is about one event, passed as `extra={"event_id": ...}`), as text for
people or as one JSON object per line (`log_format = "json"`) for a log shipper. Messages are
written by code that already masks personal values; nothing here adds record content."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Libraries whose info lines are noise (one line per registry request).
_NOISY = ("httpx", "httpx2", "httpcore")


class _Context(logging.Filter):
    """Puts the process's stage and system on every record, and an empty event id where none was given."""

    def __init__(self, stage: str, system: str) -> None:
        super().__init__()
        self.stage, self.system = stage, system

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = getattr(record, "stage", self.stage)
        record.system = getattr(record, "system", self.system)
        record.event_id = getattr(record, "event_id", "")
        record.where = f"{record.stage} {record.system}".strip()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, stage, system, event_id, logger,
    message and, for an exception, error (the traceback as text)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "stage": getattr(record, "stage", ""),
            "system": getattr(record, "system", ""),
            "event_id": getattr(record, "event_id", ""),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s [%(where)s] %(name)s: %(message)s"


def configure(level: str, log_format: str, stage: str, system: str = "") -> None:
    """Route this process's logging to stderr in the chosen format, replacing earlier handlers."""
    handler = logging.StreamHandler()
    handler.addFilter(_Context(stage, system))
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # library warnings become log lines too, in the same format
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
