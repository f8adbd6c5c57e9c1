"""Operator logging: one JSON line per event, no PHI (ids of sources and requests only)."""

from __future__ import annotations

import logging
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

# The request being served (`app.web.middleware.RequestIdMiddleware`), for every log line.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class ExceptionClassOnly(logging.Filter):
    """A record carrying an exception (uvicorn's "Exception in ASGI application", asyncio's
    "Task exception was never retrieved", ...) is logged by class and frames only: the
    exception's message, which a library formats from its input, never reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {describe_exception(record.exc_info[1])}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time, level, logger, request id, message."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)  # structured fields (the access log's)
        if isinstance(extra, dict):
            line.update(extra)
        return orjson.dumps(line).decode()


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RequestIdFilter())
        handler.addFilter(ExceptionClassOnly())
    # httpx logs every request URL at INFO; search URLs can carry identifiers (PHI).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def describe_exception(exc: BaseException) -> str:
    """Exception class and stack frames, without the message: messages (ours or a library's)
    can carry identifiers or URLs, and the operator log must never hold PHI."""
    frames = [
        f"  {f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)
    ]
    return "\n".join([f"{exc.__class__.__module__}.{exc.__class__.__qualname__}", *frames])
