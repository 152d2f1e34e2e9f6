"""The messaging outbox and the inbox of provider webhook events (registered through `desk.models`)."""

from django.db import models
from django.db.models import Q


class OutboundDelivery(models.Model):
    """One outbound message on its way to the customer over WhatsApp or SMS (the outbox row).

    Written in the transaction that writes the message; `desk.messaging.outbox.deliver` transmits it. Once the
    provider accepted it, `provider_message_id` is stored and it is never sent again.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENDING = "sending", "Being sent"
        ACCEPTED = "accepted", "Accepted by the provider"
        FAILED = "failed", "Not delivered"

    class DeliveryStatus(models.TextChoices):
        """What the provider last reported (forward only: sent < delivered < read; failed is final)."""

        NONE = "", "Not reported"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        READ = "read", "Read"
        FAILED = "failed", "Failed"

    class Purpose(models.TextChoices):
        TEXT = "text", "Text"
        PAYMENT_REQUEST = "payment_request", "Payment request"
        CANCEL_NOTICE = "cancel_notice", "Cancel notice"

    message = models.OneToOneField("desk.Message", on_delete=models.PROTECT, related_name="outbound_delivery")
    channel = models.CharField(max_length=16)
    provider = models.CharField(max_length=16)
    to = models.CharField(max_length=20)
    purpose = models.CharField(max_length=20, choices=Purpose, default=Purpose.TEXT)
    # The approved template's variables, used instead of the body outside WhatsApp's 24-hour window.
    template_variables = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=16, choices=State, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    sent_as_template = models.CharField(max_length=120, blank=True)
    provider_message_id = models.CharField(max_length=160, blank=True)
    delivery_status = models.CharField(max_length=16, choices=DeliveryStatus, default="", blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    version = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(state__in=["pending", "sending"]),
                name="desk_outbound_due",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="desk_outbound_provider_message_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} delivery of message {self.message_id} ({self.state})"


class InboundWebhookEvent(models.Model):
    """A provider event already applied (inbound message or status): a replay finds it and does nothing."""

    provider = models.CharField(max_length=16)
    event_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=16)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="desk_inbound_event_unique"),
        ]
        # The hourly retention purge finds old rows by when they arrived.
        indexes = [models.Index(fields=["received_at"], name="desk_inbound_received")]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} {self.event_id}"
