"""The outbox: a message to a WhatsApp or SMS customer is written together with its `OutboundDelivery` row,
and transmitted after commit by `tasks.deliver_outbound_task` (retries with exponential backoff); beat's
`deliver_due_outbound_task` re-queues any row that is due (a retry, or a first attempt whose task was lost).

At most once per provider acceptance: a row is claimed under its lock (SENDING, with a lease) before the
provider call, and the provider's message id is stored as soon as it answers; a row with an id is never sent
again. If a worker dies after the provider accepted but before the id was stored, the lease runs out and the
message is sent again: the one documented duplicate (neither provider offers an idempotency key).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from desk import realtime
from desk.models import Conversation, Message

from .base import ChannelAdapter, PermanentFailure, TemporaryFailure
from .clickatell import ClickatellAdapter
from .models import OutboundDelivery
from .whatsapp import WhatsAppCloudAdapter

logger = logging.getLogger(__name__)

State = OutboundDelivery.State
Purpose = OutboundDelivery.Purpose
CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
SWEEP_BATCH_SIZE = 200
CLOCK_SLACK = timedelta(seconds=2)  # a retry's countdown and the row's next attempt come from two clocks
NOT_CONNECTED = "The {channel} channel is not connected, so the message could not be delivered."

ADAPTERS: dict[str, ChannelAdapter] = {"whatsapp": WhatsAppCloudAdapter(), "clickatell": ClickatellAdapter()}


def adapter_for_channel(channel: str) -> ChannelAdapter | None:
    """The adapter carrying a conversation channel (None for web chat, which needs none)."""
    if channel == Conversation.Channel.WHATSAPP:
        return ADAPTERS["clickatell" if settings.MESSAGING_WHATSAPP_PROVIDER == "clickatell" else "whatsapp"]
    if channel == Conversation.Channel.SMS:
        return ADAPTERS["clickatell"]
    return None


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s, ... up to 15 minutes between attempts."""
    return timedelta(seconds=min(5 * 2 ** max(attempts - 1, 0), 900))


def lease() -> timedelta:
    """How long a row being sent stays claimed: the provider call's timeout plus a margin."""
    return timedelta(seconds=settings.MESSAGING_TIMEOUT_SECONDS + 30)


def record(
    message: Message, *, purpose: str = Purpose.TEXT, template_variables=()
) -> OutboundDelivery | None:
    """Write the outbox row for an outbound message in the caller's transaction; queue its task on commit.

    Web chat needs none (None). A channel without credentials gets a row that is already `failed`, so the
    agent sees why (and `payments.delivery.transmit` fails the payment link at once).
    """
    conversation = message.conversation
    adapter = adapter_for_channel(conversation.channel)
    if adapter is None:
        return None
    now = timezone.now()
    connected = adapter.is_configured()
    delivery = OutboundDelivery.objects.create(
        message=message,
        channel=conversation.channel,
        provider=adapter.name,
        to=conversation.customer.phone,
        purpose=purpose,
        template_variables=[str(v) for v in template_variables],
        next_attempt_at=now,
        state=State.PENDING if connected else State.FAILED,
        error="" if connected else NOT_CONNECTED.format(channel=conversation.get_channel_display()),
    )
    if connected:
        from .tasks import deliver_outbound_task  # tasks import this module

        deliver_outbound_task.delay_on_commit(delivery.pk)
    return delivery


def template_for(delivery: OutboundDelivery, now) -> str:
    """The approved template to send instead of free text: only on WhatsApp, outside the 24-hour window
    since the customer's last inbound message, for the payment request and the cancel notice."""
    names = {
        Purpose.PAYMENT_REQUEST: settings.WHATSAPP_TEMPLATE_PAYMENT_REQUEST,
        Purpose.CANCEL_NOTICE: settings.WHATSAPP_TEMPLATE_CANCEL_NOTICE,
    }
    if delivery.channel != Conversation.Channel.WHATSAPP or delivery.purpose not in names:
        return ""
    last_inbound = (
        Message.objects.filter(
            conversation_id=delivery.message.conversation_id, direction=Message.Direction.INBOUND
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if last_inbound is not None and now - last_inbound < CUSTOMER_SERVICE_WINDOW:
        return ""
    return names[delivery.purpose]


def _claim(delivery_id: int, now) -> OutboundDelivery | None:
    """Lock the row and mark it SENDING with a lease; None if not due, done, or held by another worker."""
    with transaction.atomic(durable=True):
        delivery = (
            OutboundDelivery.objects.select_for_update(no_key=True, skip_locked=True)
            .select_related("message")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.state not in (State.PENDING, State.SENDING):
            return None
        if delivery.provider_message_id or delivery.next_attempt_at > now + CLOCK_SLACK:
            return None
        delivery.attempts += 1
        delivery.state = State.SENDING
        delivery.next_attempt_at = now + lease()
        delivery.save(update_fields=["attempts", "state", "next_attempt_at", "updated_at"])
    return delivery


def deliver(delivery_id: int) -> timedelta | None:
    """Make one attempt at a due row. Returns the delay before the next attempt, or None when there is none
    (accepted, failed for good, not due, or being sent by another worker)."""
    now = timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return None
    adapter = ADAPTERS[delivery.provider]
    template = template_for(delivery, now)
    try:
        if template:
            provider_id = adapter.send_template(
                delivery.to, template, delivery.template_variables, channel=delivery.channel
            )
        else:
            provider_id = adapter.send_text(delivery.to, delivery.message.body, channel=delivery.channel)
    except PermanentFailure as failure:
        fail(delivery, str(failure))
        return None
    except TemporaryFailure as failure:
        if delivery.attempts >= settings.MESSAGING_MAX_ATTEMPTS:
            fail(delivery, f"Not delivered after {delivery.attempts} attempts: {failure}")
            return None
        delay = backoff(delivery.attempts)
        OutboundDelivery.objects.filter(pk=delivery.pk, state=State.SENDING).update(
            state=State.PENDING, next_attempt_at=timezone.now() + delay, error=str(failure)[:300]
        )
        logger.info("Outbound delivery %s: attempt %s failed (%s)", delivery.pk, delivery.attempts, failure)
        return delay
    _accepted(delivery, provider_id, template)
    return None


def _changed(delivery: OutboundDelivery, **changes) -> None:
    """Write `changes` and push the message again (its partial shows the delivery status)."""
    OutboundDelivery.objects.filter(pk=delivery.pk).update(version=F("version") + 1, **changes)
    message = Message.objects.select_related("conversation").get(pk=delivery.message_id)
    realtime.publish_message_created(message)  # consumers re-render (upsert) the message


def _accepted(delivery: OutboundDelivery, provider_id: str, template: str) -> None:
    with transaction.atomic(durable=True):
        _changed(
            delivery,
            state=State.ACCEPTED,
            provider_message_id=provider_id,
            sent_as_template=template,
            error="",
        )


def fail(delivery: OutboundDelivery, reason: str) -> None:
    """A permanent failure: the row is `failed` with the provider's reason, and a payment link on it is
    `failed` too (the agent's card says why)."""
    logger.warning("Outbound delivery %s failed: %s", delivery.pk, reason)
    with transaction.atomic(durable=True):
        _changed(delivery, state=State.FAILED, error=reason[:300])
    if delivery.purpose == Purpose.PAYMENT_REQUEST:
        from payments import actions as payment_actions  # payments depends on desk, not the reverse
        from payments.models import PaymentRequest

        payment_request_id = (
            PaymentRequest.objects.filter(message_id=delivery.message_id).values_list("pk", flat=True).first()
        )
        if payment_request_id is not None:
            payment_actions.mark_failed(payment_request_id, reason=reason)


def due_delivery_ids(*, batch_size: int = SWEEP_BATCH_SIZE) -> list[int]:
    """Rows due for an attempt, oldest first; rows locked by a worker right now are skipped (SKIP LOCKED)."""
    with transaction.atomic(durable=True):
        return list(
            OutboundDelivery.objects.select_for_update(no_key=True, skip_locked=True)
            .filter(state__in=[State.PENDING, State.SENDING], next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:batch_size]
        )
