"""Every log line names the request it was written for (`app.logging.RequestIdFilter`)."""

from __future__ import annotations

import logging

from app.logging import REQUEST_ID, RequestIdFilter


def record() -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, "message", None, None)


def test_log_records_carry_the_current_request_id() -> None:
    outside = record()
    assert RequestIdFilter().filter(outside)
    assert getattr(outside, "request_id", None) == "-"
    token = REQUEST_ID.set("req-42")
    try:
        inside = record()
        RequestIdFilter().filter(inside)
    finally:
        REQUEST_ID.reset(token)
    assert getattr(inside, "request_id", None) == "req-42"
    formatter = logging.Formatter("%(levelname)s [%(request_id)s]: %(message)s")
    assert formatter.format(inside) == "INFO [req-42]: message"
