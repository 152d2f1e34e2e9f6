"""Customers, their conversations with agents, and the messages in them.

Rows here are written only by `desk.actions`; every change that a screen shows bumps `version`, so a late
or duplicate push can never roll a page back.
"""

import secrets

import phonenumbers
from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper


def new_customer_token() -> str:
    """An unguessable token (256 bits from `secrets`) for the customer's own chat page."""
    return secrets.token_urlsafe(32)


def as_e164(raw: str, region: str | None) -> str | None:
    """`raw` in E.164 if phonenumbers knows it for a valid number, else None. Without a leading `+` it is read
    as a number of `region`; with no region it must have one."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    """A phone number as stored: E.164 (`+` and digits) and a number phonenumbers knows to be valid."""
    if as_e164(value, None) != value:
        raise ValidationError("Enter a valid phone number in E.164 form, e.g. +27821234567.", code="invalid")


class Customer(models.Model):
    name = models.CharField(max_length=120)
    phone = models.CharField(
        "phone number", max_length=20, validators=[validate_e164], help_text="E.164, e.g. +27821234567"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]
        indexes = [
            models.Index(fields=["phone"]),
            # The Supervisor Desk's search for any part of a name (icontains: UPPER(name) LIKE '%Q%') or a
            # phone: trigram indexes find a few matching customers without reading them all.
            GinIndex(OpClass(Upper("name"), name="gin_trgm_ops"), name="desk_customer_name_trgm"),
            GinIndex(OpClass("phone", name="gin_trgm_ops"), name="desk_customer_phone_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phone})"


class Conversation(models.Model):
    class Channel(models.TextChoices):
        WEB_CHAT = "web_chat", "Web chat"
        WHATSAPP = "whatsapp", "WhatsApp"
        SMS = "sms", "SMS"

    class Status(models.TextChoices):
        """pending: waiting in the queue; open: accepted by an agent; closed: finished."""

        PENDING = "pending", "Pending"
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="conversations")
    channel = models.CharField(max_length=16, choices=Channel, default=Channel.WEB_CHAT)
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="conversations",
    )
    customer_token = models.CharField(max_length=64, unique=True, default=new_customer_token, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(db_index=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-last_activity_at", "-pk"]
        indexes = [
            models.Index(fields=["assigned_agent", "status", "-last_activity_at"]),
            models.Index(
                fields=["-last_activity_at"], condition=Q(status="pending"), name="desk_conversation_queue"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="pending") | Q(assigned_agent__isnull=False),
                name="desk_conversation_open_has_agent",
            ),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk} with {self.customer.name}"

    @property
    def dom_id(self) -> str:
        return f"conversation-{self.pk}"

    def transcript(self):
        """Every message in order, with what its partial shows (a payment message: its card, and whether money
        waits on it), in two queries however many cards it holds."""
        return self.messages.select_related(
            "author", "conversation__customer", "payment_request", "outbound_delivery"
        ).prefetch_related("payment_request__exceptions")


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", "From the customer"
        OUTBOUND = "outbound", "To the customer"
        INTERNAL = "internal", "Desk event"

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        SYSTEM = "system", "System"
        PAYMENT = "payment", "Payment"

    conversation = models.ForeignKey(Conversation, on_delete=models.PROTECT, related_name="messages")
    direction = models.CharField(max_length=16, choices=Direction)
    kind = models.CharField(max_length=16, choices=Kind, default=Kind.TEXT)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_direction_display()}: {self.body[:40]}"

    @property
    def dom_id(self) -> str:
        return f"message-{self.pk}"


from .messaging.models import InboundWebhookEvent, OutboundDelivery  # noqa: E402, F401  (models of this app)
