"""What Chat 2 Pay needs from a payment gateway. Every gateway call happens outside database transactions.

The domain never learns a payment's result from a browser: results arrive as signed webhooks, are verified
and stored in the inbox (`payments.inbox`), and a task applies each as a `GatewayEvent` with
`payments.actions.record_received_gateway_event`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from django import forms

    from payments.models import PaymentRequest


class InvalidWebhook(Exception):
    """Bad signature, stale timestamp or malformed body: answer 400 and change nothing."""


class GatewayError(Exception):
    """The gateway could not do what was asked (timeout, refusal).

    `refused` says whether a retry needs a new idempotency key. True: the gateway answered with a refusal and
    keeps that answer under the key (Stripe replays it, 5xx included), so repeating the key repeats the
    refusal. False: the answer was lost (timeout, connection error) or the gateway asked for a retry (409,
    429); the call may have happened, so only the same key is safe, and it returns what happened.
    """

    def __init__(self, message: str = "", *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class EventKind(enum.StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    OTHER = "other"  # stored in the inbox, no effect


class CheckoutState(enum.StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class PaymentOutcome(enum.StrEnum):
    """What the customer sees right after submitting the gateway's form (the webhook decides the status)."""

    APPROVED = "approved"
    DECLINED = "declined"
    CLOSED = "closed"


@dataclass(frozen=True)
class Checkout:
    reference: str


@dataclass(frozen=True)
class PaymentStart:
    outcome: PaymentOutcome
    message: str = ""
    redirect_url: str = ""  # a hosted-page gateway (Stripe Checkout): send the customer there


# Money columns are DECIMAL(18, 3): an amount from a gateway must stay below 10^15 to be recorded.
MAX_AMOUNT = Decimal(10) ** 15


@dataclass(frozen=True)
class GatewayEvent:
    """A verified webhook event, in the domain's words. `started_at` is the gateway's clock (B3)."""

    event_id: str
    kind: EventKind
    type: str
    client_reference: str
    payment_reference: str = ""
    amount: Decimal | None = None
    currency: str = ""
    started_at: datetime | None = None
    failure_message: str = ""
    card: Mapping[str, str] = field(default_factory=dict)
    payload: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse (ValueError) money the records cannot hold, rather than fail their insert with a 500: a
        signed event is still the gateway's word, and a parser turns this into InvalidWebhook (400)."""
        if self.amount is not None and not (self.amount.is_finite() and abs(self.amount) < MAX_AMOUNT):
            raise ValueError(f"amount {self.amount} out of range")
        if len(self.currency) > 3:
            raise ValueError("currency is not an ISO 4217 code")


class Gateway(Protocol):
    """One payment gateway. Implementations must make create/expire/refund idempotent per request."""

    name: str
    # Template of the gateway's part of /pay/<token>/ (its payment form), given `form` and `payment_request`.
    checkout_template: str

    def create_checkout(self, payment_request: PaymentRequest) -> Checkout:
        """Open (or return the already open) checkout for a clicked request, closing at its pay deadline.

        Idempotent per (request, `checkout_refusals`); raises GatewayError."""

    def payment_form(self, data: Mapping | None = None) -> forms.Form:
        """The fields the customer fills in on the pay page (none for redirecting gateways). Once valid,
        its `summary()` returns what may be stored about the payment method (card brand, last four digits)."""

    def start_payment(self, checkout_reference: str, form: forms.Form, *, site_url: str) -> PaymentStart:
        """Submit the customer's payment; the final result arrives later as a webhook."""

    def expire_checkout(self, checkout_reference: str) -> CheckoutState:
        """Close a checkout so it takes no more money; COMPLETE means it was paid first (so not an expiry)."""

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Verify the signature over the raw body before reading it; else raise InvalidWebhook."""

    def refund(self, payment_reference: str, amount: Decimal, currency: str, *, idempotency_key: str) -> str:
        """Return money to the customer; returns the gateway's refund reference. The same key refunds once.
        Raises GatewayError (`refused` when the next attempt needs a new key)."""
