"""Celery tasks for Chat 2 Pay: thin, idempotent, arguments are ids; each one calls `actions` or a gateway.

The beat schedule (`CELERY_BEAT_SCHEDULE` in settings) runs the expiry sweep every
CHAT2PAY_SWEEP_INTERVAL_SECONDS. There are deliberately no per-request ETA tasks: a Redis broker can lose or
redeliver them, and the sweep alone is both sufficient and safe to run twice.
"""

from __future__ import annotations

import logging

from celery import shared_task

from . import actions
from .gateways import get_gateway
from .gateways.base import CheckoutState
from .gateways.sandbox import post_webhook
from .models import PaymentRequest

logger = logging.getLogger(__name__)


@shared_task
def expire_due_payment_requests_task() -> int:
    """Make every overdue request `expired` (and push it); a duplicate or overlapping run is harmless."""
    return actions.expire_due_payment_requests()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max=300, max_retries=10)
def expire_gateway_checkout_task(payment_request_id: int) -> str:
    """Close an expired request's checkout at the gateway, so it takes no more money."""
    payment_request = PaymentRequest.objects.get(pk=payment_request_id)
    state = get_gateway(payment_request.gateway).expire_checkout(payment_request.gateway_reference)
    if state == CheckoutState.COMPLETE:
        # Paid just before the deadline: the gateway's webhook turns the request `paid` (B3), not this task.
        logger.info("Checkout of payment request %s completed before it expired", payment_request_id)
    return state


@shared_task(autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max=300, max_retries=10)
def deliver_sandbox_webhook_task(url: str, body: str) -> None:
    """The sandbox gateway's webhook delivery, retried with backoff like a real gateway's."""
    post_webhook(url, body)
