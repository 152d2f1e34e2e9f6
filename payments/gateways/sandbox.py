"""The built-in sandbox gateway: test cards, a hosted card form, and Stripe-style signed webhooks.

It behaves like a real gateway from the domain's point of view: it keeps its own checkout records
(`SandboxCheckout`), decides a card's fate, and reports the result only through a signed webhook to
`/webhooks/sandbox/`, delivered by a Celery task with retries. Card numbers are never stored or logged:
the webhook carries the brand and last four digits only.

Test cards: 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined, 4000 0000 0000 9995 fails with
insufficient funds; any other number that passes the Luhn check succeeds.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.request
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from urllib.parse import urljoin

from django import forms
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

from payments import lifecycle
from payments.models import PaymentRequest, SandboxCheckout

from .base import (
    Checkout,
    CheckoutState,
    EventKind,
    GatewayError,
    GatewayEvent,
    InvalidWebhook,
    PaymentOutcome,
    PaymentStart,
)

SIGNATURE_HEADER = "Sandbox-Signature"
# Chaos knobs (CHAT2PAY_SANDBOX_CHAOS), each one a gateway behaviour from the reliability spec, so every
# scenario is a deterministic test and can be tried by hand on a demo desk:
CHAOS = (
    "duplicate",  # every webhook is delivered three times (C3 #22)
    "reorder",  # a stale decline is delivered after the payment's success (C3 #23)
    "delay",  # the webhook arrives CHAT2PAY_SANDBOX_DELAY_SECONDS after the pay deadline (B3, C3 #24)
    "drop_then_retry",  # the first delivery attempt fails; the retry delivers (C3 #27)
    "complete_before_expire",  # the expire call finds the checkout paid a moment earlier (C1 #4)
    "decline",  # every card is declined (C1 #9)
    "fail_refunds",  # refunds fail, so late money stays open (C3 #30)
)
CHAOS_DECLINE = ("card_declined", "Your card was declined. Try another card.")


def chaos(knob: str) -> bool:
    return knob in settings.CHAT2PAY_SANDBOX_CHAOS


DECLINES = {
    "4000000000000002": ("card_declined", "Your card was declined. Try another card."),
    "4000000000009995": ("insufficient_funds", "Your card has insufficient funds. Try another card."),
}


def webhook_secrets() -> list[str]:
    """Secrets accepted on incoming webhooks (several during a rotation); the first one signs."""
    return settings.CHAT2PAY_SANDBOX_WEBHOOK_SECRETS or [
        salted_hmac("payments.gateways.sandbox", "webhook-signing", algorithm="sha256").hexdigest()
    ]


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> str:
    """The signature header value for `body`, in Stripe's format `t=<unix time>,v1=<hex HMAC-SHA256>`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_mac(secret or webhook_secrets()[0], timestamp, body)}"


def verify(body: bytes, header: str | None) -> None:
    """Check the signature over the raw bytes and the timestamp's age (replays); raise InvalidWebhook."""
    if not header:
        raise InvalidWebhook("missing signature")
    timestamps, signatures = [], []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        raise InvalidWebhook("malformed signature header")
    timestamp = int(timestamps[0])
    if abs(time.time() - timestamp) > settings.CHAT2PAY_WEBHOOK_TOLERANCE_SECONDS:
        raise InvalidWebhook("timestamp outside the tolerance")
    expected = [_mac(secret, timestamp, body) for secret in webhook_secrets()]
    if not any(hmac.compare_digest(mac, given) for mac in expected for given in signatures):
        raise InvalidWebhook("signature mismatch")


def post_webhook(url: str, body: str) -> None:
    """Deliver one event to the merchant, signed now (so a retry carries a fresh timestamp)."""
    data = body.encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(data)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # non-2xx raises HTTPError (an OSError)
        response.read()


def _deliveries(event: dict, checkout: SandboxCheckout, now: datetime) -> list[tuple[str, dict]]:
    """The webhook deliveries one payment causes, as (body, apply_async options), after the chaos knobs."""
    options: dict = {}
    if chaos("delay"):
        late = (checkout.expires_at - now).total_seconds() + settings.CHAT2PAY_SANDBOX_DELAY_SECONDS
        options["countdown"] = max(0.0, late)
    if chaos("drop_then_retry"):
        options["kwargs"] = {"drop_first": True}
    deliveries = [(json.dumps(event), options)] * (3 if chaos("duplicate") else 1)
    if chaos("reorder") and event["type"] == EventKind.PAYMENT_SUCCEEDED:
        # An earlier attempt's decline, held up in the gateway's queue, arrives after the success.
        stale = {
            **event,
            "id": f"evt_sbx_{secrets.token_hex(12)}",
            "type": EventKind.PAYMENT_FAILED,
            "created": event["created"] - 1,
            "data": {
                **event["data"],
                "payment": f"pay_sbx_{secrets.token_hex(12)}",
                "failure_code": CHAOS_DECLINE[0],
                "failure_message": CHAOS_DECLINE[1],
            },
        }
        deliveries.append((json.dumps(stale), options))
    return deliveries


def _complete_just_before_expiry(checkout_reference: str) -> None:
    """Chaos: the customer's payment lands a moment before the expire call (the sandbox's own record and its
    webhook, as a real gateway would send it)."""
    from payments.tasks import deliver_sandbox_webhook_task

    with transaction.atomic():
        checkout = (
            SandboxCheckout.objects.select_for_update(no_key=True)
            .filter(reference=checkout_reference, state=SandboxCheckout.State.OPEN)
            .first()
        )
        if checkout is None:
            return
        started = checkout.expires_at - timedelta(seconds=1)
        checkout.state = SandboxCheckout.State.COMPLETE
        checkout.completed_at = started
        checkout.save(update_fields=["state", "completed_at"])
        event = {
            "id": f"evt_sbx_{secrets.token_hex(12)}",
            "type": EventKind.PAYMENT_SUCCEEDED,
            "created": int(started.timestamp()),
            "data": {
                "checkout": checkout.reference,
                "client_reference": checkout.client_reference,
                "payment": f"pay_sbx_{secrets.token_hex(12)}",
                "amount": str(lifecycle.quantize(checkout.amount, checkout.currency)),
                "currency": checkout.currency,
                "started_at": started.isoformat(),
                "card": {"brand": "visa", "last4": "4242"},
                "failure_code": "",
                "failure_message": "",
            },
        }
        url = settings.CHAT2PAY_SANDBOX_WEBHOOK_URL or urljoin(
            settings.CHAT2PAY_PUBLIC_BASE_URL or "http://127.0.0.1/", reverse("payments:sandbox_webhook")
        )
        deliver_sandbox_webhook_task.delay_on_commit(url, json.dumps(event))


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _brand(digits: str) -> str:
    if digits.startswith("4"):
        return "visa"
    if re.match(r"5[1-5]|2[2-7]", digits):
        return "mastercard"
    if re.match(r"3[47]", digits):
        return "amex"
    return "card"


class UnechoedInput(forms.TextInput):
    """A text input that never writes a typed value back into the page (card number, CVC)."""

    def format_value(self, value) -> None:
        return None


class SandboxCardForm(forms.Form):
    """The sandbox's hosted card form. Its data never reaches a model, a log or a webhook in full."""

    card_number = forms.CharField(
        label="Card number",
        max_length=23,
        widget=UnechoedInput(
            attrs={"inputmode": "numeric", "autocomplete": "cc-number", "placeholder": "4242 4242 4242 4242"}
        ),
    )
    expiry = forms.CharField(
        label="Expiry",
        max_length=7,
        widget=forms.TextInput(attrs={"autocomplete": "cc-exp", "placeholder": "MM/YY"}),
    )
    cvc = forms.CharField(
        label="CVC",
        max_length=4,
        widget=UnechoedInput(attrs={"inputmode": "numeric", "autocomplete": "cc-csc"}),
    )

    def clean_card_number(self) -> str:
        digits = re.sub(r"[\s-]", "", self.cleaned_data["card_number"])
        if not digits.isdigit() or not 12 <= len(digits) <= 19 or not _luhn_valid(digits):
            raise forms.ValidationError("Your card number is invalid.")
        return digits

    def clean_expiry(self) -> date:
        match = re.fullmatch(r"(\d{1,2})\s*/\s*(\d{2}|\d{4})", self.cleaned_data["expiry"].strip())
        if not match or not 1 <= int(match[1]) <= 12:
            raise forms.ValidationError("Enter the expiry date as MM/YY.")
        year = int(match[2]) + (2000 if len(match[2]) == 2 else 0)
        today = timezone.localdate()
        if year < today.year:  # also keeps a year like 0000, which no date can hold, from raising
            raise forms.ValidationError("Your card has expired.")
        last_day = date(year, int(match[1]), calendar.monthrange(year, int(match[1]))[1])
        if last_day < today:
            raise forms.ValidationError("Your card has expired.")
        return last_day

    def clean_cvc(self) -> str:
        if not re.fullmatch(r"\d{3,4}", self.cleaned_data["cvc"].strip()):
            raise forms.ValidationError("Your card's security code is invalid.")
        return self.cleaned_data["cvc"].strip()

    def summary(self) -> dict[str, str]:
        """What may be kept about the card: brand and last four digits."""
        digits = self.cleaned_data["card_number"]
        return {"brand": _brand(digits), "last4": digits[-4:]}


CARD_FIELDS = {"brand", "last4"}  # what an event may tell about the card: never its number


def event_from_payload(payload: Mapping) -> GatewayEvent:
    """A verified event's body in the domain's words; InvalidWebhook if it is not a sandbox event.

    The webhook view calls it to refuse a malformed body with a 400; the inbox's task calls it again on the
    stored body, which therefore always parses."""
    try:
        data = payload["data"]
        started_at = datetime.fromisoformat(data["started_at"])
        if started_at.tzinfo is None:
            raise ValueError("started_at has no time zone")
        kind = EventKind(payload["type"]) if payload["type"] in set(EventKind) else EventKind.OTHER
        return GatewayEvent(
            event_id=str(payload["id"]),
            kind=kind,
            type=str(payload["type"]),
            client_reference=str(data["client_reference"]),
            payment_reference=str(data.get("payment", "")),
            amount=Decimal(data["amount"]),
            currency=str(data["currency"]),
            started_at=started_at,
            failure_message=str(data.get("failure_message", "")),
            card={key: str(value) for key, value in (data.get("card") or {}).items() if key in CARD_FIELDS},
            payload=payload,
        )
    except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation) as error:
        raise InvalidWebhook(f"malformed event: {error!r}") from None


class SandboxGateway:
    name = "sandbox"
    checkout_template = "payments/gateways/sandbox_form.html"

    def create_checkout(self, payment_request: PaymentRequest) -> Checkout:
        # Keyed by our request id: a second call (refreshed page, retried click) returns the same checkout.
        checkout, _ = SandboxCheckout.objects.get_or_create(
            client_reference=str(payment_request.pk),
            defaults={
                "reference": f"cs_sbx_{secrets.token_hex(12)}",
                "amount": payment_request.amount,
                "currency": payment_request.currency,
                "expires_at": payment_request.pay_deadline,
            },
        )
        return Checkout(reference=checkout.reference)

    def payment_form(self, data: Mapping | None = None) -> SandboxCardForm:
        return SandboxCardForm(data)

    def start_payment(self, checkout_reference: str, form: SandboxCardForm, *, site_url: str) -> PaymentStart:
        from payments.tasks import deliver_sandbox_webhook_task  # the task module imports the gateways

        now = timezone.now()
        decline = DECLINES.get(form.cleaned_data["card_number"]) or (
            CHAOS_DECLINE if chaos("decline") else None
        )
        with transaction.atomic():
            # Lock the checkout: two tabs paying at once charge it once.
            checkout = (
                SandboxCheckout.objects.select_for_update(no_key=True)
                .filter(reference=checkout_reference)
                .first()
            )
            if checkout is None or checkout.state != SandboxCheckout.State.OPEN or now >= checkout.expires_at:
                return PaymentStart(PaymentOutcome.CLOSED, "This checkout is closed.")
            if decline is None:
                checkout.state = SandboxCheckout.State.COMPLETE
                checkout.completed_at = now
                checkout.save(update_fields=["state", "completed_at"])
            event = {
                "id": f"evt_sbx_{secrets.token_hex(12)}",
                "type": EventKind.PAYMENT_FAILED if decline else EventKind.PAYMENT_SUCCEEDED,
                "created": int(now.timestamp()),
                "data": {
                    "checkout": checkout.reference,
                    "client_reference": checkout.client_reference,
                    "payment": f"pay_sbx_{secrets.token_hex(12)}",
                    "amount": str(lifecycle.quantize(checkout.amount, checkout.currency)),
                    "currency": checkout.currency,
                    "started_at": now.isoformat(),
                    "card": form.summary(),
                    "failure_code": decline[0] if decline else "",
                    "failure_message": decline[1] if decline else "",
                },
            }
            url = settings.CHAT2PAY_SANDBOX_WEBHOOK_URL or urljoin(
                site_url, reverse("payments:sandbox_webhook")
            )
            for body, options in _deliveries(event, checkout, now):
                deliver_sandbox_webhook_task.apply_async_on_commit((url, body), **options)
        if decline:
            return PaymentStart(PaymentOutcome.DECLINED, decline[1])
        return PaymentStart(PaymentOutcome.APPROVED)

    def expire_checkout(self, checkout_reference: str) -> CheckoutState:
        if chaos("complete_before_expire"):
            _complete_just_before_expiry(checkout_reference)
        SandboxCheckout.objects.filter(reference=checkout_reference, state=SandboxCheckout.State.OPEN).update(
            state=SandboxCheckout.State.EXPIRED
        )
        return CheckoutState(
            SandboxCheckout.objects.values_list("state", flat=True).get(reference=checkout_reference)
        )

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        verify(body, headers.get(SIGNATURE_HEADER))
        try:
            payload = json.loads(body)
            # What the inbox row cannot store must be refused here, not fail the insert with a 500:
            # PostgreSQL's jsonb has no NUL character, and the id and type columns have a length.
            if "\\u0000" in body.decode(errors="replace").lower():
                raise ValueError("NUL character in the body")
            if len(str(payload["id"])) > 100 or len(str(payload["type"])) > 64:
                raise ValueError("id or type too long")
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidWebhook(f"malformed event: {error!r}") from None
        return event_from_payload(payload)

    def refund(self, payment_reference: str, amount: Decimal, currency: str, *, idempotency_key: str) -> str:
        if chaos("fail_refunds"):
            raise GatewayError("Sandbox chaos: the refund failed.", refused=True)
        # The same key always names the same refund, as a real gateway's idempotency keys do.
        return "re_sbx_" + hashlib.sha256(f"{idempotency_key}:{payment_reference}".encode()).hexdigest()[:24]
