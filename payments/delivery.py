"""How Chat 2 Pay reaches the customer: over their conversation's own channel, through one small interface.

A message to the customer is first recorded in the transcript (the agent sees exactly what was sent), in the
caller's transaction; then, after commit, the channel's adapter transmits it. Web chat needs nothing more:
the customer's page shows the transcript live. WhatsApp and SMS go through the messaging outbox
(`desk.messaging.outbox`): recording the message writes its outbox row in the same transaction and a Celery
task transmits it after commit; a permanent provider refusal marks the payment link `failed` from there. A
channel without credentials refuses at once: `transmit` raises `DeliveryFailed` and the link is `failed`.
"""

from __future__ import annotations

import logging
from typing import Protocol

from django.db import transaction

from desk import actions as desk_actions
from desk.messaging.models import OutboundDelivery
from desk.models import Conversation, Message

from . import lifecycle

logger = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """The channel refused the message outright (permanent): retrying will not help."""


class ChannelAdapter(Protocol):
    def transmit(self, message: Message) -> None:
        """Hand a recorded outbound message to the channel; raise DeliveryFailed if it refuses it outright."""


class WebChatAdapter:
    def transmit(self, message: Message) -> None:
        """Recording the message delivered it: the customer's web chat page shows the transcript live."""


class OutboxAdapter:
    def transmit(self, message: Message) -> None:
        """The outbox row written with the message delivers it after commit; only a channel that is not
        connected (its row failed at once) refuses here."""
        outbound = OutboundDelivery.objects.filter(message=message).first()
        if outbound is not None and outbound.state == OutboundDelivery.State.FAILED:
            raise DeliveryFailed(outbound.error)


ADAPTERS: dict[str, ChannelAdapter] = {
    Conversation.Channel.WEB_CHAT: WebChatAdapter(),
    Conversation.Channel.WHATSAPP: OutboxAdapter(),
    Conversation.Channel.SMS: OutboxAdapter(),
}
# What a message is for: on WhatsApp, outside the 24-hour window, these go out as approved templates.
TEXT = OutboundDelivery.Purpose.TEXT
PAYMENT_REQUEST = OutboundDelivery.Purpose.PAYMENT_REQUEST
CANCEL_NOTICE = OutboundDelivery.Purpose.CANCEL_NOTICE


def record_for_customer(
    conversation_id: int,
    body: str,
    *,
    kind: str = Message.Kind.TEXT,
    author=None,
    purpose: str = TEXT,
    template_variables=(),
) -> Message:
    """Write a message to the customer into the transcript (caller's transaction); `transmit` sends it."""
    return desk_actions.post_outbound_message(
        conversation_id,
        body=body,
        kind=kind,
        author=author,
        purpose=purpose,
        template_variables=template_variables,
    )


def transmit(message: Message) -> None:
    """Send a recorded message over its conversation's channel; call outside any transaction."""
    conversation = message.conversation
    adapter = ADAPTERS.get(conversation.channel)
    if adapter is None:
        raise DeliveryFailed(lifecycle.NO_CHANNEL_FAILURE.format(channel=conversation.get_channel_display()))
    adapter.transmit(message)


def notify_customer(
    conversation_id: int, body: str, *, author=None, purpose: str = TEXT, template_variables=()
) -> Message:
    """Record a notice (cancel notice, payment confirmation) now and transmit it after commit.

    A channel failure cannot undo the change the notice reports, so it is logged, not raised.
    """
    message = record_for_customer(
        conversation_id, body, author=author, purpose=purpose, template_variables=template_variables
    )

    def transmit_or_log() -> None:
        try:
            transmit(message)
        except DeliveryFailed as failure:
            logger.warning(
                "Notice %s in conversation %s not delivered: %s", message.pk, conversation_id, failure
            )

    transaction.on_commit(transmit_or_log)
    return message
