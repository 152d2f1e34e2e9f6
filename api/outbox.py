"""The webhook outbox: events written in the same transaction as the change they report.

`payments.actions` calls `record_payment_event` right after it writes a history row, inside its transaction.
If the change rolls back, so does the event; once it commits, a delivery task is queued per endpoint (and
the beat sweep picks up any that a lost task left behind). No HTTP here: `api.webhooks` delivers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta

from django.conf import settings
from django.db.models import prefetch_related_objects

from payments.lifecycle import Reason
from payments.models import PaymentEvent, PaymentRequest

from . import representation
from .models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from .schemas import HistoryEntry, PaymentRequestOut

EventType = WebhookEndpoint.EventType

EVENT_TYPE_FOR_REASON: dict[str, str] = {
    Reason.SENT: EventType.SENT,
    Reason.CLICKED: EventType.CLICKED,
    Reason.PAID: EventType.PAID,
    Reason.CANCELED: EventType.CANCELED,
    Reason.CLICK_WINDOW_PASSED: EventType.EXPIRED,
    Reason.PAY_WINDOW_PASSED: EventType.EXPIRED,
    Reason.DELIVERY_FAILED: EventType.FAILED,
    Reason.LATE_PAYMENT: EventType.PAYMENT_EXCEPTION,
    Reason.AMOUNT_MISMATCH: EventType.PAYMENT_EXCEPTION,
    Reason.DUPLICATE_PAYMENT: EventType.PAYMENT_EXCEPTION,
    Reason.REFUNDED: EventType.EXCEPTION_REFUNDED,
    # A payment attempt started or declined is not an event integrators subscribe to (yet).
}
# How long the first delivery task may sit in the broker before the sweep queues it again.
QUEUE_LEASE = timedelta(minutes=2)


def event_body(
    *, event_id: str, event_type: str, payment_request: PaymentRequest, event: PaymentEvent
) -> str:
    """The JSON text of an event: its id, type and time, and the request as it is now (with its version)."""
    # Rendered as the API renders them, so a webhook's object reads exactly like a GET's.
    obj = representation.payment_request(payment_request)
    obj = json.loads(representation.render(PaymentRequestOut, obj))
    entry = json.loads(representation.render(HistoryEntry, representation.history_entry(event)))
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "api_version": "v1",
            "created": int(event.at.timestamp()),
            "created_at": event.at.isoformat(),
            "data": {"object": obj, "history_entry": entry},
        },
        separators=(",", ":"),
    )


# Inside `batch()`: the enabled endpoints as (id, event types), read once for the whole batch.
_batch_subscriptions: ContextVar[list[tuple[int, list[str]]] | None] = ContextVar(
    "api_outbox_batch_subscriptions", default=None
)


def _enabled_endpoints() -> list[tuple[int, list[str]]]:
    return list(WebhookEndpoint.objects.filter(is_enabled=True).values_list("pk", "event_types"))


@contextmanager
def batch(payment_requests: Sequence[PaymentRequest]) -> Iterator[None]:
    """For a transaction that writes events for many requests (the expiry sweep): read the subscribed
    endpoints once, not once per event, and, if anyone subscribes, load the requests' agents and customers
    (the payload's) in one query each. Call it inside the transaction, so the endpoints read are the ones
    that transaction sees."""
    subscriptions = _enabled_endpoints()
    if subscriptions:
        prefetch_related_objects(list(payment_requests), "customer", "agent")
    token = _batch_subscriptions.set(subscriptions)
    try:
        yield
    finally:
        _batch_subscriptions.reset(token)


def _subscribed_endpoint_ids(event_type: str) -> list[int]:
    subscriptions = _batch_subscriptions.get()
    if subscriptions is None:
        return list(
            WebhookEndpoint.objects.filter(is_enabled=True, event_types__contains=[event_type])
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    return [pk for pk, event_types in subscriptions if event_type in event_types]


def record_payment_event(payment_request: PaymentRequest, event: PaymentEvent) -> WebhookEvent | None:
    """Queue `event` (just written, in the caller's transaction) for every enabled endpoint that wants it."""
    event_type = EVENT_TYPE_FOR_REASON.get(event.reason)
    if event_type is None:
        return None
    endpoint_ids = _subscribed_endpoint_ids(event_type)
    if not endpoint_ids:
        return None
    public_id = uuid.uuid4()
    webhook_event = WebhookEvent.objects.create(
        public_id=public_id,
        type=event_type,
        payment_request=payment_request,
        payment_event=event,
        body=event_body(
            event_id=f"evt_{public_id.hex}",
            event_type=event_type,
            payment_request=payment_request,
            event=event,
        ),
        created_at=event.at,
    )
    retry_until = event.at + timedelta(hours=settings.API_WEBHOOK_RETRY_HOURS)
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            event=webhook_event,
            endpoint_id=endpoint_id,
            next_attempt_at=event.at,
            queued_until=event.at + QUEUE_LEASE,
            retry_until=retry_until,
            created_at=event.at,
        )
        for endpoint_id in endpoint_ids
    )
    from .tasks import deliver_webhook_task  # tasks import webhooks, which import this module

    for delivery in deliveries:
        # After commit only: a rolled-back change has no event, and the worker must see committed rows.
        deliver_webhook_task.delay_on_commit(delivery.pk)
    return webhook_event
