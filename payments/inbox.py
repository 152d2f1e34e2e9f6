"""The gateways' webhook inbox: a verified event is stored, answered 2xx at once, and applied by a drain.

A webhook endpoint only verifies the signature, inserts the event (unique on gateway + event id) and, on
commit, wakes the inbox's drain (spec C3 #28): a slow database or gateway never makes the gateway time out
and retry, and a duplicate delivery is answered 200 and changes nothing.

A burst of webhooks queues one drain task, not one task each: a webhook that finds a drain already queued
leaves its event to it (publishing a Celery task cost about as much as the rest of the request;
docs/performance.md, product change 22). A drain claims waiting events in small batches, so several drains
(one per worker process) share a burst without taking the same event twice, and applies each once
(`process_stored_event`). An event whose drain was lost (a broker restart, a killed worker) stays RECEIVED;
once its claim runs out, the reconciler wakes a drain for it (`has_stuck_events`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import actions, stripe_inbox
from .gateways import sandbox
from .gateways.base import GatewayError
from .models import GatewayWebhookEvent

logger = logging.getLogger(__name__)

Outcome = GatewayWebhookEvent.Outcome
# Set while a drain is queued and not yet started: the webhooks meanwhile queue no other.
DRAIN_QUEUED_KEY = "chatdesk:webhook-inbox:drain-queued"
CLAIM_BATCH_SIZE = 10
# A drain hands what is left to a fresh task after this long, well inside Celery's soft time limit.
DRAIN_SECONDS = 20


def store_event(gateway_name: str, *, event_id: str, event_type: str, payload: Mapping) -> int | None:
    """Put a verified event into the inbox and wake the drain after commit; its id, or None if already there.

    One `INSERT … ON CONFLICT DO NOTHING RETURNING id`, which outside a transaction commits by itself: the
    ORM's `create` costs a BEGIN and a COMMIT around it (and a duplicate's IntegrityError a ROLLBACK), about
    200 µs of a webhook's ~700 µs of CPU (docs/performance.md, product change 24)."""
    payload_field = GatewayWebhookEvent._meta.get_field("payload")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {GatewayWebhookEvent._meta.db_table}"
            " (gateway, event_id, event_type, outcome, payload, received_at, attempts)"
            " VALUES (%s, %s, %s, %s, %s, %s, 0)"
            " ON CONFLICT (gateway, event_id) DO NOTHING RETURNING id",
            [
                gateway_name,
                event_id,
                event_type[:64],
                Outcome.RECEIVED,
                payload_field.get_db_prep_save(payload, connection),
                timezone.now(),
            ],
        )
        stored = cursor.fetchone()
    if stored is None:
        return None  # a duplicate delivery: already stored, already (being) processed
    # Robust: with Redis down the gateway still gets its 200, and the reconciler finds the event.
    transaction.on_commit(wake_drain, robust=True)
    return stored[0]


def wake_drain() -> None:
    """Queue a drain unless one is queued and not started yet (that one will find the events stored now)."""
    from .tasks import drain_webhook_inbox_task  # tasks import this module

    # The key outlives a queued task that never runs (a broker restart) by a time limit at most.
    if not cache.add(DRAIN_QUEUED_KEY, True, timeout=settings.CELERY_TASK_TIME_LIMIT):
        return
    try:
        drain_webhook_inbox_task.delay()
    except Exception:
        # The broker refused: the next webhook tries again, and meanwhile the reconciler finds this one.
        cache.delete(DRAIN_QUEUED_KEY)
        raise


def drain(*, seconds: float = DRAIN_SECONDS) -> int:
    """Apply the waiting events, a claimed batch at a time, until none is left (the drain task's body).

    Returns how many events it took. A full batch wakes another drain, so a backlog (events stored while the
    worker was down or busy) is shared by every worker process; past `seconds` this one hands the rest to a
    fresh drain. A gateway that cannot be reached leaves its event claimed: it is tried again when the claim
    runs out.
    """
    cache.delete(DRAIN_QUEUED_KEY)  # from now on an event stored wakes another drain, to run beside this one
    stop_at = time.monotonic() + seconds
    processed = 0
    while batch := _claim_batch():
        if len(batch) == CLAIM_BATCH_SIZE:
            wake_drain()  # more may wait (a backlog): another worker process joins in
        for inbox_id in batch:
            try:
                process_stored_event(inbox_id)
            except (GatewayError, OSError) as error:
                logger.warning("Stored gateway event %s not applied yet: %s", inbox_id, error)
            processed += 1
        if time.monotonic() >= stop_at:
            wake_drain()
            break
    return processed


def _claim_batch() -> list[int]:
    """The next waiting events, oldest first, claimed for this drain: other drains skip them until the claim
    runs out (twice the task time limit, so only a drain that died leaves a claim to run out)."""
    now = timezone.now()
    with transaction.atomic():
        batch = list(
            waiting_events(now)
            .select_for_update(no_key=True, skip_locked=True)
            .order_by("pk")
            .values_list("pk", flat=True)[:CLAIM_BATCH_SIZE]
        )
        if batch:
            claimed_until = now + timedelta(seconds=2 * settings.CELERY_TASK_TIME_LIMIT)
            GatewayWebhookEvent.objects.filter(pk__in=batch).update(next_attempt_at=claimed_until)
    return batch


def waiting_events(now):
    """Stored events not applied yet whose turn it is: never claimed, or their claim or retry time is past.
    The reconciler's own answers (`chat2pay.*`) are applied where they are stored, not here."""
    return GatewayWebhookEvent.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        outcome=Outcome.RECEIVED,
    ).exclude(event_type__startswith="chat2pay.")


def process_stored_event(inbox_id: int) -> str:
    """Apply one stored event once (a drain's step). Stripe's events are checked with Stripe first; the
    sandbox's carry their own truth. Returns the outcome, or DUPLICATE if it was already processed."""
    stored = GatewayWebhookEvent.objects.get(pk=inbox_id)
    if stored.gateway == stripe_inbox.GATEWAY:
        return stripe_inbox.process_stored_event(stored)
    return actions.record_received_gateway_event(stored, sandbox.event_from_payload(stored.payload))


def has_stuck_events(now=None) -> bool:
    """Whether an event waits that no drain is taking: stored a while ago and never claimed (its wake-up was
    lost), or its claim ran out, or a Stripe event's next matching attempt is due."""
    now = now or timezone.now()
    lost = Q(
        next_attempt_at__isnull=True,
        received_at__lte=now - timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS),
    )
    return waiting_events(now).filter(lost | Q(next_attempt_at__lte=now)).exists()
