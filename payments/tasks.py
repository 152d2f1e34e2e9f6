"""Celery tasks for Chat 2 Pay: thin, idempotent, arguments are ids; each one calls `actions` or a gateway.

The beat schedule (`CELERY_BEAT_SCHEDULE` in settings) runs the expiry sweep every
CHAT2PAY_SWEEP_INTERVAL_SECONDS. There are deliberately no per-request ETA tasks: a Redis broker can lose or
redeliver them, and the sweep alone is both sufficient and safe to run twice.
"""

from __future__ import annotations

import logging

from celery import shared_task

from . import actions, inbox, stripe_inbox
from .gateways import get_gateway
from .gateways.base import CheckoutState, GatewayError
from .gateways.sandbox import post_webhook
from .models import PaymentRequest

logger = logging.getLogger(__name__)


@shared_task
def expire_due_payment_requests_task() -> int:
    """Make every overdue request `expired` (and push it); a duplicate or overlapping run is harmless."""
    return actions.expire_due_payment_requests()


@shared_task(autoretry_for=(OSError, GatewayError), retry_backoff=True, retry_backoff_max=300, max_retries=10)
def expire_gateway_checkout_task(payment_request_id: int) -> str:
    """Close an expired request's checkout at the gateway, so it takes no more money."""
    payment_request = PaymentRequest.objects.get(pk=payment_request_id)
    state = get_gateway(payment_request.gateway).expire_checkout(payment_request.gateway_reference)
    if state == CheckoutState.COMPLETE:
        # Paid just before the deadline: that is a payment, never an expiry (B3). The sandbox's webhook
        # reports it; for Stripe we ask for the session now rather than wait for (or miss) the webhook.
        logger.info("Checkout of payment request %s completed before it expired", payment_request_id)
        if payment_request.gateway == stripe_inbox.GATEWAY:
            stripe_inbox.settle_checkout(payment_request_id, why="expire")
    return state


@shared_task(bind=True, autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max=300, max_retries=10)
def deliver_sandbox_webhook_task(self, url: str, body: str, drop_first: bool = False) -> None:
    """The sandbox gateway's webhook delivery, retried with backoff like a real gateway's."""
    if drop_first and self.request.retries == 0:
        raise OSError("sandbox chaos: the first delivery attempt was dropped")
    post_webhook(url, body)


# A drain re-reads each inbox row and skips one already applied, so a redelivery (acks_late, a lost worker) is
# harmless; an event it could not apply stays claimed until the reconciler wakes another drain for it.
@shared_task(acks_late=True, reject_on_worker_lost=True)
def drain_webhook_inbox_task() -> int:
    """Apply the stored gateway webhook events waiting in the inbox (Stripe's after asking Stripe for the
    session's state); queued once per burst by the webhooks (`inbox.wake_drain`). Returns how many."""
    return inbox.drain()


@shared_task
def purge_processed_webhook_events_task() -> int:
    """Beat: forget gateway events processed more than WEBHOOK_INBOX_RETENTION_DAYS ago; returns how many."""
    return actions.purge_processed_webhook_events()


@shared_task
def reconcile_stripe_checkouts_task() -> int:
    """Ask Stripe about requests past their pay deadline whose final state we have not seen; wake a drain for
    stored events of any gateway that no drain is taking. Returns how many requests were asked about."""
    if inbox.has_stuck_events():
        drain_webhook_inbox_task.delay()
    asked = 0
    for payment_request_id in stripe_inbox.requests_to_reconcile():
        try:
            stripe_inbox.settle_checkout(payment_request_id, why="reconcile")
        except GatewayError as error:  # Stripe unreachable: the next run asks again
            logger.warning("Could not reconcile payment request %s: %s", payment_request_id, error)
        asked += 1
    return asked
