"""The redaction every log line passes through (chatdesk/logredact.py), one case at a time."""

from __future__ import annotations

import datetime as dt
import io
import logging
import sys

import pytest
from daphne.access import AccessLogGenerator

from chatdesk.logredact import RedactSecretsFilter, redact, redact_daphne_access_log

TOKEN = "bN366tpkPj64nJpzvw5PjopuGkKZfMnNbZ3HNl9asR8"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"Not Found: /pay/{TOKEN}/", "Not Found: /pay/bN366t…/"),
        (f"GET /chat/{TOKEN}/messages/", "GET /chat/bN366t…/messages/"),
        (f"WSCONNECT /ws/pay/{TOKEN}/", "WSCONNECT /ws/pay/bN366t…/"),
        ("customer +27821234567 wrote", "customer +…567 wrote"),
        ("GET /desk/?q=%2B27821234567&x=1", "GET /desk/?q=+…567&x=1"),
        ("POST /webhooks/stripe/ 200", "POST /webhooks/stripe/ 200"),
    ],
)
def test_redact(line, expected):
    assert redact(line) == expected


def test_a_traceback_is_redacted_too():
    try:
        raise LookupError(f"no request for /pay/{TOKEN}/ from +27821234567")
    except LookupError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    RedactSecretsFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "LookupError" in text
    assert TOKEN not in text
    assert "27821234567" not in text


def test_daphnes_access_log_writes_redacted_paths():
    redact_daphne_access_log()
    redact_daphne_access_log()  # twice is harmless
    stream = io.StringIO()
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    AccessLogGenerator(stream).write_entry("127.0.0.1:5000", when, f"GET /pay/{TOKEN}/", status=200, length=9)
    assert stream.getvalue() == '127.0.0.1:5000 - - [01/Jan/2030:00:00:00] "GET /pay/bN366t…/" 200 9\n'
