"""Celery tasks of the integrations: thin, idempotent, arguments are ids (see `api.webhooks`)."""

from __future__ import annotations

from celery import shared_task

from . import idempotency, webhooks


@shared_task
def deliver_webhook_task(delivery_id: int) -> bool | None:
    """Attempt one webhook delivery if it is due; a duplicate or late task finds nothing to do."""
    return webhooks.attempt_delivery(delivery_id)


@shared_task
def deliver_due_webhooks_task() -> int:
    """Beat: queue every due delivery (retries, and first attempts whose task was lost)."""
    return webhooks.queue_due_deliveries()


@shared_task
def purge_idempotency_keys_task() -> int:
    """Beat: forget Idempotency-Keys older than API_IDEMPOTENCY_KEY_HOURS."""
    return idempotency.purge_expired_keys()
