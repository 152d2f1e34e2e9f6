"""What a verified provider webhook does: a customer's message creates or continues a conversation (through
`desk.actions`), and a status moves a message's delivery status forward. Each event is applied once: its id
goes into `InboundWebhookEvent` (unique per provider) in the same transaction as its effect."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from chatdesk.retention import PURGE_BATCH_SIZE, delete_in_batches
from desk import actions, realtime
from desk.models import Conversation, Message

from .base import InboundMessage, StatusUpdate, WebhookBatch
from .models import InboundWebhookEvent, OutboundDelivery

APPLIED, DUPLICATE, UNMATCHED, IGNORED = "applied", "duplicate", "unmatched", "ignored"
# Statuses only move forward, so a late or shuffled callback never rolls one back; `failed` is final.
RANK = {"": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}


def _first_time(provider: str, event_id: str, kind: str) -> bool:
    try:
        with transaction.atomic():
            InboundWebhookEvent.objects.create(provider=provider, event_id=event_id[:200], kind=kind)
    except IntegrityError:
        return False
    return True


def _body(text: str) -> str:
    try:
        return actions.clean_message_body(text[: settings.DESK_MESSAGE_MAX_LENGTH])
    except ValidationError:
        return "[empty message]"


def receive_message(provider: str, inbound: InboundMessage) -> str:
    """The customer's message joins their conversation on that channel that is not closed, or starts one."""
    with transaction.atomic(durable=True):
        if not _first_time(provider, inbound.event_id, "message"):
            return DUPLICATE
        body = _body(inbound.body)
        # One customer's first messages arriving at once must open one conversation, not one each.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"desk.inbound:{inbound.phone}"])
        conversation = (
            Conversation.objects.filter(customer__phone=inbound.phone, channel=inbound.channel)
            .exclude(status=Conversation.Status.CLOSED)
            .order_by("-last_activity_at")
            .first()
        )
        if conversation is not None:
            try:
                actions.receive_customer_message(conversation.pk, body=body)
                return APPLIED
            except actions.Refusal:  # closed meanwhile: a new conversation, as below
                pass
        actions.start_conversation(
            name=inbound.name or inbound.phone, phone=inbound.phone, body=body, channel=inbound.channel
        )
    return APPLIED


def apply_status(provider: str, update: StatusUpdate) -> str:
    """Move the message's delivery status forward (never back) and re-render it on the desk."""
    with transaction.atomic(durable=True):
        if not _first_time(provider, update.event_id, "status"):
            return DUPLICATE
        delivery = (
            OutboundDelivery.objects.select_for_update(no_key=True)
            .filter(provider=provider, provider_message_id=update.provider_message_id)
            .first()
        )
        if delivery is None:
            return UNMATCHED
        if RANK[update.status] <= RANK[delivery.delivery_status]:
            return IGNORED
        changes = {"delivery_status": update.status}
        if update.status == OutboundDelivery.DeliveryStatus.FAILED:
            changes["error"] = (update.error or "The provider reported the message as not delivered.")[:300]
        OutboundDelivery.objects.filter(pk=delivery.pk).update(version=F("version") + 1, **changes)
        realtime.publish_message_created(
            Message.objects.select_related("conversation").get(pk=delivery.message_id)
        )
    return APPLIED


def apply(provider: str, batch: WebhookBatch) -> list[str]:
    return [receive_message(provider, m) for m in batch.messages] + [
        apply_status(provider, s) for s in batch.statuses
    ]


def purge_processed_events(*, now=None, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Forget provider events received more than WEBHOOK_INBOX_RETENTION_DAYS ago, in batches; returns how
    many. Every row was written with its effect (there is no unprocessed state), and the retention outlasts
    the providers' redeliveries, so a replay within it is still a no-op."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_INBOX_RETENTION_DAYS)
    old = InboundWebhookEvent.objects.filter(received_at__lt=cutoff)
    return delete_in_batches(old, batch_size=batch_size)
