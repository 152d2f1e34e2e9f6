"""The Chat 2 Pay lifecycle, declared once: statuses, transitions, windows, refusals and the texts shown.

Models, actions, forms, views, templates, tasks and tests import from here; nothing else re-lists a status,
a rule or a message. `payments.actions` is the only code that applies these rules to the database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import models


class Status(models.TextChoices):
    """Where a payment request is (product.md, "Chat 2 Pay lifecycle").

    - sent: the link was created and handed to the customer's channel; the click window runs.
    - clicked: the customer opened the link in a real browser; the pay window runs.
    - paid: the gateway confirmed the money.
    - canceled: the agent canceled it before the customer opened it.
    - expired: the click window or the pay window ran out.
    - failed: the channel could not deliver the link at all.
    """

    SENT = "sent", "Sent"
    CLICKED = "clicked", "Clicked"
    PAID = "paid", "Paid"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired"
    FAILED = "failed", "Failed"


# A live request still has a running window; at most one per order number (a database constraint).
OPEN_STATUSES = frozenset({Status.SENT, Status.CLICKED})
CLOSED_STATUSES = frozenset(Status) - OPEN_STATUSES


class Transition(models.TextChoices):
    """Everything that can happen to a request after it was sent; each is one function in `actions`."""

    CLICK = "click", "Customer opened the link"
    START_PAYMENT = "start_payment", "Customer submitted a payment"
    DECLINE = "decline", "Gateway declined a payment"
    PAY = "pay", "Gateway confirmed the payment"
    CANCEL = "cancel", "Agent canceled"
    EXPIRE = "expire", "Window ran out"
    FAIL = "fail", "Channel could not deliver the link"


class Window(enum.Enum):
    """How a transition relates to the request's current deadline."""

    ANY = "any"  # deadline irrelevant (gateway results are judged by when the payment was started)
    OPEN = "open"  # only strictly before the deadline: at the deadline itself the window is closed
    PASSED = "passed"  # only at or after the deadline (expiry)


@dataclass(frozen=True)
class Rule:
    """One row of the transition table. `target=None` records an event but keeps the status."""

    sources: frozenset[Status]
    target: Status | None
    window: Window


TRANSITIONS: dict[Transition, Rule] = {
    Transition.CLICK: Rule(frozenset({Status.SENT}), Status.CLICKED, Window.OPEN),
    Transition.START_PAYMENT: Rule(frozenset({Status.CLICKED}), None, Window.OPEN),
    Transition.DECLINE: Rule(frozenset({Status.CLICKED}), None, Window.ANY),
    # A payment started before the pay deadline is paid even if the sweep expired the request meanwhile
    # (`payment_started_in_time` decides); anything else the gateway confirms is late money, never dropped.
    Transition.PAY: Rule(frozenset({Status.CLICKED, Status.EXPIRED}), Status.PAID, Window.ANY),
    Transition.CANCEL: Rule(frozenset({Status.SENT}), Status.CANCELED, Window.OPEN),
    Transition.EXPIRE: Rule(OPEN_STATUSES, Status.EXPIRED, Window.PASSED),
    Transition.FAIL: Rule(frozenset({Status.SENT}), Status.FAILED, Window.ANY),
}


class ActorKind(models.TextChoices):
    """Who made a change, on every history row."""

    AGENT = "agent", "Agent"
    CUSTOMER = "customer", "Customer"
    GATEWAY = "gateway", "Gateway"
    SYSTEM = "system", "System"
    STAFF = "staff", "Supervisor or admin"  # only to resolve money that did not become a payment


class Reason(models.TextChoices):
    """Why a history row was written (the history's "why")."""

    SENT = "sent", "Agent sent the payment link"
    CLICKED = "clicked", "Customer opened the link"
    PAYMENT_STARTED = "payment_started", "Customer submitted a payment"
    PAYMENT_DECLINED = "payment_declined", "Gateway declined the payment"
    PAID = "paid", "Gateway confirmed the payment"
    CANCELED = "canceled", "Agent canceled the request"
    CLICK_WINDOW_PASSED = "click_window_passed", "Not opened within the click window"
    PAY_WINDOW_PASSED = "pay_window_passed", "Not paid within the pay window"
    DELIVERY_FAILED = "delivery_failed", "Channel could not deliver the link"
    LATE_PAYMENT = "late_payment", "Money arrived for a closed request"
    AMOUNT_MISMATCH = "amount_mismatch", "Gateway amount or currency differs from the request"
    DUPLICATE_PAYMENT = "duplicate_payment", "A second payment arrived for a paid request"
    REFUNDED = "refunded", "Money that did not become a payment was refunded"


class Refusal(models.TextChoices):
    """Why a transition was refused (nothing changed). The label is the agent's toast text (product.md)."""

    ALREADY_CLICKED = "already_clicked", "The customer has already clicked the link."
    ALREADY_CANCELED = "already_canceled", "The link is already canceled."
    EXPIRED = "expired", "The link has expired."
    NOT_DELIVERED = "not_delivered", "The link could not be delivered to the customer."
    ALREADY_PAID = "already_paid", "The customer has already paid."
    NOT_CLICKED = "not_clicked", "The customer has not opened the link yet."
    NOT_DUE = "not_due", "The window has not run out yet."


# What each status means to a refused caller; cancel reads paid as "already clicked" (product.md).
_REFUSAL_FOR_STATUS = {
    Status.SENT: Refusal.NOT_CLICKED,
    Status.CLICKED: Refusal.ALREADY_CLICKED,
    Status.PAID: Refusal.ALREADY_PAID,
    Status.CANCELED: Refusal.ALREADY_CANCELED,
    Status.EXPIRED: Refusal.EXPIRED,
    Status.FAILED: Refusal.NOT_DELIVERED,
}
_REFUSAL_OVERRIDES = {(Transition.CANCEL, Status.PAID): Refusal.ALREADY_CLICKED}


def is_overdue(status: str, deadline: datetime | None, now: datetime) -> bool:
    """An open request whose deadline has come is expired for every purpose, swept or not."""
    return status in OPEN_STATUSES and deadline is not None and now >= deadline


def effective_status(status: str, deadline: datetime | None, now: datetime) -> Status:
    """The status people should see now: an overdue open request reads as expired before the sweep runs."""
    return Status.EXPIRED if is_overdue(status, deadline, now) else Status(status)


def refusal(
    transition: Transition, *, status: str, deadline: datetime | None, now: datetime
) -> Refusal | None:
    """Why `transition` may not happen to a request in `status` with `deadline` at `now`; None if it may."""
    rule = TRANSITIONS[transition]
    overdue = is_overdue(status, deadline, now)
    if status in rule.sources:
        if rule.window is Window.OPEN and overdue:
            return Refusal.EXPIRED
        if rule.window is Window.PASSED and not overdue:
            return Refusal.NOT_DUE
        return None
    seen = Status.EXPIRED if overdue else Status(status)
    return _REFUSAL_OVERRIDES.get((transition, seen), _REFUSAL_FOR_STATUS[seen])


def payment_started_in_time(
    *, clicked_at: datetime | None, pay_deadline: datetime | None, started_at: datetime
) -> bool:
    """Confirmed money is a payment if the customer opened the link and started paying before the deadline."""
    return clicked_at is not None and pay_deadline is not None and started_at < pay_deadline


# --- Windows ------------------------------------------------------------------------------------------------


def click_deadline(sent_at: datetime) -> datetime:
    """The link expires this long after it was sent unless the customer opens it (default 5 minutes)."""
    return sent_at + timedelta(seconds=settings.CHAT2PAY_CLICK_WINDOW_SECONDS)


def pay_deadline(clicked_at: datetime) -> datetime:
    """After opening the link the customer has this long to pay (default 15 minutes)."""
    return clicked_at + timedelta(seconds=settings.CHAT2PAY_PAY_WINDOW_SECONDS)


def describe_window(seconds: int) -> str:
    """A window in words for customers: "5 minutes", "1 minute", "30 seconds"."""
    if seconds % 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def expiry_reason(status: str) -> Reason:
    return Reason.CLICK_WINDOW_PASSED if status == Status.SENT else Reason.PAY_WINDOW_PASSED


# --- Money --------------------------------------------------------------------------------------------------

# ISO 4217 minor units (decimal places) of the currencies a request may be in.
MINOR_UNITS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BHD": 3, "BRL": 2, "BWP": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "DKK": 2,
    "EGP": 2, "EUR": 2, "GBP": 2, "GHS": 2, "HKD": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KES": 2,
    "KRW": 0, "KWD": 3, "MXN": 2, "MUR": 2, "NAD": 2, "NGN": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PLN": 2,
    "SAR": 2, "SEK": 2, "SGD": 2, "TND": 3, "TZS": 2, "UGX": 0, "USD": 2, "VND": 0, "XOF": 0, "ZAR": 2,
    "ZMW": 2,
}  # fmt: skip


def currency_choices() -> list[tuple[str, str]]:
    return [(code, code) for code in sorted(MINOR_UNITS)]


def quantize(amount: Decimal, currency: str) -> Decimal:
    """`amount` with exactly the currency's number of decimal places (JPY 0, ZAR 2, KWD 3)."""
    return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal, currency: str) -> str:
    """How an amount is written to people: `ZAR 1,250.00`, `JPY 1,500`, `KWD 3.125`."""
    return f"{currency} {quantize(amount, currency):,}"


# --- Texts --------------------------------------------------------------------------------------------------
# Customer texts go out over the conversation's channel; the cancel notice is exact (the vendor's guide).

LINK_MESSAGE = (
    "Payment request for order {order_number}: {amount}.\n"
    "Pay securely here: {url}\n"
    "The link expires if it is not opened within {window}."
)
CANCEL_NOTICE = "The {order_number} has been canceled by the Agent"
PAYMENT_CONFIRMATION = "Payment received for order {order_number}: {amount}. Thank you!"

SENT_TOAST = "Payment request for order {order_number} sent."
CANCELED_TOAST = "Payment request for order {order_number} canceled."
LIVE_ORDER_REFUSAL = (
    "Order {order_number} already has a live payment request (sent by {agent} at {sent_at:%H:%M}). "
    "Cancel it or wait until it expires."
)
CONVERSATION_NOT_OPEN_REFUSAL = "Payment requests can only be sent in your own open chat."
NO_CHANNEL_FAILURE = "The {channel} channel is not connected, so the link could not be delivered."

# What the customer's /pay/<token>/ page says when the gateway could not open a checkout (nothing was attached
# to the request; the button tries again).
CHECKOUT_UNAVAILABLE_TEXT = "We could not start the payment. Please try again."

# What the customer's /pay/<token>/ page says once the link no longer takes payments (heading, text; the text
# may name {order_number} and {amount}).
CLOSED_PAGE_TEXT = {
    Status.PAID: ("Payment received", "Thank you. Order {order_number} has been paid: {amount}."),
    Status.CANCELED: (
        "Payment link canceled",
        "This payment link was canceled. Ask the agent for a new one.",
    ),
    Status.EXPIRED: ("Payment link expired", "This payment link has expired. Ask the agent for a new one."),
    Status.FAILED: (
        "Payment link unavailable",
        "This payment link is not available. Ask the agent for a new one.",
    ),
}
