"""Chat 2 Pay records: payment requests, their append-only history, gateway inbox and money exceptions.

Statuses, rules and texts live in `payments.lifecycle`; every write of a request's status is made by
`payments.actions`, inside one transaction that also writes the history row.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper
from django.utils import timezone

from . import lifecycle
from .lifecycle import ActorKind, Reason, Status

OPEN = [status.value for status in sorted(lifecycle.OPEN_STATUSES)]


def new_payment_token() -> str:
    """The customer's link token: 256 bits from `secrets`, never a database id."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Only this digest is stored, so a leaked table (or admin screen) reveals no working link."""
    return hashlib.sha256(token.encode()).hexdigest()


class BusinessProfile(models.Model):
    """The merchant as customers see it on payment pages. One row, edited in the admin."""

    name = models.CharField("merchant name", max_length=120, default="Chat Desk")

    class Meta:
        verbose_name = "business profile"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="payments_business_profile_singleton")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> BusinessProfile:
        """The profile (its row is created by a migration); reading it never writes, even on a GET."""
        return cls.objects.filter(pk=1).first() or cls(pk=1)


class PaymentRequest(models.Model):
    """A Chat 2 Pay link sent by an agent in a conversation. Its status changes only through `actions`."""

    conversation = models.ForeignKey(
        "desk.Conversation", on_delete=models.PROTECT, related_name="payment_requests"
    )
    customer = models.ForeignKey("desk.Customer", on_delete=models.PROTECT, related_name="payment_requests")
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payment_requests_sent"
    )
    # The transcript message that carries the link to the customer and shows this card to the desk.
    message = models.OneToOneField("desk.Message", on_delete=models.PROTECT, related_name="payment_request")
    phone = models.CharField("phone number", max_length=20, help_text="E.164")
    amount = models.DecimalField(max_digits=18, decimal_places=3)
    currency = models.CharField(max_length=3)
    order_number = models.CharField(max_length=40)
    description = models.CharField(max_length=200, blank=True)
    # The customer's name and phone, one per line, for the Supervisor Desk's search. PostgreSQL keeps it (a
    # trigger on insert and update here, another on a customer's rename: payments migration 0007), so a
    # search reads this table alone instead of matching the customers table on every pass of the totals.
    customer_search = models.TextField(editable=False, default="")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    idempotency_key = models.CharField(max_length=64, editable=False)

    status = models.CharField(max_length=16, choices=Status, default=Status.SENT)
    sent_at = models.DateTimeField()
    click_deadline = models.DateTimeField()
    clicked_at = models.DateTimeField(null=True, blank=True)
    pay_deadline = models.DateTimeField(null=True, blank=True)
    payment_started_at = models.DateTimeField(null=True, blank=True)
    payment_attempts = models.PositiveSmallIntegerField(default=0)
    last_decline = models.CharField(max_length=200, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="When it became paid, canceled, expired or failed"
    )
    failure_reason = models.CharField(max_length=200, blank=True)
    gateway = models.CharField(max_length=32)
    gateway_reference = models.CharField(max_length=100, blank=True)
    # How many times the gateway refused to open a checkout. A refusal is kept under its idempotency key (a
    # repeat would get the same refusal), so the key names this count: the next click sends a new one.
    checkout_refusals = models.PositiveSmallIntegerField(default=0, editable=False)

    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-sent_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["order_number"],
                condition=Q(status__in=OPEN),
                name="payments_one_live_request_per_order",
            ),
            models.UniqueConstraint(fields=["agent", "idempotency_key"], name="payments_request_idempotency"),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~Q(gateway_reference=""),
                name="payments_request_gateway_reference",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payments_request_amount_positive"),
            models.CheckConstraint(
                condition=Q(clicked_at__isnull=True) | Q(pay_deadline__isnull=False),
                name="payments_request_clicked_has_pay_deadline",
            ),
        ]
        indexes = [
            # The Supervisor Desk: newest first (its default order), and order numbers searched by prefix.
            models.Index(F("sent_at").desc(), F("id").desc(), name="payments_pr_sent_newest"),
            models.Index(
                OpClass(Upper("order_number"), name="text_pattern_ops"), name="payments_pr_order_prefix"
            ),
            # The customer side of that search (any part of the name or phone). Only where PostgreSQL has
            # pg_trgm: migration 0007 skips it on a server without the contrib modules.
            GinIndex(
                OpClass(Upper("customer_search"), name="gin_trgm_ops"), name="payments_pr_customer_trgm"
            ),
            # The expiry sweep's two queries: due requests per open status, oldest deadline first.
            models.Index(
                fields=["click_deadline"], condition=Q(status=Status.SENT), name="payments_pr_sent_due"
            ),
            models.Index(
                fields=["pay_deadline"], condition=Q(status=Status.CLICKED), name="payments_pr_clicked_due"
            ),
            models.Index(fields=["conversation", "sent_at"]),
        ]

    def __str__(self) -> str:
        return f"Order {self.order_number} · {self.display_amount} · {self.get_status_display()}"

    @property
    def dom_id(self) -> str:
        return f"payment-request-{self.pk}"

    @property
    def display_amount(self) -> str:
        return lifecycle.format_amount(self.amount, self.currency)

    @property
    def deadline(self):
        """The deadline that is running now: the click window while sent, the pay window while clicked."""
        if self.status == Status.SENT:
            return self.click_deadline
        if self.status == Status.CLICKED:
            return self.pay_deadline
        return None

    @property
    def seconds_left(self) -> int:
        """Whole seconds until the running deadline (0 when none runs); the card counts down from it."""
        if self.deadline is None:
            return 0
        return max(0, int((self.deadline - timezone.now()).total_seconds()))

    @property
    def time_left(self) -> str:
        minutes, seconds = divmod(self.seconds_left, 60)
        return f"{minutes}:{seconds:02d}"

    def effective_status(self, now=None) -> Status:
        return lifecycle.effective_status(self.status, self.deadline, now or timezone.now())

    def refusal(self, transition: lifecycle.Transition, now=None) -> lifecycle.Refusal | None:
        return lifecycle.refusal(
            transition, status=self.status, deadline=self.deadline, now=now or timezone.now()
        )

    @property
    def can_be_canceled(self) -> bool:
        """Whether the card offers "Cancel payment" right now (the action re-checks under a lock)."""
        return self.refusal(lifecycle.Transition.CANCEL) is None


class PaymentEvent(models.Model):
    """One row of a request's history: from, to, when, who, why. Append-only (a database trigger refuses
    UPDATE and DELETE), written by the same transaction as the change it records."""

    payment_request = models.ForeignKey(PaymentRequest, on_delete=models.PROTECT, related_name="events")
    from_status = models.CharField(max_length=16, choices=Status, blank=True)
    to_status = models.CharField(max_length=16, choices=Status)
    at = models.DateTimeField()
    actor_kind = models.CharField(max_length=16, choices=ActorKind)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=32, choices=Reason)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["payment_request", "at"])]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status} ({self.get_reason_display()})"


class GatewayWebhookEvent(models.Model):
    """The gateway inbox: each event id is processed once, in the transaction that applies its effect."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied"
        IGNORED = "ignored", "Ignored (superseded or out of order)"
        EXCEPTION = "exception", "Recorded as a payment exception"
        UNMATCHED = "unmatched", "No matching payment request"
        RECEIVED = "received", "Received, not processed yet"

    gateway = models.CharField(max_length=32)
    event_id = models.CharField(max_length=100)
    event_type = models.CharField(max_length=64)
    payment_request = models.ForeignKey(
        PaymentRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="webhook_events"
    )
    outcome = models.CharField(max_length=16, choices=Outcome)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    # An event that matches no request yet (it may have overtaken our own commit) stays RECEIVED and is tried
    # again at `next_attempt_at`; after the last attempt it is UNMATCHED, flagged for a person. A drain that
    # claims an event sets it too: past it, a drain that died is presumed to have left the event undone.
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["gateway", "event_id"], name="payments_webhook_event_once")
        ]
        indexes = [
            # The purge of processed events past the retention (and the admin's newest-first list).
            models.Index(fields=["received_at"], name="payments_webhook_received"),
            # The drains' and the reconciler's events still to apply: a few rows, however long the inbox.
            models.Index(fields=["id"], condition=Q(outcome="received"), name="payments_webhook_waiting"),
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_type} {self.event_id}"


class PaymentException(models.Model):
    """Money the gateway confirmed that did not become a payment: never dropped, shown to supervisors,
    and resolved explicitly (refunded, or marked resolved)."""

    class Kind(models.TextChoices):
        LATE = "late", "Money for a closed request"
        AMOUNT_MISMATCH = "amount_mismatch", "Amount or currency differs"
        DUPLICATE = "duplicate", "Second payment for a paid request"

    class Resolution(models.TextChoices):
        OPEN = "open", "Open"
        REFUNDED = "refunded", "Refunded"
        RESOLVED = "resolved", "Resolved"

    payment_request = models.ForeignKey(PaymentRequest, on_delete=models.PROTECT, related_name="exceptions")
    kind = models.CharField(max_length=32, choices=Kind)
    amount = models.DecimalField(max_digits=18, decimal_places=3)
    currency = models.CharField(max_length=3)
    gateway = models.CharField(max_length=32)
    gateway_reference = models.CharField(max_length=100)
    webhook_event = models.OneToOneField(
        GatewayWebhookEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="exception"
    )
    resolution = models.CharField(max_length=16, choices=Resolution, default=Resolution.OPEN)
    refund_reference = models.CharField(max_length=100, blank=True)
    # Refund attempts the gateway refused; the refund's idempotency key names the attempt after them, so a
    # retry after a refusal is a new request while a double-click of the same attempt refunds once.
    refund_refusals = models.PositiveSmallIntegerField(default=0)
    last_refund_error = models.CharField(max_length=300, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["resolution", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {lifecycle.format_amount(self.amount, self.currency)}"


class SandboxCheckout(models.Model):
    """The built-in sandbox gateway's own record of a checkout session, standing in for a real gateway's
    database. It knows our request only by `client_reference` (as Stripe knows `client_reference_id`)."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        COMPLETE = "complete", "Complete"
        EXPIRED = "expired", "Expired"

    reference = models.CharField(max_length=64, unique=True)
    client_reference = models.CharField(max_length=64, unique=True)
    amount = models.DecimalField(max_digits=18, decimal_places=3)
    currency = models.CharField(max_length=3)
    state = models.CharField(max_length=16, choices=State, default=State.OPEN)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.reference
