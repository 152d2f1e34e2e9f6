"""A logging filter that keeps secrets out of every log line: customer link tokens and phone numbers.

Django logs each 4xx/5xx with the request path ("Not Found: /pay/<token>/"), and a path holding a customer's
token is a working link to their payment or chat. The filter renders each record once and keeps only the
first 6 characters of such a token (enough to correlate lines), and masks E.164 phone numbers to their last
3 digits. It is installed on the console handler in settings.LOGGING, so every logger passes through it.
"""

from __future__ import annotations

import logging
import re

# /pay/<token>/, /chat/<token>/ and their websockets (/ws/pay/…, /ws/chat/…); "stripe" is a fixed path.
_TOKEN_IN_PATH = re.compile(r"(/(?:ws/)?(?:pay|chat)/)(?!stripe/)([A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]{6,}")
_PHONE = re.compile(r"\+\d{5,12}(\d{3})\b")


def redact(text: str) -> str:
    text = _TOKEN_IN_PATH.sub(r"\1\2…", text)
    return _PHONE.sub(r"+…\1", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
