"""Cursor pagination over payment requests, newest first, keyed on (sent_at, id).

A cursor names the last row of a page, not an offset, so rows inserted while a client pages (they are newer,
so they sort before the first page) never shift later pages: every row that existed when the client started
appears exactly once, and none appears twice. The order matches the index `payments_pr_sent_newest`.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from django.db.models import Q, QuerySet

from .errors import ApiError


def encode_cursor(sent_at: datetime, pk: int) -> str:
    raw = json.dumps([sent_at.isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sent_at, pk = json.loads(raw)
        sent_at = datetime.fromisoformat(sent_at)
        if sent_at.tzinfo is None or not isinstance(pk, int) or not 0 < pk < 2**63:
            raise ValueError(cursor)
        return sent_at, pk
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API returned.") from None


def page(queryset: QuerySet, *, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """One page of `queryset` after `cursor`; returns (rows, next cursor or None on the last page)."""
    queryset = queryset.order_by("-sent_at", "-pk")
    if cursor:
        sent_at, pk = decode_cursor(cursor)
        queryset = queryset.filter(Q(sent_at__lt=sent_at) | Q(sent_at=sent_at, pk__lt=pk))
    rows = list(queryset[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].sent_at, rows[-1].pk)
