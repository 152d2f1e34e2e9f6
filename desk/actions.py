"""The only writers of conversations and messages.

Each action validates, writes in one transaction, bumps the conversation's version and publishes a hint
on commit. Views, consumers, tasks, admin actions and `seed_demo` all call these.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import realtime
from .messaging import outbox
from .models import Conversation, Customer, Message, as_e164


@dataclass(frozen=True)
class Refusal(Exception):
    """An action that was not allowed in the conversation's current state; nothing was changed."""

    message: str


def display_name(user) -> str:
    """How people are shown: full name, else username."""
    return user.get_full_name() or user.get_username()


def normalize_phone(raw: str) -> str:
    """Parse a phone number typed by a person and return it in E.164, or raise ValidationError."""
    number = as_e164(raw, settings.DESK_DEFAULT_PHONE_REGION)
    if number is None:
        raise ValidationError("Enter a valid phone number, e.g. +27 82 123 4567.")
    return number


EMPTY_MESSAGE_ERROR = "Type a message first."


def clean_message_body(raw: str) -> str:
    """Strip a message body and check it is neither empty nor over-long (raises ValidationError)."""
    body = (raw or "").replace("\x00", "").strip()
    if not body:
        raise ValidationError(EMPTY_MESSAGE_ERROR)
    if len(body) > settings.DESK_MESSAGE_MAX_LENGTH:
        raise ValidationError(f"Keep messages to {settings.DESK_MESSAGE_MAX_LENGTH} characters or fewer.")
    return body


def _locked_for_posting(conversation_id: int) -> Conversation:
    """The conversation with its customer, locked until commit so that `_post_message` may count on the
    version it read (DoesNotExist if there is none)."""
    return (
        Conversation.objects.select_for_update(no_key=True, of=("self",))
        .select_related("customer")
        .get(pk=conversation_id)
    )


@transaction.atomic
def start_conversation(
    *, name: str, phone: str, body: str, channel: str = Conversation.Channel.WEB_CHAT
) -> Conversation:
    """Open a pending conversation for a customer with their first message; it joins every agent's queue.

    `phone` must already be E.164 (see `normalize_phone`); `body` is validated here.
    """
    body = clean_message_body(body)
    customer = Customer.objects.filter(phone=phone, name=name).first() or Customer.objects.create(
        name=name, phone=phone
    )
    conversation = Conversation.objects.create(
        customer=customer, channel=channel, last_activity_at=timezone.now()
    )
    message = Message.objects.create(
        conversation=conversation, direction=Message.Direction.INBOUND, body=body
    )
    realtime.publish_conversation_changed(conversation)
    realtime.publish_message_created(message)
    return conversation


@transaction.atomic
def accept_conversation(conversation_id: int, *, agent) -> Conversation:
    """Assign a pending conversation to `agent`. Exactly one of several agents accepting at once wins."""
    # Guarded write: PostgreSQL re-checks `status = pending` after any competing UPDATE commits.
    taken = Conversation.objects.filter(pk=conversation_id, status=Conversation.Status.PENDING).update(
        status=Conversation.Status.OPEN,
        assigned_agent=agent,
        accepted_at=timezone.now(),
        version=F("version") + 1,
        last_activity_at=timezone.now(),
    )
    if not taken:
        raise Refusal("Another agent has already accepted this chat.")
    conversation = Conversation.objects.select_related("customer").get(pk=conversation_id)
    message = _post_message(
        conversation,
        direction=Message.Direction.INTERNAL,
        kind=Message.Kind.SYSTEM,
        author=agent,
        body=f"{display_name(agent)} joined the chat.",
    )
    realtime.publish_conversation_changed(message.conversation, left_queue=True)
    return message.conversation


def _post_message(
    conversation: Conversation, *, direction: str, body: str, author=None, kind=None
) -> Message:
    """Add a message and bump the conversation's version and activity time. `conversation` is a row this
    transaction holds locked, read after its last write (`_locked_for_posting`, or a guarded update and a
    read), so the version it carries is the current one: one update, no re-read."""
    message = Message.objects.create(
        conversation=conversation,
        direction=direction,
        author=author,
        body=body,
        kind=kind or Message.Kind.TEXT,
    )
    conversation.version += 1
    conversation.last_activity_at = timezone.now()
    conversation.save(update_fields=["version", "last_activity_at"])
    message.conversation = conversation
    realtime.publish_message_created(message)
    return message


@transaction.atomic
def send_agent_message(conversation_id: int, *, agent, body: str) -> Message:
    """An agent's reply in their own open conversation (validated here)."""
    body = clean_message_body(body)
    conversation = _locked_for_posting(conversation_id)
    if conversation.status != Conversation.Status.OPEN or conversation.assigned_agent_id != agent.pk:
        raise Refusal("Only the agent who accepted this chat can reply while it is open.")
    message = _post_message(conversation, direction=Message.Direction.OUTBOUND, body=body, author=agent)
    outbox.record(message)  # WhatsApp/SMS: transmitted after commit; web chat: the transcript is the delivery
    return message


@transaction.atomic
def receive_customer_message(conversation_id: int, *, body: str) -> Message:
    """A message from the customer (web chat, or later a channel webhook), validated here."""
    body = clean_message_body(body)
    conversation = _locked_for_posting(conversation_id)
    if conversation.status == Conversation.Status.CLOSED:
        raise Refusal("This chat has ended. Start a new chat to talk to us again.")
    return _post_message(conversation, direction=Message.Direction.INBOUND, body=body)


@transaction.atomic
def post_system_message(conversation_id: int, *, body: str, kind: str = Message.Kind.SYSTEM) -> Message:
    """A desk event shown in the transcript to both sides (e.g. a payment confirmation)."""
    conversation = _locked_for_posting(conversation_id)
    return _post_message(conversation, direction=Message.Direction.INTERNAL, body=body, kind=kind)


@transaction.atomic
def post_outbound_message(
    conversation_id: int,
    *,
    body: str,
    kind: str = Message.Kind.TEXT,
    author=None,
    purpose: str = "text",
    template_variables=(),
) -> Message:
    """A message to the customer written by the desk itself (a Chat 2 Pay link, notice or confirmation),
    whatever the conversation's status. On WhatsApp/SMS its outbox row is written here too (`purpose` and
    `template_variables` pick the approved template used outside WhatsApp's 24-hour window)."""
    conversation = _locked_for_posting(conversation_id)
    message = _post_message(
        conversation, direction=Message.Direction.OUTBOUND, body=body, author=author, kind=kind
    )
    outbox.record(message, purpose=purpose, template_variables=template_variables)
    return message


@transaction.atomic
def close_conversation(conversation_id: int, *, agent) -> Conversation:
    """Close the agent's own open conversation; the customer's page shows that the chat ended."""
    closed = Conversation.objects.filter(
        pk=conversation_id, status=Conversation.Status.OPEN, assigned_agent=agent
    ).update(status=Conversation.Status.CLOSED, closed_at=timezone.now())
    if not closed:
        raise Refusal("Only the agent who accepted this chat can close it, and only while it is open.")
    conversation = Conversation.objects.select_related("customer").get(pk=conversation_id)
    message = _post_message(
        conversation,
        direction=Message.Direction.INTERNAL,
        kind=Message.Kind.SYSTEM,
        author=agent,
        body=f"{display_name(agent)} closed the chat.",
    )
    realtime.publish_conversation_changed(message.conversation)
    return message.conversation
