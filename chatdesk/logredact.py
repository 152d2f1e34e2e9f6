"""A logging filter that keeps secrets out of every log line: customer link tokens and phone numbers.

Django logs each 4xx/5xx with the request path ("Not Found: /pay/<token>/"), and a path holding a customer's
token is a working link to their payment or chat. The filter renders each record once and keeps only the
first 6 characters of such a token (enough to correlate lines), and masks E.164 phone numbers to their last
3 digits. It is installed on the console handler in settings.LOGGING, so every logger passes through it.

Daphne's access log does not go through logging: its CLI writes NCSA lines straight to stdout
(daphne.access.AccessLogGenerator). `redact_daphne_access_log()`, called by chatdesk/asgi.py, passes those
lines through the same `redact()`.
"""

from __future__ import annotations

import logging
import re

# /pay/<token>/, /chat/<token>/ and their websockets (/ws/pay/…, /ws/chat/…); "stripe" is a fixed path.
_TOKEN_IN_PATH = re.compile(r"(/(?:ws/)?(?:pay|chat)/)(?!stripe/)([A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]{6,}")
# A "+" may reach a log percent-encoded, in a query string of Daphne's access log (?q=%2B27821234567).
_PHONE = re.compile(r"(?:\+|%2[Bb])\d{5,12}(\d{3})\b")


def redact(text: str) -> str:
    text = _TOKEN_IN_PATH.sub(r"\1\2…", text)
    return _PHONE.sub(r"+…\1", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # A traceback can quote a path or a phone number too; formatters print exc_text when it is set.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def redact_daphne_access_log() -> None:
    """Make Daphne's access log lines (written to stdout, not through logging) pass through `redact()`."""
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # served by something else: nothing to do
        return
    if getattr(AccessLogGenerator.write_entry, "redacts_secrets", False):
        return
    write_entry = AccessLogGenerator.write_entry

    def redacted_write_entry(self, host, date, request, *args, **kwargs):
        return write_entry(self, host, date, redact(request), *args, **kwargs)

    redacted_write_entry.redacts_secrets = True
    AccessLogGenerator.write_entry = redacted_write_entry
