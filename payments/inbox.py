"""The gateways' webhook inbox: a verified event is stored, answered 2xx at once, and applied by a task.

A webhook endpoint only verifies the signature, inserts the event (unique on gateway + event id) and queues
`tasks.process_webhook_event_task` on commit (spec C3 #28): a slow database or gateway never makes the
gateway time out and retry, and a duplicate delivery is answered 200 and changes nothing. The task applies
the event once (`process_stored_event`); an event whose task was lost with the broker stays RECEIVED and the
reconciler queues it again (`stuck_events`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import actions, stripe_inbox
from .gateways import sandbox
from .models import GatewayWebhookEvent

Outcome = GatewayWebhookEvent.Outcome
STUCK_BATCH_SIZE = 100


def store_event(
    gateway_name: str, *, event_id: str, event_type: str, payload: Mapping
) -> GatewayWebhookEvent | None:
    """Put a verified event into the inbox and queue its processing after commit; None if already there."""
    from .tasks import process_webhook_event_task  # tasks import this module

    try:
        with transaction.atomic(durable=True):
            inbox = GatewayWebhookEvent.objects.create(
                gateway=gateway_name,
                event_id=event_id,
                event_type=event_type[:64],
                outcome=Outcome.RECEIVED,
                payload=payload,
            )
            process_webhook_event_task.delay_on_commit(inbox.pk)
    except IntegrityError:
        return None  # a duplicate delivery: already stored, already (being) processed
    return inbox


def process_stored_event(inbox_id: int) -> str:
    """Apply one stored event once (the task's body). Stripe's events are checked with Stripe first; the
    sandbox's carry their own truth. Returns the outcome, or DUPLICATE if it was already processed."""
    stored = GatewayWebhookEvent.objects.get(pk=inbox_id)
    if stored.gateway == stripe_inbox.GATEWAY:
        return stripe_inbox.process_stored_event(stored)
    return actions.record_received_gateway_event(stored, sandbox.event_from_payload(stored.payload))


def stuck_events(now=None):
    """Events stored but not processed for a while (their task was lost with a broker restart), and Stripe
    events that matched no request yet whose next attempt is due."""
    now = now or timezone.now()
    lost = Q(
        next_attempt_at__isnull=True,
        received_at__lte=now - timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS),
    )
    return (
        GatewayWebhookEvent.objects.filter(
            lost | Q(next_attempt_at__lte=now),
            ~Q(event_type__startswith="chat2pay."),
            outcome=Outcome.RECEIVED,
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:STUCK_BATCH_SIZE]
    )
