"""Integration records: API keys, the idempotency store, webhook endpoints and the webhook outbox.

Writes go through `api.keys`, `api.idempotency`, `api.outbox` and `api.webhooks`; the admin calls those.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q


class ApiKey(models.Model):
    """A secret an integrator sends as `Authorization: Bearer <key>`. Only its SHA-256 digest is stored;
    the prefix (the key's first characters) lets people recognise it in lists and logs."""

    class Scope(models.TextChoices):
        READ = "read", "Read only"
        WRITE = "write", "Read and write"

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'OMS production'")
    scope = models.CharField(max_length=8, choices=Scope, default=Scope.READ)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.WRITE


class IdempotencyRecord(models.Model):
    """One Idempotency-Key of one API key: the request it came with and, once done, the response to replay.

    `completed_at` is null while the first request is still running; a concurrent request with the same key
    is told so (409) rather than run twice.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The JSON text answered, replayed byte for byte")
    created_at = models.DateTimeField()
    locked_at = models.DateTimeField(help_text="When a request last started running under this key")
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="api_idempotency_key_once")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return self.key


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


class WebhookEndpoint(models.Model):
    """Where an integrator receives events, and which ones. Signed with `secret`; during a rotation the
    previous secret signs too (a second `v1=` signature) until `previous_secret_expires_at`."""

    class EventType(models.TextChoices):
        SENT = "payment_request.sent", "payment_request.sent"
        CLICKED = "payment_request.clicked", "payment_request.clicked"
        PAID = "payment_request.paid", "payment_request.paid"
        CANCELED = "payment_request.canceled", "payment_request.canceled"
        EXPIRED = "payment_request.expired", "payment_request.expired"
        FAILED = "payment_request.failed", "payment_request.failed"
        PAYMENT_EXCEPTION = "payment_request.payment_exception", "payment_request.payment_exception"
        EXCEPTION_REFUNDED = "payment_request.exception_refunded", "payment_request.exception_refunded"

    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    event_types = ArrayField(
        models.CharField(max_length=64, choices=EventType), help_text="The events this endpoint receives"
    )
    secret = models.CharField(max_length=100, default=new_webhook_secret)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_enabled = models.BooleanField("enabled", default=True)
    failing_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="First failure since the last success"
    )
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["url", "pk"]

    def __str__(self) -> str:
        return self.url


class WebhookEvent(models.Model):
    """One event of the outbox, written in the transaction of the change it reports. The payload is frozen
    at that moment (the request object with its version), so every delivery sends the same bytes' content."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=64, choices=WebhookEndpoint.EventType)
    payment_request = models.ForeignKey(
        "payments.PaymentRequest", on_delete=models.PROTECT, related_name="webhook_events_out"
    )
    payment_event = models.OneToOneField(
        "payments.PaymentEvent", on_delete=models.PROTECT, related_name="webhook_event"
    )
    # The exact JSON text every delivery sends (and signs): the same bytes on every retry.
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"

    @property
    def event_id(self) -> str:
        return f"evt_{self.public_id.hex}"


class WebhookDelivery(models.Model):
    """One event for one endpoint: pending until the endpoint answers 2xx, retried with exponential backoff
    until `retry_until`, then failed."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (gave up)"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, choices=State, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due. A worker that claims the delivery pushes it forward by the attempt lease,
    # so a duplicate task finds it not due, and a crashed worker's delivery becomes due again by itself.
    next_attempt_at = models.DateTimeField()
    # While a delivery task is queued the sweep leaves it alone; if the task is lost, the sweep requeues it.
    queued_until = models.DateTimeField(null=True, blank=True)
    retry_until = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="api_webhook_delivery_once")
        ]
        indexes = [
            # The sweep's query: pending deliveries by due time.
            models.Index(
                fields=["next_attempt_at"], condition=Q(state="pending"), name="api_delivery_pending_due"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint}"


class WebhookAttempt(models.Model):
    """One POST of a delivery and what the endpoint answered (or why nothing came back)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.response_status or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300
