"""Outbound webhooks against a real HTTP receiver on loopback: the outbox, signatures, retries with backoff,
a receiver that is down, endpoint health and the admin's resend."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import time_machine
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import timezone

from api import webhooks
from api.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from payments import actions
from tests.api.conftest import Receiver, endpoint_for
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import deliver, outcome_of, sandbox_event, send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_eager")]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def docs_verifier():
    """The verification snippet from docs/api.md, exactly as integrators copy it."""
    snippet = re.search(r"```python\n(# verify_chatdesk_signature.*?)```", DOCS.read_text(), re.DOTALL)[1]
    namespace: dict = {}
    exec(snippet, namespace)  # noqa: S102 (our own documentation)
    return namespace["verify_chatdesk_signature"]


@pytest.fixture
def alice():
    return AgentFactory(username="alice", first_name="Alice", last_name="Agent")


@pytest.fixture
def conversation(alice):
    return ConversationFactory(status="open", assigned_agent=alice)


def run_retries_until_settled(max_rounds: int = 60) -> None:
    """Let time pass to each next due attempt and run the beat sweep, until nothing is pending."""
    for _ in range(max_rounds):
        pending = WebhookDelivery.objects.filter(
            state=WebhookDelivery.State.PENDING, endpoint__is_enabled=True
        )
        due_at = min(pending.values_list("next_attempt_at", flat=True), default=None)
        if due_at is None:
            return
        with time_machine.travel(max(due_at, timezone.now()), tick=False):
            webhooks.queue_due_deliveries()
    raise AssertionError("deliveries still pending")


def live_a_whole_life(conversation, alice):
    """sent → clicked → paid, then a second payment for the paid request (a late-money exception)."""
    payment_request = send(conversation, alice)
    actions.register_click(payment_request.pk)
    for outcome in ("applied", "exception"):
        body = sandbox_event(payment_request)
        deliver(body)
        assert outcome_of(body) == outcome
    return payment_request


def test_a_receiver_failing_the_first_attempts_gets_every_event_exactly_once_signed(
    conversation, alice, receiver
):
    receiver.fail_first = 2
    receiver.start()
    endpoint = endpoint_for(receiver)
    verify = docs_verifier()

    payment_request = live_a_whole_life(conversation, alice)
    run_retries_until_settled()

    # Retries may arrive out of order (jittered backoff); the version orders them.
    accepted = sorted(receiver.accepted(), key=lambda event: event["data"]["object"]["version"])
    assert [event["type"] for event in accepted] == [
        "payment_request.sent",
        "payment_request.clicked",
        "payment_request.paid",
        "payment_request.payment_exception",
    ]
    assert len({event["id"] for event in accepted}) == 4
    assert [event["data"]["object"]["version"] for event in accepted] == [1, 2, 3, 4]
    assert {event["data"]["object"]["id"] for event in accepted} == {payment_request.pk}
    assert accepted[3]["data"]["history_entry"]["reason"] == "duplicate_payment"
    assert len(receiver.received) == 12  # each event: 500, 500, then 200
    for headers, body, _ in receiver.received:
        assert verify(body, headers["Chatdesk-Signature"], endpoint.secret)
        assert not verify(body, headers["Chatdesk-Signature"], "whsec_someone-else")
        assert headers["Chatdesk-Event-Id"] == json.loads(body)["id"]
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("succeeded", 3)}
    assert WebhookAttempt.objects.filter(response_status=500).count() == 8


def test_the_payload_carries_id_type_time_and_the_request_as_the_api_shows_it(conversation, alice, receiver):
    from api import keys
    from tests.api.conftest import ApiClient

    receiver.start()
    endpoint_for(receiver, "payment_request.canceled")
    payment_request = send(conversation, alice)
    actions.cancel_payment_request(payment_request.pk, agent=alice)

    (event,) = receiver.accepted()
    api_object = (
        ApiClient(keys.create_api_key(name="r", scope="read")[1])
        .get(f"/api/v1/payment-requests/{payment_request.pk}")
        .json()
    )
    assert event["id"].startswith("evt_")
    assert event["object"] == "event"
    assert event["type"] == "payment_request.canceled"
    assert event["api_version"] == "v1"
    assert isinstance(event["created"], int)
    assert event["created_at"]
    api_object.pop("history")
    assert event["data"]["object"] == api_object


def test_a_receiver_down_for_the_whole_test_leaves_deliveries_pending_then_gets_them(conversation, alice):
    receiver = Receiver()  # not started: nothing listens on its port
    endpoint_for(receiver)
    payment_request = send(conversation, alice)
    actions.cancel_payment_request(payment_request.pk, agent=alice)
    for _ in range(3):  # several retries, all refused
        due_at = max(WebhookDelivery.objects.values_list("next_attempt_at", flat=True))
        with time_machine.travel(due_at, tick=False):
            webhooks.queue_due_deliveries()

    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"pending"}
    assert all(attempt.response_status is None and attempt.error for attempt in WebhookAttempt.objects.all())
    assert WebhookAttempt.objects.count() == 8

    receiver.start()
    try:
        run_retries_until_settled()
    finally:
        receiver.stop()

    assert sorted(event["type"] for event in receiver.accepted()) == [
        "payment_request.canceled",
        "payment_request.sent",
    ]
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"succeeded"}


def test_an_endpoint_failing_for_three_days_gives_up_is_disabled_and_admins_are_told(
    conversation, alice, settings
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    receiver = Receiver()  # never answers
    endpoint = endpoint_for(receiver, "payment_request.sent")
    send(conversation, alice)

    run_retries_until_settled(max_rounds=40)

    delivery = WebhookDelivery.objects.get()
    endpoint.refresh_from_db()
    assert delivery.state == "failed"
    assert 10 < delivery.attempts < 30
    assert delivery.last_attempt_at - delivery.created_at >= timezone.timedelta(hours=71)
    assert not endpoint.is_enabled
    assert endpoint.disabled_reason
    assert len(mail.outbox) == 1
    assert "disabled" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["ops@example.com"]
    # A disabled endpoint is sent nothing new.
    send(conversation, alice)
    assert WebhookDelivery.objects.filter(state="pending").count() == 0


def test_events_rolled_back_with_their_change_are_never_sent(conversation, alice, receiver):
    receiver.start()
    endpoint_for(receiver)

    def send_then_fail():
        with transaction.atomic():
            send(conversation, alice)
            raise RuntimeError("the caller's transaction fails after the send")

    with pytest.raises(RuntimeError):
        send_then_fail()

    assert not WebhookEvent.objects.exists()
    assert receiver.received == []


def test_an_endpoint_gets_only_the_event_types_it_asked_for(conversation, alice, receiver):
    receiver.start()
    endpoint_for(receiver, "payment_request.canceled")
    WebhookEndpoint.objects.create(url=receiver.url, event_types=["payment_request.sent"], is_enabled=False)

    payment_request = send(conversation, alice)
    actions.register_click(payment_request.pk)

    assert receiver.received == []
    assert not WebhookEvent.objects.exists()


def test_a_duplicate_task_does_not_post_twice(conversation, alice, receiver):
    receiver.start()
    endpoint_for(receiver, "payment_request.sent")
    send(conversation, alice)
    delivery = WebhookDelivery.objects.get()

    assert webhooks.attempt_delivery(delivery.pk) is None
    assert webhooks.queue_due_deliveries() == 0
    assert len(receiver.received) == 1


def test_during_a_rotation_both_secrets_sign(conversation, alice, receiver):
    receiver.start()
    endpoint = endpoint_for(receiver, "payment_request.sent")
    old_secret = endpoint.secret
    endpoint = webhooks.rotate_secret(endpoint.pk)
    verify = docs_verifier()

    send(conversation, alice)

    ((headers, body, _),) = receiver.received
    assert headers["Chatdesk-Signature"].count("v1=") == 2
    assert verify(body, headers["Chatdesk-Signature"], old_secret)
    assert verify(body, headers["Chatdesk-Signature"], endpoint.secret)


def test_an_admin_sees_the_attempts_and_resends_a_delivery(conversation, alice, receiver):
    from django.contrib.auth import get_user_model

    receiver.start()
    endpoint_for(receiver, "payment_request.sent")
    send(conversation, alice)
    delivery = WebhookDelivery.objects.get()
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "x"))

    page = admin.get(f"/admin/api/webhookdelivery/{delivery.pk}/change/").content.decode()
    admin.post("/admin/api/webhookdelivery/", {"action": "resend", "_selected_action": [delivery.pk]})

    assert "200" in page
    assert "ok" in page
    assert len(receiver.received) == 2
    assert receiver.received[0][1] == receiver.received[1][1]  # the same event, byte for byte
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 2
    assert admin.get("/admin/api/webhookendpoint/").status_code == 200
    assert admin.get("/admin/api/webhookevent/").status_code == 200


def test_the_docs_snippet_verifies_exactly_what_the_product_signs(conversation, alice, receiver):
    """The snippet against the product's own signing function and a real event body, not only a receiver."""
    import time

    receiver.start()
    endpoint = endpoint_for(receiver, "payment_request.sent")
    send(conversation, alice)
    body = WebhookEvent.objects.get().body.encode()
    verify = docs_verifier()
    now = int(time.time())
    other = "whsec_other"

    assert verify(body, webhooks.signature_header([endpoint.secret], now, body), endpoint.secret)
    assert verify(body, webhooks.signature_header([other, endpoint.secret], now, body), endpoint.secret)
    assert not verify(body, webhooks.signature_header([other], now, body), endpoint.secret)
    assert not verify(body + b" ", webhooks.signature_header([endpoint.secret], now, body), endpoint.secret)
    assert not verify(body, webhooks.signature_header([endpoint.secret], now - 301, body), endpoint.secret)
    assert not verify(body, f"t={now}", endpoint.secret)
    assert not verify(body, "garbage", endpoint.secret)
    ((headers, delivered, _),) = receiver.received
    assert delivered == body
    assert verify(delivered, headers["Chatdesk-Signature"], endpoint.secret)


def test_the_expiry_sweep_reads_the_endpoints_once_per_batch_not_per_request(alice, receiver, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.payments.conftest import make_request

    receiver.start()
    endpoint_for(receiver, "payment_request.expired")
    WebhookEndpoint.objects.create(url=receiver.url, event_types=["payment_request.sent"])
    rows = [make_request(agent=alice) for _ in range(6)]

    with time_machine.travel(max(row.click_deadline for row in rows), tick=False):
        with CaptureQueriesContext(connection) as queries:
            assert actions.expire_due_payment_requests() == 6

    selects = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("SELECT")]
    assert sum('FROM "api_webhookendpoint"' in sql for sql in selects) == 1
    assert sum('FROM "desk_customer"' in sql for sql in selects) <= 1
    assert WebhookDelivery.objects.count() == 6
    assert sorted(event["type"] for event in receiver.accepted()) == ["payment_request.expired"] * 6


def test_failed_late_money_and_its_refund_are_delivered_too(conversation, alice, receiver):
    from payments.models import PaymentException
    from tests.factories import UserFactory

    receiver.start()
    endpoint_for(receiver)
    failed = send(conversation, alice)
    actions.mark_failed(failed.pk, reason="The number is not on WhatsApp.")
    canceled = send(conversation, alice)
    actions.cancel_payment_request(canceled.pk, agent=alice)
    late_money = sandbox_event(canceled)
    deliver(late_money)
    assert outcome_of(late_money) == "exception"
    actions.refund_payment_exception(PaymentException.objects.get().pk, by=UserFactory(is_staff=True))

    def types_of(payment_request):
        events = [
            event for event in receiver.accepted() if event["data"]["object"]["id"] == payment_request.pk
        ]
        return [
            event["type"] for event in sorted(events, key=lambda event: event["data"]["object"]["version"])
        ]

    assert types_of(failed) == ["payment_request.sent", "payment_request.failed"]
    assert types_of(canceled) == [
        "payment_request.sent",
        "payment_request.canceled",
        "payment_request.payment_exception",
        "payment_request.exception_refunded",
    ]
    late = next(event for event in receiver.accepted() if event["type"].endswith("payment_exception"))
    assert late["data"]["history_entry"]["reason"] == "late_payment"
