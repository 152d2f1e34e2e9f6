"""Celery tasks of the messaging outbox: thin, arguments are ids, each calls `outbox`."""

from __future__ import annotations

from celery import shared_task

from . import inbound, outbox


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def deliver_outbound_task(self, delivery_id: int) -> None:
    """One attempt at one outbox row; a temporary failure retries after the row's backoff. The row's own
    attempt count (MESSAGING_MAX_ATTEMPTS) ends the retries, and a duplicate or late run is a no-op."""
    delay = outbox.deliver(delivery_id)
    if delay is not None and not self.request.is_eager:
        raise self.retry(countdown=delay.total_seconds())


@shared_task
def deliver_due_outbound_task() -> int:
    """Beat: queue every due row (retries, and first attempts whose task was lost); returns how many."""
    ids = outbox.due_delivery_ids()
    for delivery_id in ids:
        deliver_outbound_task.delay(delivery_id)
    return len(ids)


@shared_task
def purge_processed_inbound_events_task() -> int:
    """Beat: forget provider events older than WEBHOOK_INBOX_RETENTION_DAYS; returns how many."""
    return inbound.purge_processed_events()
