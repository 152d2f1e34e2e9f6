"""How Chat 2 Pay reaches the customer: over their conversation's own channel, through one small interface.

A message to the customer is first recorded in the transcript (the agent sees exactly what was sent), in the
caller's transaction; then, after commit, the channel's adapter transmits it. Web chat needs nothing more:
the customer's page shows the transcript live. WhatsApp and SMS adapters plug in here later; until a
channel has one, transmitting raises `DeliveryFailed` and a payment link on it ends up `failed`.
"""

from __future__ import annotations

import logging
from typing import Protocol

from django.db import transaction

from desk import actions as desk_actions
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


ADAPTERS: dict[str, ChannelAdapter] = {Conversation.Channel.WEB_CHAT: WebChatAdapter()}


def record_for_customer(
    conversation_id: int, body: str, *, kind: str = Message.Kind.TEXT, author=None
) -> Message:
    """Write a message to the customer into the transcript (caller's transaction); `transmit` sends it."""
    return desk_actions.post_outbound_message(conversation_id, body=body, kind=kind, author=author)


def transmit(message: Message) -> None:
    """Send a recorded message over its conversation's channel; call outside any transaction."""
    conversation = message.conversation
    adapter = ADAPTERS.get(conversation.channel)
    if adapter is None:
        raise DeliveryFailed(lifecycle.NO_CHANNEL_FAILURE.format(channel=conversation.get_channel_display()))
    adapter.transmit(message)


def notify_customer(conversation_id: int, body: str, *, author=None) -> Message:
    """Record a notice (cancel notice, payment confirmation) now and transmit it after commit.

    A channel failure cannot undo the change the notice reports, so it is logged, not raised.
    """
    message = record_for_customer(conversation_id, body, author=author)

    def transmit_or_log() -> None:
        try:
            transmit(message)
        except DeliveryFailed as failure:
            logger.warning(
                "Notice %s in conversation %s not delivered: %s", message.pk, conversation_id, failure
            )

    transaction.on_commit(transmit_or_log)
    return message
