"""Outbound webhooks: signing, delivering, retrying, and the endpoint's health. The only HTTP of `api/`.

Each delivery is attempted by `attempt_delivery` (a Celery task), in three steps so that no row lock is held
during the POST:

1. claim: lock the row (SKIP LOCKED), check it is pending and due, count the attempt, and push
   `next_attempt_at` forward by ATTEMPT_LEASE, so a duplicate task finds it not due and a worker that dies
   mid-POST leaves it due again by itself;
2. POST the event's stored body, signed, outside any transaction;
3. record: log the attempt, then mark it succeeded, or schedule the next attempt with exponential backoff
   until `retry_until` (three days by default), then failed. An endpoint that has failed every attempt for
   that long is disabled and the admins are told.

The beat sweep (`queue_due_deliveries`) queues tasks for due deliveries, so nothing depends on a task that a
broker lost or on in-memory retries.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, new_webhook_secret
from .outbox import QUEUE_LEASE

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Chatdesk-Signature"
EVENT_ID_HEADER = "Chatdesk-Event-Id"
USER_AGENT = "ChatDesk-Webhooks/1"
# Longer than the POST's timeout plus the task's time limit: a running attempt is never claimed twice.
ATTEMPT_LEASE = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=6)
SWEEP_BATCH_SIZE = 200
RESPONSE_LOG_CHARS = 2000
ROTATION_OVERLAP = timedelta(hours=24)


# --- Signatures ---------------------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>" with the secret, in hex."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signing_secrets(endpoint: WebhookEndpoint, now) -> list[str]:
    """The current secret, and during a rotation the previous one too (until it expires)."""
    expires_at = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires_at and expires_at > now:
        return [endpoint.secret, endpoint.previous_secret]
    return [endpoint.secret]


def signature_header(secrets: list[str], timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex>[,v1=<hex>]`: one v1 per secret, so receivers on either secret can verify."""
    return ",".join([f"t={timestamp}", *(f"v1={signature(secret, timestamp, body)}" for secret in secrets)])


def rotate_secret(endpoint_id: int, *, overlap: timedelta = ROTATION_OVERLAP) -> WebhookEndpoint:
    """Give the endpoint a new secret; the old one keeps signing for `overlap`, so receivers can switch."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = timezone.now() + overlap
        endpoint.secret = new_webhook_secret()
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint


# --- Delivering ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int | None  # None: no HTTP answer at all (refused, timed out, bad TLS...)
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a success: the endpoint must be registered at its real URL."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str]) -> Response:
    """POST `body`; never raises for network trouble (it is the endpoint's answer, logged and retried)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=settings.API_WEBHOOK_TIMEOUT_SECONDS) as answer:
            return Response(answer.status, answer.read(RESPONSE_LOG_CHARS).decode("utf-8", "replace"))
    except urllib.error.HTTPError as answer:
        return Response(answer.code, answer.read(RESPONSE_LOG_CHARS).decode("utf-8", "replace"))
    except (OSError, ValueError) as error:  # URLError, timeouts, refused connections, malformed URLs
        return Response(None, error=f"{type(error).__name__}: {error}"[:300])


def _claim(delivery_id: int) -> WebhookDelivery | None:
    now = timezone.now()
    with transaction.atomic():
        # SKIP LOCKED: a delivery another worker is claiming right now is theirs.
        delivery = (
            WebhookDelivery.objects.select_for_update(no_key=True, skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .filter(
                pk=delivery_id,
                state=WebhookDelivery.State.PENDING,
                next_attempt_at__lte=now,
                endpoint__is_enabled=True,
            )
            .first()
        )
        if delivery is None:  # done, not due (another worker holds its lease), or its endpoint is disabled
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + ATTEMPT_LEASE
        delivery.queued_until = None
        delivery.last_attempt_at = now
        delivery.save(update_fields=["attempts", "next_attempt_at", "queued_until", "last_attempt_at"])
    return delivery


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, 4 min ... doubling up to 6 hours, with up to 10 % jitter so retries spread out."""
    delay = min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_RETRY)
    return delay * (1 + random.random() / 10)  # noqa: S311 (jitter, not a secret)


def attempt_delivery(delivery_id: int) -> bool | None:
    """Attempt one delivery if it is due: True if the endpoint took it, False if not, None if not tried."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    body = delivery.event.body.encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: delivery.event.event_id,
        SIGNATURE_HEADER: signature_header(
            signing_secrets(delivery.endpoint, timezone.now()), timestamp, body
        ),
    }
    started = time.monotonic()
    response = post(delivery.endpoint.url, body, headers)
    _record(delivery, response, duration_ms=int((time.monotonic() - started) * 1000))
    return response.ok


def _record(delivery: WebhookDelivery, response: Response, *, duration_ms: int) -> None:
    now = timezone.now()
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=delivery.last_attempt_at,
            duration_ms=duration_ms,
            response_status=response.status,
            response_body=response.body,
            error=response.error,
        )
        # Only the attempt that holds the claim decides (an attempt that overran its lease does not).
        current = WebhookDelivery.objects.filter(
            pk=delivery.pk, state=WebhookDelivery.State.PENDING, attempts=delivery.attempts
        )
        outcome = {"last_response_status": response.status, "last_error": response.error}
        if response.ok:
            current.update(state=WebhookDelivery.State.SUCCEEDED, delivered_at=now, **outcome)
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, failing_since__isnull=False).update(
                failing_since=None
            )
            return
        gave_up = now >= delivery.retry_until
        if gave_up:
            current.update(state=WebhookDelivery.State.FAILED, **outcome)
        else:
            next_attempt_at = min(now + backoff(delivery.attempts), delivery.retry_until)
            current.update(next_attempt_at=next_attempt_at, **outcome)
        _note_failure(delivery, now, gave_up=gave_up)


def _note_failure(delivery: WebhookDelivery, now, *, gave_up: bool) -> None:
    """Disable an endpoint that failed every attempt for the whole retry period; tell the admins.

    That is: nothing succeeded there for the retry period, or a delivery just gave up and nothing succeeded
    there since that delivery's first attempt."""
    endpoint_id = delivery.endpoint_id
    WebhookEndpoint.objects.filter(pk=endpoint_id, failing_since__isnull=True).update(
        failing_since=delivery.last_attempt_at  # when the failed attempt started
    )
    failing_since_before = now - timedelta(hours=settings.API_WEBHOOK_RETRY_HOURS)
    if gave_up:
        first_attempt = delivery.attempt_log.order_by("attempted_at").first()
        failing_since_before = max(failing_since_before, first_attempt.attempted_at)
    reason = f"Every delivery failed for {settings.API_WEBHOOK_RETRY_HOURS} hours"
    disabled = WebhookEndpoint.objects.filter(
        pk=endpoint_id, is_enabled=True, failing_since__lte=failing_since_before
    ).update(is_enabled=False, disabled_at=now, disabled_reason=reason)
    if disabled:
        endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
        logger.error("Webhook endpoint %s (%s) disabled: %s", endpoint.pk, endpoint.url, reason)
        transaction.on_commit(
            lambda: mail_admins(
                f"Webhook endpoint disabled: {endpoint.url}",
                f"{reason}, so Chat Desk stopped sending to {endpoint.url}.\n"
                "Pending events are kept. Fix the receiver, then enable the endpoint in the admin "
                "(Integrations > Webhook endpoints > Enable) to deliver them.",
                fail_silently=True,
            )
        )


def queue_due_deliveries(*, batch_size: int = SWEEP_BATCH_SIZE) -> int:
    """Queue a delivery task for each due delivery that no queued task covers; returns how many.

    The rows are locked with SKIP LOCKED and marked queued in the same transaction, so overlapping sweeps
    share the work and never queue a delivery twice; a task the broker loses is requeued after QUEUE_LEASE.
    """
    from .tasks import deliver_webhook_task  # tasks import this module

    now = timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(no_key=True, skip_locked=True, of=("self",))
            .filter(state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now, endpoint__is_enabled=True)
            .filter(Q(queued_until__isnull=True) | Q(queued_until__lte=now))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        WebhookDelivery.objects.filter(pk__in=due).update(queued_until=now + QUEUE_LEASE)
        for delivery_id in due:
            deliver_webhook_task.delay_on_commit(delivery_id)
    return len(due)


def resend(delivery_ids: list[int]) -> int:
    """An admin's "resend": deliver again now (even if it succeeded before), with a fresh retry period."""
    from .tasks import deliver_webhook_task

    now = timezone.now()
    with transaction.atomic():
        count = WebhookDelivery.objects.filter(pk__in=delivery_ids).update(
            state=WebhookDelivery.State.PENDING,
            next_attempt_at=now,
            queued_until=now + QUEUE_LEASE,
            retry_until=now + timedelta(hours=settings.API_WEBHOOK_RETRY_HOURS),
        )
        for delivery_id in delivery_ids:
            deliver_webhook_task.delay_on_commit(delivery_id)
    return count


def enable_endpoint(endpoint_id: int) -> None:
    """Re-enable an endpoint (after its receiver was fixed); its pending deliveries go out at once."""
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(
        is_enabled=True, disabled_at=None, disabled_reason="", failing_since=None
    )
    now = timezone.now()
    WebhookDelivery.objects.filter(endpoint_id=endpoint_id, state=WebhookDelivery.State.PENDING).update(
        next_attempt_at=now, retry_until=now + timedelta(hours=settings.API_WEBHOOK_RETRY_HOURS)
    )
