"""Chat 2 Pay test helpers: sending through the real action, reading the customer's link, signed webhooks."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.test import Client, TestCase
from django.utils import timezone

from payments import actions
from payments.gateways import sandbox
from payments.gateways.base import GatewayEvent
from payments.lifecycle import Status
from payments.models import GatewayWebhookEvent, PaymentRequest, hash_token
from tests.conftest import eager_celery
from tests.factories import PaymentRequestFactory

SITE = "http://testserver/"


def send(conversation, agent, **overrides) -> PaymentRequest:
    """Send a request through the real action, with sensible defaults."""
    fields = {
        "phone": conversation.customer.phone,
        "amount": Decimal("120.50"),
        "currency": "ZAR",
        "order_number": f"A-{secrets.token_hex(3)}",
        "description": "",
        "idempotency_key": uuid.uuid4().hex,
        "site_url": SITE,
        **overrides,
    }
    return actions.send_payment_request(conversation.pk, agent=agent, **fields)


def token_of(payment_request: PaymentRequest) -> str:
    """The token as the customer has it: in the link message (only its hash is stored)."""
    return re.search(r"/pay/([\w-]+)/", payment_request.message.body)[1]


def make_request(status: str = Status.SENT, *, token: str | None = None, **fields) -> PaymentRequest:
    """A request laid down in `status` with consistent timestamps (deadlines in the future unless given)."""
    now = timezone.now()
    defaults: dict = {"sent_at": now, "click_deadline": now + timedelta(minutes=5), "status": status}
    if status in {Status.CLICKED, Status.PAID} or fields.get("clicked_at"):
        defaults |= {"clicked_at": now, "pay_deadline": now + timedelta(minutes=15)}
    if status not in {Status.SENT, Status.CLICKED}:
        defaults["closed_at"] = now
    if token:
        defaults["token_hash"] = hash_token(token)
    return PaymentRequestFactory(**(defaults | fields))


def reload(payment_request: PaymentRequest) -> PaymentRequest:
    return PaymentRequest.objects.get(pk=payment_request.pk)


def sandbox_event(
    payment_request: PaymentRequest,
    *,
    kind: str = "payment.succeeded",
    event_id: str | None = None,
    amount: str | None = None,
    currency: str | None = None,
    started_at: datetime | None = None,
    failure_message: str = "",
) -> bytes:
    """A sandbox webhook body as the sandbox gateway would send it for this request."""
    event = {
        "id": event_id or f"evt_sbx_{secrets.token_hex(12)}",
        "type": kind,
        "created": int(timezone.now().timestamp()),
        "data": {
            "checkout": payment_request.gateway_reference or "cs_sbx_test",
            "client_reference": str(payment_request.pk),
            "payment": f"pay_sbx_{secrets.token_hex(6)}",
            "amount": amount or str(payment_request.amount.quantize(Decimal("0.01"))),
            "currency": currency or payment_request.currency,
            "started_at": (started_at or timezone.now()).isoformat(),
            "card": {"brand": "visa", "last4": "4242"},
            "failure_code": "card_declined" if failure_message else "",
            "failure_message": failure_message,
        },
    }
    return json.dumps(event).encode()


def post_webhook(client: Client, body: bytes, *, signature: str | None = None):
    return client.post(
        "/webhooks/sandbox/",
        data=body,
        content_type="application/json",
        headers={sandbox.SIGNATURE_HEADER: signature if signature is not None else sandbox.sign(body)},
    )


@contextmanager
def tasks_run_inline():
    """Tasks queued on commit inside the block run at its end, in-process, as a worker would run them."""
    with eager_celery(), TestCase.captureOnCommitCallbacks(execute=True):
        yield


def deliver(body: bytes):
    """Post a signed body to /webhooks/sandbox/ and run the task it queued, as the gateway and a worker do."""
    with tasks_run_inline():
        return post_webhook(Client(), body)


def queued_task_names() -> list[str]:
    """The tasks waiting in the broker (the tests' own Redis db), as a worker would receive them."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(message)["headers"]["task"] for message in broker.lrange("celery", 0, -1)]


def outcome_of(body: bytes) -> str:
    """What became of the event in a webhook body: its inbox row's outcome (`received` until its task ran)."""
    return GatewayWebhookEvent.objects.get(gateway="sandbox", event_id=json.loads(body)["id"]).outcome


def apply_gateway_event(event: GatewayEvent) -> str:
    """Store a verified sandbox event as the webhook view does and apply it as its task does, without HTTP or
    Celery; its outcome, or DUPLICATE if it was already stored."""
    try:
        with transaction.atomic():
            stored = GatewayWebhookEvent.objects.create(
                gateway="sandbox",
                event_id=event.event_id,
                event_type=event.type,
                outcome=GatewayWebhookEvent.Outcome.RECEIVED,
                payload=event.payload,
            )
    except IntegrityError:
        return actions.DUPLICATE
    return actions.record_received_gateway_event(stored, event)


@pytest.fixture
def alices_request(alices_conversation, alice) -> PaymentRequest:
    """A request alice just sent in her open conversation, through the real action."""
    return send(alices_conversation, alice)


@pytest.fixture
def sandbox_webhooks_inline(monkeypatch, celery_eager) -> list[int]:
    """The sandbox's webhook task runs at once and posts through Django's test client instead of the network.

    The body is still signed by the sandbox and posted to /webhooks/sandbox/, so results take the real path.
    Returns the status codes the webhook endpoint answered.
    """
    answered: list[int] = []

    def post(url: str, body: str) -> None:
        response = post_webhook(Client(), body.encode())
        answered.append(response.status_code)

    monkeypatch.setattr("payments.tasks.post_webhook", post)
    return answered
