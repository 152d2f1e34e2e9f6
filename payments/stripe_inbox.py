"""Stripe's events, from the signed webhook to their effect, and the reconciler that closes any gap.

1. The webhook view has verified the signature and stored the event in the inbox (`payments.inbox`), which
   queued a task on commit; the view answered 2xx at once (spec C3 #28).
2. `process_stored_event` (the task's body for Stripe's events): matches the event to our request by
   `client_reference_id`/metadata without calling Stripe; then, outside any transaction, asks Stripe for the
   session's current state and hands that truth to `actions.record_received_gateway_event`. Duplicated,
   reordered or late events therefore repeat the truth, and one payment is counted once whichever message
   reported it (B4).
3. An event that names a request of ours that we cannot match yet (B5: it overtook the commit that attaches
   the session to the request) stays RECEIVED and is tried again with backoff, UNMATCHED_MAX_ATTEMPTS times
   in all; then it is UNMATCHED, flagged in the admin for a person. An event that can never be ours (the
   other mode, live vs test, or no request id) is UNMATCHED at once.
4. `reconcile`: the beat task. Requests whose pay deadline passed a while ago with a Stripe session are
   asked about once the session is final, so a lost webhook or a lost task cannot leave money unaccounted
   for (C3 #27); inbox rows stuck in RECEIVED (their drain was lost with the broker) or due for another
   matching attempt are drained again (`payments.inbox.has_stuck_events`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from . import actions
from .gateways import get_gateway
from .gateways.base import CheckoutState, EventKind, GatewayEvent
from .gateways.stripe import (
    DECLINE_EVENT,
    SESSION_EVENTS,
    decline_result,
    event_client_reference,
    event_matches_account,
)
from .lifecycle import Status
from .models import GatewayWebhookEvent, PaymentRequest

logger = logging.getLogger(__name__)

GATEWAY = "stripe"
Outcome = GatewayWebhookEvent.Outcome
RECONCILE_BATCH_SIZE = 100
# Unmatched events: tried this many times in all, waiting 1, 2, 4, 8, 16 minutes between tries (beat runs the
# reconciler every minute), so an event is flagged about half an hour after it arrived.
UNMATCHED_MAX_ATTEMPTS = 6
UNMATCHED_FIRST_RETRY = timedelta(minutes=1)
RETRYING = "retrying"  # no match yet: tried again later


def _matching_request(request_id: str, stripe_object: str, event_type: str) -> PaymentRequest | None:
    if not request_id.isdigit() or len(request_id) >= 19:
        return None
    payment_request = PaymentRequest.objects.filter(pk=int(request_id), gateway=GATEWAY).first()
    if payment_request is None:
        return None
    # A session event must name the session we opened for this request: ids of another environment sharing
    # the Stripe account (a staging database's request 42) are not ours.
    if event_type in SESSION_EVENTS and stripe_object != payment_request.gateway_reference:
        return None
    return payment_request


def process_stored_event(inbox: GatewayWebhookEvent) -> str:
    """Learn what a stored Stripe event means and apply it once (the task's body, via `payments.inbox`)."""
    if inbox.outcome != Outcome.RECEIVED:
        return actions.DUPLICATE
    event = inbox.payload
    request_id, stripe_object = event_client_reference(event)
    payment_request = (
        _matching_request(request_id, stripe_object, event["type"]) if event_matches_account(event) else None
    )
    if payment_request is None:
        may_match_later = event_matches_account(event) and request_id.isdigit() and len(request_id) < 19
        if may_match_later and inbox.attempts + 1 < UNMATCHED_MAX_ATTEMPTS:
            return _try_again_later(inbox)
        logger.warning(
            "Stripe event %s (%s) matches no payment request after %s attempt(s): flagged as unmatched",
            inbox.event_id,
            inbox.event_type,
            inbox.attempts + 1,
        )
        GatewayWebhookEvent.objects.filter(pk=inbox.pk, outcome=Outcome.RECEIVED).update(
            attempts=F("attempts") + 1, next_attempt_at=None
        )
        result = GatewayEvent(
            event_id=inbox.event_id, kind=EventKind.OTHER, type=inbox.event_type, client_reference=""
        )
    elif event["type"] in SESSION_EVENTS:
        # The session as Stripe has it now, not as this (possibly old, possibly reordered) event shows it.
        result = get_gateway(GATEWAY).checkout_result(
            payment_request.gateway_reference, event_id=inbox.event_id
        )
    elif event["type"] == DECLINE_EVENT:
        result = decline_result(event)
    else:
        result = GatewayEvent(
            event_id=inbox.event_id, kind=EventKind.OTHER, type=inbox.event_type, client_reference=request_id
        )
    return actions.record_received_gateway_event(inbox, result)


def _try_again_later(inbox: GatewayWebhookEvent) -> str:
    """Count a failed matching attempt and schedule the next one (the reconciler queues it when due)."""
    attempts = inbox.attempts + 1
    # Conditional on the count read: a duplicate run of the same task counts the attempt once.
    GatewayWebhookEvent.objects.filter(pk=inbox.pk, outcome=Outcome.RECEIVED, attempts=inbox.attempts).update(
        attempts=attempts,
        next_attempt_at=timezone.now() + UNMATCHED_FIRST_RETRY * 2 ** (attempts - 1),
    )
    logger.info("Stripe event %s matches no payment request yet (attempt %s)", inbox.event_id, attempts)
    return RETRYING


def settle_checkout(payment_request_id: int, *, why: str) -> str:
    """Ask Stripe about one request's checkout and apply the answer (reconciler, lost expire race).

    The answer is stored in the inbox under an id naming the session and its state, so asking twice about
    the same final state is a no-op; a payment already counted through a webhook is not counted again.
    """
    payment_request = PaymentRequest.objects.get(pk=payment_request_id)
    gateway = get_gateway(GATEWAY)
    result = gateway.checkout_result(payment_request.gateway_reference, event_id="")
    state = result.payload.get("status", "")
    if state == CheckoutState.OPEN:
        # Still taking money after our deadline (our expire call failed): close it now; if it completed in
        # the meantime, that is a payment and the next answer says so.
        state = gateway.expire_checkout(payment_request.gateway_reference)
        if state == CheckoutState.COMPLETE:
            result = gateway.checkout_result(payment_request.gateway_reference, event_id="")
    event_id = f"{why}:{payment_request.gateway_reference}:{state}"
    inbox, created = GatewayWebhookEvent.objects.get_or_create(
        gateway=GATEWAY,
        event_id=event_id,
        defaults={
            "event_type": f"chat2pay.{why}",
            "outcome": Outcome.RECEIVED,
            "payload": dict(result.payload),
            "payment_request": payment_request,
        },
    )
    if not created and inbox.outcome != Outcome.RECEIVED:
        return actions.DUPLICATE
    return actions.record_received_gateway_event(inbox, result)


def requests_to_reconcile(now=None):
    """Stripe requests whose pay deadline passed more than CHAT2PAY_RECONCILE_AFTER_SECONDS ago (and less than
    the lookback) and whose session's final state is not yet in the inbox."""
    now = now or timezone.now()
    after = timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS)
    settled = GatewayWebhookEvent.objects.filter(
        gateway=GATEWAY, event_type="chat2pay.reconcile", event_id__regex=r":(complete|expired)$"
    ).values("payment_request_id")
    return (
        PaymentRequest.objects.filter(
            gateway=GATEWAY,
            status__in=[Status.CLICKED, Status.EXPIRED],
            pay_deadline__lte=now - after,
            pay_deadline__gt=now - timedelta(hours=settings.CHAT2PAY_RECONCILE_LOOKBACK_HOURS),
        )
        .exclude(gateway_reference="")
        .exclude(pk__in=settled)
        .order_by("pay_deadline")
        .values_list("pk", flat=True)[:RECONCILE_BATCH_SIZE]
    )
