"""Stripe Checkout behind `base.Gateway`, with the official `stripe` library.

1. On the customer's click `create_checkout` opens a Checkout Session (cards and wallets only, our request
   id in `client_reference_id` and metadata, an idempotency key derived from our id), so a retried click or
   a timed-out call returns the same session, never a second one (spec C3 #29).
2. The pay page's button records the attempt and redirects the customer to the session's hosted page.
3. Stripe cannot expire a session sooner than 30 minutes, so at our pay deadline `expire_checkout` expires
   it itself (idempotency key); a session that is already complete is a payment, never an expiry (B3, C1
   #4).
4. `/webhooks/stripe/` (`payments.stripe_views`) verifies `Stripe-Signature` with the library against
   every configured secret (rotation), stores the event in the inbox and answers at once; a Celery task then
   asks Stripe for the session's current state (`session_result`) and applies it, so duplicated and
   reordered events can only ever repeat the truth (B4).

Amounts go to Stripe in minor units of the ISO 4217 exponent (`lifecycle.MINOR_UNITS`). Every HTTP call
happens outside database transactions; `settings.STRIPE_API_BASE` is where the library sends them."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urljoin

import stripe
from django import forms
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from payments import lifecycle
from payments.models import PaymentRequest

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

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Stripe-Signature"
# Stripe refuses a Checkout Session that would expire sooner than this; our own deadline is enforced by us.
MINIMUM_SESSION_LIFETIME = timedelta(minutes=30, seconds=60)
# Session events whose data object is a Checkout Session: all answered by re-reading the session (the truth).
SESSION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.expired",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
    }
)
DECLINE_EVENT = "payment_intent.payment_failed"


def client() -> stripe.StripeClient:
    """A client for the configured account; retries network failures with the same idempotency key."""
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )


def webhook_secrets() -> list[str]:
    """Every secret a webhook may be signed with: during a rotation both the new and the old one."""
    return [secret for secret in settings.STRIPE_WEBHOOK_SECRET if secret]


def minor_units(amount: Decimal, currency: str) -> int:
    """ZAR 120.50 -> 12050, JPY 1500 -> 1500, KWD 3.125 -> 3125."""
    return int(lifecycle.quantize(amount, currency).scaleb(lifecycle.MINOR_UNITS[currency]))


def major_units(amount: int, currency: str) -> Decimal:
    currency = currency.upper()
    return lifecycle.quantize(Decimal(amount).scaleb(-lifecycle.MINOR_UNITS[currency]), currency)


def _time(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(int(unix), tz=UTC)


def verify(body: bytes, header: str | None) -> dict:
    """Verify `Stripe-Signature` over the raw bytes with the library (any configured secret, 300 s tolerance)
    and only then read the body; returns the event as a dict or raises InvalidWebhook."""
    secrets = webhook_secrets()
    if not secrets:
        raise InvalidWebhook("no webhook secret configured")
    # The library refuses only timestamps older than the tolerance: also refuse one from the future (a
    # post-dated signature would replay for as long as it is post-dated) and headers with several `t=`.
    timestamps = [part[2:] for part in (header or "").split(",") if part.strip().startswith("t=")]
    if len(timestamps) != 1 or not timestamps[0].strip().isdigit():
        raise InvalidWebhook("signature: malformed timestamp")
    if int(timestamps[0]) - time.time() > settings.CHAT2PAY_WEBHOOK_TOLERANCE_SECONDS:
        raise InvalidWebhook("signature: timestamp in the future")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                body, header, secret, tolerance=settings.CHAT2PAY_WEBHOOK_TOLERANCE_SECONDS
            )
            break
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as error:
            last_error = error
    else:
        raise InvalidWebhook(f"signature: {last_error}")
    try:
        event = stripe.Webhook.construct_event_without_verification(body.decode()).to_dict()
        if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
            raise ValueError("no id or type")
        if not isinstance(event.get("data", {}).get("object"), dict):
            raise ValueError("no data.object")
        # The inbox row cannot store these (jsonb has no NUL; the id column has a length): refuse, not 500.
        if len(event["id"]) > 100 or "\\u0000" in body.decode().lower():
            raise ValueError("id too long or NUL character in the body")
    except (ValueError, AttributeError, TypeError, KeyError) as error:
        raise InvalidWebhook(f"malformed event: {error!r}") from None
    return event


def _refused(error: stripe.StripeError) -> bool:
    """Whether Stripe answered with a refusal it keeps under the idempotency key (see GatewayError).

    No answer (a connection error or timeout, `http_status` None), a conflict with a concurrent request
    using the same key (409) and rate limiting (429) are not kept: the same key must be used again."""
    return error.http_status is not None and error.http_status not in {409, 429}


def _is_live_key() -> bool:
    return settings.STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))


def event_matches_account(event: Mapping) -> bool:
    """A test-mode event reaching a live deployment (or the reverse) is someone else's: never applied."""
    return bool(event.get("livemode", False)) == _is_live_key()


def event_client_reference(event: Mapping) -> tuple[str, str]:
    """(our request id, the Stripe object that names it) from a stored event, without calling Stripe."""
    data = event["data"]["object"]
    metadata = data.get("metadata") or {}
    if event["type"] in SESSION_EVENTS:
        return str(data.get("client_reference_id") or metadata.get("payment_request_id") or ""), str(
            data.get("id", "")
        )
    return str(metadata.get("payment_request_id") or ""), str(metadata.get("checkout_session") or "")


def session_result(session: Mapping, *, event_id: str) -> GatewayEvent:
    """What a Checkout Session (retrieved with `payment_intent` expanded) says, in the domain's words.

    Paid means status `complete` and payment_status `paid`; its time is when the customer submitted the
    payment
    (the PaymentIntent's creation, on Stripe's clock), which `lifecycle.payment_started_in_time` judges.
    """
    intent = session.get("payment_intent") or {}
    if isinstance(intent, str):
        intent = {"id": intent}
    paid = session.get("status") == "complete" and session.get("payment_status") == "paid"
    currency = str(session.get("currency") or "").upper()
    amount = session.get("amount_total")
    return GatewayEvent(
        event_id=event_id,
        kind=EventKind.PAYMENT_SUCCEEDED if paid else EventKind.OTHER,
        type=f"checkout.session.{session.get('status')}",
        client_reference=str(session.get("client_reference_id") or ""),
        payment_reference=str(intent.get("id") or session.get("id") or ""),
        amount=major_units(amount, currency)
        if currency in lifecycle.MINOR_UNITS and amount is not None
        else None,
        currency=currency,
        started_at=_time(intent.get("created")) or _time(session.get("created")),
        payload={"session": session.get("id"), "status": session.get("status")},
    )


def decline_result(event: Mapping) -> GatewayEvent:
    """`payment_intent.payment_failed`: the customer may retry within the window; the agent sees why."""
    intent = event["data"]["object"]
    error = intent.get("last_payment_error") or {}
    card = ((error.get("payment_method") or {}).get("card")) or {}
    return GatewayEvent(
        event_id=str(event["id"]),
        kind=EventKind.PAYMENT_FAILED,
        type=str(event["type"]),
        client_reference=str((intent.get("metadata") or {}).get("payment_request_id") or ""),
        payment_reference=str(intent.get("id", "")),
        failure_message=str(error.get("message") or "The payment was declined.")[:200],
        card={key: str(card[key]) for key in ("brand", "last4") if key in card},
        payload={"event": event["id"]},
    )


class RedirectForm(forms.Form):
    """Stripe's hosted page takes the card: our page has only the button that leads there."""

    def summary(self) -> dict[str, str]:
        return {"type": "stripe_checkout"}


class StripeGateway:
    name = "stripe"
    checkout_template = "payments/gateways/stripe_redirect.html"

    def create_checkout(self, payment_request: PaymentRequest) -> Checkout:
        session = self._create_session(payment_request)
        return Checkout(reference=session.id)

    def _create_session(self, payment_request: PaymentRequest):
        # Stripe needs absolute URLs; the system check requires CHAT2PAY_PUBLIC_BASE_URL with this gateway.
        return_url = urljoin(settings.CHAT2PAY_PUBLIC_BASE_URL, reverse("payments:stripe_return"))
        metadata = {
            "payment_request_id": str(payment_request.pk),
            "order_number": payment_request.order_number,
        }
        # Stripe's own floor; our pay deadline is earlier and is enforced by our expire call.
        expires_at = max(payment_request.pay_deadline or timezone.now(), timezone.now()) + (
            MINIMUM_SESSION_LIFETIME
        )
        params = {
            "mode": "payment",
            # Cards and wallets (Apple Pay, Google Pay ride on `card`): no delayed methods whose money could
            # arrive days after the window (spec C1 #8).
            "payment_method_types": ["card"],
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": payment_request.currency.lower(),
                        "unit_amount": minor_units(payment_request.amount, payment_request.currency),
                        "product_data": {
                            "name": f"Order {payment_request.order_number}",
                            **(
                                {"description": payment_request.description}
                                if payment_request.description
                                else {}
                            ),
                        },
                    },
                }
            ],
            "client_reference_id": str(payment_request.pk),
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "expires_at": int(expires_at.timestamp()),
            "success_url": return_url + "?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": return_url,
        }
        # One key per request while Stripe has not refused it: a retried click or a timed-out call returns the
        # same session (C3 #29). Stripe keeps a refusal (5xx included) under its key, so after one the key
        # moves on (`checkout_refusals`) and the customer's next click can succeed.
        key = f"chat2pay-request-{payment_request.pk}-checkout"
        if payment_request.checkout_refusals:
            key += f"-{payment_request.checkout_refusals + 1}"
        try:
            return client().v1.checkout.sessions.create(params, options={"idempotency_key": key})
        except stripe.StripeError as error:
            raise GatewayError(
                f"Stripe could not open a checkout: {error.user_message or error}", refused=_refused(error)
            ) from error

    def payment_form(self, data: Mapping | None = None) -> RedirectForm:
        return RedirectForm(data)

    def start_payment(self, checkout_reference: str, form: forms.Form, *, site_url: str) -> PaymentStart:
        """Hand the customer to Stripe's hosted page for their session (retrieved, so always its own URL)."""
        try:
            session = self.retrieve(checkout_reference)
        except GatewayError:
            return PaymentStart(PaymentOutcome.DECLINED, "The payment page could not be reached. Try again.")
        if session.get("status") != "open" or not session.get("url"):
            return PaymentStart(PaymentOutcome.CLOSED, "This checkout is closed.")
        return PaymentStart(PaymentOutcome.APPROVED, redirect_url=session["url"])

    def retrieve(self, checkout_reference: str) -> dict:
        """The session as Stripe has it now, with its PaymentIntent expanded (raises GatewayError)."""
        try:
            session = client().v1.checkout.sessions.retrieve(
                checkout_reference, {"expand": ["payment_intent"]}
            )
        except stripe.StripeError as error:
            raise GatewayError(f"Stripe could not read checkout {checkout_reference}: {error}") from error
        return session.to_dict()

    def expire_checkout(self, checkout_reference: str) -> CheckoutState:
        """Expire the session at our deadline. Stripe refuses to expire a session that is not open; then its
        current state is the answer (COMPLETE: the customer paid first, so this was never an expiry)."""
        try:
            session = (
                client()
                .v1.checkout.sessions.expire(
                    checkout_reference,
                    options={"idempotency_key": f"chat2pay-checkout-{checkout_reference}-expire"},
                )
                .to_dict()
            )
        except stripe.InvalidRequestError:
            session = self.retrieve(checkout_reference)
        except stripe.StripeError as error:
            raise GatewayError(f"Stripe could not expire checkout {checkout_reference}: {error}") from error
        return CheckoutState(session.get("status", "open"))

    def checkout_result(self, checkout_reference: str, *, event_id: str) -> GatewayEvent:
        """Ask Stripe for the truth about one checkout (reconciler, expire-loses-race, every webhook)."""
        return session_result(self.retrieve(checkout_reference), event_id=event_id)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Verified events are stored and processed later (`payments.stripe_inbox`), never inline."""
        raise NotImplementedError("Stripe webhooks go through payments.stripe_views")

    def refund(self, payment_reference: str, amount: Decimal, currency: str, *, idempotency_key: str) -> str:
        """Refund money that did not become a payment; the key makes a retried call refund once."""
        try:
            refund = client().v1.refunds.create(
                {
                    "payment_intent": payment_reference,
                    "amount": minor_units(amount, currency),
                    "reason": "requested_by_customer",
                    "metadata": {"chat2pay": idempotency_key},
                },
                options={"idempotency_key": f"chat2pay-{idempotency_key}-refund"},
            )
        except stripe.StripeError as error:
            raise GatewayError(
                f"Stripe refused the refund: {error.user_message or error}", refused=_refused(error)
            ) from error
        if refund.status in {"failed", "canceled"}:
            raise GatewayError(f"Stripe refund {refund.id} {refund.status}", refused=True)
        return refund.id
