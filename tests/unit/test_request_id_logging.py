"""Every log line names the request it was written for (`app.logging.RequestIdFilter`)."""

from __future__ import annotations

import logging

import pytest

from app.logging import REQUEST_ID, RequestIdFilter, configure_logging


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


def test_a_logged_exception_shows_its_class_and_frames_never_its_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    configure_logging()
    try:
        try:
            raise ValueError("patient 999-00-1234 not found")  # a message built from input
        except ValueError:
            # asyncio's logger as an example: every logger propagating to the root is covered
            # (uvicorn's too, with `log_config=None` as `serve` and the demo run it).
            logging.getLogger("asyncio").exception("Exception in ASGI application")
        err = capsys.readouterr().err
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    assert "Exception in ASGI application: builtins.ValueError" in err
    assert "test_request_id_logging.py" in err  # the frames are kept
    assert "999-00-1234" not in err
