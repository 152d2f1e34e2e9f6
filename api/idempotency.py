"""Stripe-style idempotency for the API's POSTs.

The first request with an `Idempotency-Key` claims the key (a row unique per API key, committed at once) and
runs; its response is stored with the key. Then:

- the same key with the same request (method, path and JSON body) gets the stored response again, marked
  `Idempotent-Replayed: true`;
- the same key with a different request is refused with 422 `idempotency_key_reused`;
- the same key while the first request still runs is refused with 409 `idempotency_key_in_use` (retry it),
  so concurrent duplicates have exactly one effect;
- a request rejected before it ran (invalid input, unknown objects) stores nothing: the key stays free to
  retry;
- a request that crashed while running answers `500 internal_error`, and that is stored and replayed like
  any other outcome (Stripe keeps 500s too: the client cannot know how far it got, so a retry with the
  same key must not quietly run it again; the client looks it up and uses a new key).

Keys are kept API_IDEMPOTENCY_KEY_HOURS (at least 24 hours); `purge_expired_keys` (beat) deletes older ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from .errors import ApiError, internal_error, log_internal_error
from .models import ApiKey, IdempotencyRecord

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII without spaces, like Stripe's keys
# A request that has held a key this long without finishing died (a request never runs this long):
# the key is free again. Safe, because the action it runs is itself idempotent per key.
STALE_CLAIM = timedelta(seconds=60)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: str  # JSON text
    replayed: bool = False


def fingerprint(request: HttpRequest) -> str:
    """The request's identity: method, path and its JSON body regardless of key order and whitespace."""
    try:
        body = json.dumps(json.loads(request.body or b"null"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        body = request.body.decode("utf-8", "replace")
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def retention() -> timedelta:
    return timedelta(hours=settings.API_IDEMPOTENCY_KEY_HOURS)


def valid_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise ApiError(
            422,
            "invalid_idempotency_key",
            "The Idempotency-Key must be 1 to 255 printable ASCII characters without spaces.",
        )
    return key


def _claim(api_key: ApiKey, key: str, request_fingerprint: str) -> IdempotencyRecord | Outcome:
    """Claim the key for this request, or return the stored outcome to replay (raises when refused)."""
    now = timezone.now()
    IdempotencyRecord.objects.filter(api_key=api_key, key=key, created_at__lt=now - retention()).delete()
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                api_key=api_key,
                key=key,
                request_fingerprint=request_fingerprint,
                created_at=now,
                locked_at=now,
            )
    except IntegrityError:
        # Someone holds or held the key. The unique index made us wait for their claim to commit, so the
        # row is there to read (unless it was released meanwhile: then it is simply free again).
        record = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
    if record is None:
        return _claim(api_key, key, request_fingerprint)
    if record.request_fingerprint != request_fingerprint:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request. Use a new key.",
        )
    if record.completed_at is not None:
        return Outcome(record.response_status, record.response_body, replayed=True)
    # Still running elsewhere, unless its holder died: take over only a stale claim (one winner).
    taken = IdempotencyRecord.objects.filter(
        pk=record.pk, completed_at__isnull=True, locked_at__lt=now - STALE_CLAIM
    ).update(locked_at=now)
    if not taken:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed. Retry it in a moment.",
        )
    record.locked_at = now
    return record


def run(request: HttpRequest, api_key: ApiKey, perform: Callable[[], Outcome]) -> Outcome:
    """Run `perform` at most once per Idempotency-Key (none sent: just run it).

    `perform` returns the outcome to store, or raises ApiError for a request refused before anything ran.
    Any other exception is a crash: logged, and answered (and stored) as `500 internal_error`.
    """
    key = request.headers.get(HEADER)
    if key is None:
        return perform()
    claimed = _claim(api_key, valid_key(key), fingerprint(request))
    if isinstance(claimed, Outcome):
        return claimed
    try:
        outcome = perform()
    except ApiError:
        _release(claimed)
        raise
    except Exception:
        log_internal_error(request)
        outcome = Outcome(500, json.dumps(internal_error().body()))
        try:
            _complete(claimed, outcome)
        except DatabaseError:  # the database itself failed: nothing can be stored, so leave the key free
            _release(claimed)
        return outcome
    except BaseException:  # the request itself was cancelled (shutdown, client gone): it may run again
        _release(claimed)
        raise
    _complete(claimed, outcome)
    return outcome


def _complete(record: IdempotencyRecord, outcome: Outcome) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=outcome.status, response_body=outcome.body, completed_at=timezone.now()
    )


def _release(record: IdempotencyRecord) -> None:
    try:
        IdempotencyRecord.objects.filter(pk=record.pk, completed_at__isnull=True).delete()
    except DatabaseError:  # the claim goes stale after STALE_CLAIM and is taken over then
        logger.warning("Could not release Idempotency-Key claim %s", record.pk, exc_info=True)


def purge_expired_keys() -> int:
    """Delete keys older than the retention period; returns how many."""
    cutoff = timezone.now() - retention()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
