"""/webhooks/sandbox/: signed like Stripe, verified before the body is read, stored, answered at once, and
applied exactly once by the inbox's drain."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from desk.models import Message
from payments import actions, inbox, tasks
from payments.gateways import sandbox
from payments.lifecycle import Status
from payments.models import GatewayWebhookEvent, PaymentException
from tests.payments.conftest import (
    deliver,
    outcome_of,
    post_webhook,
    queued_task_names,
    reload,
    sandbox_event,
    send,
)

pytestmark = pytest.mark.django_db


DRAIN_TASK = "payments.tasks.drain_webhook_inbox_task"


def clicked_request(agent, conversation):
    """A request the customer opened (so the pay window runs)."""
    payment_request = send(conversation, agent)
    actions.register_click(payment_request.pk)
    return reload(payment_request)


@pytest.fixture
def clicked(alice, alices_conversation):
    return clicked_request(alice, alices_conversation)


class TestSignatures:
    def test_a_good_signature_is_accepted_and_applied_by_its_task(self, clicked):
        body = sandbox_event(clicked)
        response = deliver(body)
        assert response.status_code == 200
        assert response.json() == {"received": True, "duplicate": False}
        assert outcome_of(body) == "applied"
        assert reload(clicked).status == Status.PAID

    def test_the_answer_does_not_wait_for_the_processing(self, client, clicked, monkeypatch):
        # Spec C3 #28: however slow applying an event is, the gateway gets its 2xx without waiting for it.
        def applied_in_the_request(*args, **kwargs):
            raise AssertionError("the event was applied inside the request")

        monkeypatch.setattr(actions, "record_received_gateway_event", applied_in_the_request)
        body = sandbox_event(clicked)
        with CaptureQueriesContext(connection) as queries:
            response = post_webhook(client, body)
        assert response.json() == {"received": True, "duplicate": False}
        assert [query["sql"] for query in queries if "payments_paymentrequest" in query["sql"]] == []
        assert outcome_of(body) == "received"
        assert reload(clicked).status == Status.CLICKED

    @pytest.mark.parametrize(
        "signature",
        [
            "",
            "garbage",
            "t=abc,v1=00",
            "v1=" + "0" * 64,
            f"t={int(time.time())}",
            f"t={int(time.time())},v1={'0' * 64}",
        ],
    )
    def test_a_missing_or_wrong_signature_is_400_and_changes_nothing(self, client, clicked, signature):
        response = post_webhook(client, sandbox_event(clicked), signature=signature)
        assert response.status_code == 400
        assert reload(clicked).status == Status.CLICKED
        assert not GatewayWebhookEvent.objects.exists()

    def test_a_tampered_body_is_400(self, client, clicked):
        body = sandbox_event(clicked)
        signature = sandbox.sign(body)
        response = post_webhook(
            client, body.replace(b'"payment.succeeded"', b'"payment.succeeded" '), signature=signature
        )
        assert response.status_code == 400
        assert reload(clicked).status == Status.CLICKED

    def test_a_body_signed_with_another_secret_is_400(self, client, clicked):
        body = sandbox_event(clicked)
        assert post_webhook(client, body, signature=sandbox.sign(body, secret="not-ours")).status_code == 400

    @pytest.mark.parametrize(("age", "accepted"), [(0, True), (299, True), (301, False), (-301, False)])
    def test_an_old_signature_is_a_replay(self, client, clicked, age, accepted):
        with time_machine.travel(timezone.now(), tick=False):  # the age is exact, however slow the machine
            body = sandbox_event(clicked)
            signature = sandbox.sign(body, timestamp=int(time.time()) - age)
            assert post_webhook(client, body, signature=signature).status_code == (200 if accepted else 400)

    def test_during_a_secret_rotation_both_secrets_verify(self, client, clicked, settings):
        settings.CHAT2PAY_SANDBOX_WEBHOOK_SECRETS = ["new-secret", "old-secret"]
        body = sandbox_event(clicked, kind="payment.failed", failure_message="Declined")
        assert (
            post_webhook(client, body, signature=sandbox.sign(body, secret="old-secret")).status_code == 200
        )
        body = sandbox_event(clicked)
        assert (
            post_webhook(client, body, signature=sandbox.sign(body, secret="new-secret")).status_code == 200
        )

    def test_a_signed_but_malformed_body_is_400(self, client):
        for body in (b"not json", b"{}", b'{"id": "e", "type": "payment.succeeded", "data": {}}'):
            assert post_webhook(client, body).status_code == 400

    @pytest.mark.parametrize(
        ("amount", "currency"),
        [("1e20", None), ("-1e15", None), ("NaN", None), ("Infinity", None), (None, "ZARX")],
    )
    def test_signed_money_the_records_cannot_hold_is_400_and_changes_nothing(
        self, client, clicked, amount, currency
    ):
        # Found by the long profile's webhook fuzzing: a validly signed event for 10^20 ZAR was a 500 (the
        # amount-mismatch exception's DECIMAL(18, 3) column overflowed).
        response = post_webhook(client, sandbox_event(clicked, amount=amount, currency=currency))
        assert response.status_code == 400
        assert reload(clicked).status == Status.CLICKED
        assert not GatewayWebhookEvent.objects.exists()
        assert not PaymentException.objects.exists()

    def test_the_endpoint_takes_only_posts_and_needs_no_csrf_token(self, clicked):
        from django.test import Client

        browser = Client(enforce_csrf_checks=True)
        assert browser.get("/webhooks/sandbox/").status_code == 405
        assert post_webhook(browser, sandbox_event(clicked)).status_code == 200


class TestExactlyOnce:
    def test_the_same_event_three_times_pays_once(self, clicked):
        body = sandbox_event(clicked, event_id="evt_same")
        answers = [deliver(body).json()["duplicate"] for _ in range(3)]
        assert answers == [False, True, True]
        assert outcome_of(body) == "applied"
        assert GatewayWebhookEvent.objects.count() == 1
        assert clicked.events.filter(to_status=Status.PAID).count() == 1
        assert Message.objects.filter(body__startswith="Payment received").count() == 1

    @pytest.mark.parametrize("order", list(itertools.permutations(["declined", "paid", "declined-again"])))
    def test_events_in_any_order_end_paid_and_never_go_back(self, clicked, order):
        bodies = {
            "declined": sandbox_event(
                clicked, kind="payment.failed", failure_message="Your card was declined."
            ),
            "paid": sandbox_event(clicked),
            "declined-again": sandbox_event(
                clicked, kind="payment.failed", failure_message="Insufficient funds."
            ),
        }
        for name in order:
            assert deliver(bodies[name]).status_code == 200
        after = reload(clicked)
        assert after.status == Status.PAID
        assert after.events.filter(to_status=Status.PAID).count() == 1
        assert Message.objects.filter(body__startswith="Payment received").count() == 1

    def test_an_event_for_an_unknown_request_is_stored_unmatched(self, clicked):
        body = sandbox_event(clicked).replace(
            f'"client_reference": "{clicked.pk}"'.encode(), b'"client_reference": "999999"'
        )
        assert deliver(body).status_code == 200
        assert outcome_of(body) == "unmatched"
        assert reload(clicked).status == Status.CLICKED

    def test_an_unknown_event_type_is_stored_and_ignored(self, clicked):
        body = sandbox_event(clicked, kind="charge.dispute.created")
        assert deliver(body).status_code == 200
        assert outcome_of(body) == "ignored"
        assert reload(clicked).status == Status.CLICKED

    def test_an_event_whose_task_was_lost_is_applied_by_the_reconciler(
        self, client, clicked, celery_eager, settings
    ):
        body = sandbox_event(clicked)
        post_webhook(client, body)  # stored; its task is never queued (a broker restart lost it)
        assert outcome_of(body) == "received"
        later = timezone.now() + timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS + 1)
        with time_machine.travel(later):
            tasks.reconcile_stripe_checkouts_task.apply()
        assert outcome_of(body) == "applied"
        assert reload(clicked).status == Status.PAID


class TestInboxDrain:
    """A burst of webhooks queues one drain; drains claim events, so none is applied twice or left behind."""

    def test_a_burst_queues_one_drain_and_a_started_drain_lets_the_next_event_queue_another(
        self, client, alice, alices_conversation, django_capture_on_commit_callbacks
    ):
        requests = [clicked_request(alice, alices_conversation) for _ in range(4)]
        with django_capture_on_commit_callbacks(execute=True):
            for payment_request in requests[:3]:
                post_webhook(client, sandbox_event(payment_request))
        assert queued_task_names() == [DRAIN_TASK]
        # A worker starts that drain: it applies the three
        assert inbox.drain() == 3
        # Then an event stored while a drain runs queues another, to run beside it
        with django_capture_on_commit_callbacks(execute=True):
            post_webhook(client, sandbox_event(requests[3]))
        assert queued_task_names() == [DRAIN_TASK, DRAIN_TASK]
        assert inbox.drain() == 1
        assert all(reload(payment_request).status == Status.PAID for payment_request in requests)

    def test_a_drain_that_finds_a_backlog_wakes_another_to_share_it(self, client, alice, alices_conversation):
        # Events stored while the worker was down: no drain queued for them yet
        for _ in range(inbox.CLAIM_BATCH_SIZE + 1):
            post_webhook(client, sandbox_event(clicked_request(alice, alices_conversation)))
        assert queued_task_names() == []
        assert inbox.drain() == inbox.CLAIM_BATCH_SIZE + 1
        # Its first batch was full, so it queued a drain for another worker process to join in
        assert queued_task_names() == [DRAIN_TASK]

    def test_a_drain_past_its_time_hands_the_rest_to_a_fresh_drain(self, client, alice, alices_conversation):
        bodies = [sandbox_event(clicked_request(alice, alices_conversation)) for _ in range(12)]
        for body in bodies:
            post_webhook(client, body)  # stored; no drain queued (nothing commits in this test)
        assert inbox.drain(seconds=0) == inbox.CLAIM_BATCH_SIZE
        assert queued_task_names() == [DRAIN_TASK]
        assert [outcome_of(body) for body in bodies].count("received") == 12 - inbox.CLAIM_BATCH_SIZE

    def test_events_a_dead_drain_claimed_are_drained_again_once_its_claim_runs_out(
        self, client, clicked, celery_eager
    ):
        body = sandbox_event(clicked)
        post_webhook(client, body)
        assert inbox._claim_batch()  # a drain claims the event, then its worker is killed
        assert inbox.drain() == 0  # other drains leave it alone while the claim holds
        claimed_until = GatewayWebhookEvent.objects.get().next_attempt_at
        with time_machine.travel(claimed_until - timedelta(seconds=1), tick=False):
            tasks.reconcile_stripe_checkouts_task.apply()
        assert outcome_of(body) == "received"
        with time_machine.travel(claimed_until + timedelta(seconds=1), tick=False):
            tasks.reconcile_stripe_checkouts_task.apply()
        assert outcome_of(body) == "applied"
        assert reload(clicked).status == Status.PAID

    def test_with_redis_down_the_gateway_gets_its_200_and_the_reconciler_drains_the_event(
        self, client, clicked, settings, celery_eager, django_capture_on_commit_callbacks
    ):
        body = sandbox_event(clicked)
        redis_up = settings.CACHES
        settings.CACHES = {"default": {**redis_up["default"], "LOCATION": "redis://127.0.0.1:9/0"}}  # refused
        with django_capture_on_commit_callbacks(execute=True):
            assert post_webhook(client, body).json() == {"received": True, "duplicate": False}
        assert outcome_of(body) == "received"
        settings.CACHES = redis_up
        later = timezone.now() + timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS + 1)
        with time_machine.travel(later):
            tasks.reconcile_stripe_checkouts_task.apply()
        assert outcome_of(body) == "applied"


class TestLateMoney:
    def test_money_for_a_canceled_request_is_recorded_and_flagged(self, client, alice, alices_conversation):
        payment_request = send(alices_conversation, alice)
        actions.cancel_payment_request(payment_request.pk, agent=alice)
        body = sandbox_event(payment_request)
        deliver(body)
        assert outcome_of(body) == "exception"
        assert reload(payment_request).status == Status.CANCELED
        exception = PaymentException.objects.get()
        assert (exception.kind, exception.resolution, exception.webhook_event.outcome) == (
            "late",
            "open",
            "exception",
        )
        page = client.get(f"/admin/payments/paymentexception/{exception.pk}/change/")
        assert page.status_code == 302  # only staff see the admin; supervisors see it in their desk

    def test_a_payment_started_in_time_but_confirmed_after_expiry_is_paid(self, clicked):
        started = clicked.pay_deadline - timedelta(seconds=2)
        with time_machine.travel(clicked.pay_deadline + timedelta(seconds=30)):
            actions.expire_due_payment_requests()
            assert reload(clicked).status == Status.EXPIRED
            body = sandbox_event(clicked, started_at=started)
            deliver(body)
        assert outcome_of(body) == "applied"
        assert reload(clicked).status == Status.PAID
        assert not PaymentException.objects.exists()

    def test_a_refund_resolves_late_money_once(self, alice, alices_conversation):
        from tests.factories import UserFactory

        admin = UserFactory(is_staff=True, is_superuser=True)
        payment_request = send(alices_conversation, alice)
        actions.cancel_payment_request(payment_request.pk, agent=alice)
        deliver(sandbox_event(payment_request))
        exception = PaymentException.objects.get()

        first = actions.refund_payment_exception(exception.pk, by=admin)
        second = actions.refund_payment_exception(exception.pk, by=admin)
        assert first.resolution == second.resolution == "refunded"
        assert first.refund_reference == second.refund_reference
        assert first.refund_reference.startswith("re_sbx_")
        assert payment_request.events.filter(reason="refunded").count() == 1
        assert (first.resolved_by, timezone.now() - first.resolved_at < timedelta(minutes=1)) == (admin, True)
