"""Stripe Checkout: the real `stripe` library against a local stand-in of Stripe's API, and signed webhooks
made with the library's own signing helper. Every scenario of the spec that concerns a gateway (C1 #3, #4,
#9; C3 #22-#31) ends with each request in the state the spec demands and every payment accounted for."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import stripe
import time_machine
from django.core import checks
from django.db import connection
from django.utils import timezone

from payments import actions, inbox, lifecycle, stripe_inbox, tasks
from payments.apps import check_gateway_configuration
from payments.gateways.base import GatewayError
from payments.lifecycle import Reason, Status
from payments.models import GatewayWebhookEvent, PaymentEvent, PaymentException, PaymentRequest
from tests.payments.conftest import make_request, post_webhook, reload, sandbox_event, send, token_of
from tests.payments.stripe_standin import StripeStandIn

pytestmark = pytest.mark.django_db

NEW_SECRET, OLD_SECRET = "whsec_new_0123456789", "whsec_old_0123456789"


@pytest.fixture
def stripe_api(settings, celery_eager):
    stand_in = StripeStandIn().start()
    settings.CHAT2PAY_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = "sk_test_chatdesk"
    settings.STRIPE_WEBHOOK_SECRET = [NEW_SECRET, OLD_SECRET]
    settings.STRIPE_API_BASE = stand_in.url
    settings.CHAT2PAY_PUBLIC_BASE_URL = "https://desk.example.com/"
    yield stand_in
    stand_in.stop()


def post_signed(
    client, event: dict | bytes, *, secret: str = NEW_SECRET, timestamp: int | None = None, header=None
):
    """Post an event to /webhooks/stripe/, signed by the library's helper. Nothing commits inside a test, so
    no drain runs for it unless the caller runs the commit hooks (`deliver`)."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    if header is None:
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)
    return client.post(
        "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """Post a signed event to /webhooks/stripe/; its task runs after commit."""

    def post(event: dict | bytes, **signing):
        with django_capture_on_commit_callbacks(execute=True):
            return post_signed(client, event, **signing)

    return post


@pytest.fixture
def checkout(client, alice, alices_conversation, stripe_api):
    """A request whose customer opened the link and pressed Pay: they are on Stripe's page now."""
    payment_request = send(alices_conversation, alice)
    token = token_of(payment_request)
    assert client.post(f"/pay/{token}/open/").status_code == 200
    response = client.post(f"/pay/{token}/payment/", HTTP_HX_REQUEST="true")
    payment_request = reload(payment_request)
    assert response.headers["HX-Redirect"] == stripe_api.sessions[payment_request.gateway_reference]["url"]
    return payment_request


def completed_checkout_event(stripe_api: StripeStandIn, checkout: PaymentRequest) -> bytes:
    """The customer pays: Stripe's `checkout.session.completed` for the request's checkout, as sent."""
    return json.dumps(
        stripe_api.event("checkout.session.completed", stripe_api.complete(checkout.gateway_reference))
    ).encode()


def money_accounted_for(stand_in: StripeStandIn) -> None:
    """Every succeeded PaymentIntent is counted exactly once: as the request's payment or as an exception."""
    for intent_id in stand_in.intents:
        paid = PaymentEvent.objects.filter(reason=Reason.PAID, details__payment=intent_id).count()
        flagged = PaymentException.objects.filter(gateway_reference=intent_id).count()
        assert paid + flagged == 1, intent_id
    for payment_request in PaymentRequest.objects.filter(status=Status.PAID):
        assert payment_request.events.filter(reason=Reason.PAID).count() == 1


def run_matching_attempts_until_settled() -> None:
    """Play beat's reconciler at each due retry of the events that matched no request yet."""
    for _ in range(stripe_inbox.UNMATCHED_MAX_ATTEMPTS + 1):
        due = GatewayWebhookEvent.objects.filter(outcome="received").order_by("next_attempt_at").first()
        if due is None:
            return
        with time_machine.travel(due.next_attempt_at + timedelta(seconds=1), tick=False):
            tasks.reconcile_stripe_checkouts_task.apply()
    raise AssertionError("events still unsettled after every attempt")


class TestCheckoutSession:
    def test_the_click_opens_one_session_with_our_ids_and_cards_only(self, checkout, stripe_api):
        (call,) = stripe_api.calls("POST", "/v1/checkout/sessions")
        _, _, params, headers = call
        assert params["client_reference_id"] == str(checkout.pk)
        assert params["metadata"] == {
            "payment_request_id": str(checkout.pk),
            "order_number": checkout.order_number,
        }
        assert params["payment_intent_data"]["metadata"]["order_number"] == checkout.order_number
        assert params["payment_method_types"] == {"0": "card"}
        assert params["line_items"]["0"]["price_data"] | {"product_data": None} == {
            "currency": "zar",
            "unit_amount": "12050",
            "product_data": None,
        }
        assert headers["idempotency-key"] == f"chat2pay-request-{checkout.pk}-checkout"
        assert checkout.gateway == "stripe"

    def test_a_retried_create_returns_the_same_session(self, checkout, stripe_api):
        from payments.gateways import get_gateway

        again = get_gateway("stripe").create_checkout(checkout)
        assert again.reference == checkout.gateway_reference
        assert len(stripe_api.sessions) == 1

    def test_a_stripe_error_shows_a_friendly_page_and_the_next_click_opens_the_session(
        self, client, alice, alices_conversation, stripe_api, caplog
    ):
        # Given Stripe answers the session creation with a 500, which it keeps under the idempotency key
        payment_request = send(alices_conversation, alice)
        token = token_of(payment_request)
        stripe_api.fail_session_creates = 1
        # When the customer's page registers the click
        with caplog.at_level(logging.WARNING):
            response = client.post(f"/pay/{token}/open/")
        # Then they read that the payment could not start, nothing is attached, and the log has no token
        assert response.status_code == 200
        assert lifecycle.CHECKOUT_UNAVAILABLE_TEXT in response.content.decode()
        assert "Try again" in response.content.decode()
        payment_request = reload(payment_request)
        assert (payment_request.status, payment_request.gateway_reference) == (Status.CLICKED, "")
        assert not stripe_api.sessions
        assert f"payment request {payment_request.pk}" in caplog.text
        assert token not in caplog.text
        # When they press "Try again": a new key (the old one would replay the 500), and one session
        response = client.post(f"/pay/{token}/open/")
        payment_request = reload(payment_request)
        assert list(stripe_api.sessions) == [payment_request.gateway_reference]
        assert "Opening the secure payment form" not in response.content.decode()
        keys = [call[3]["idempotency-key"] for call in stripe_api.calls("POST", "/v1/checkout/sessions")]
        assert keys == [
            f"chat2pay-request-{payment_request.pk}-checkout",
            f"chat2pay-request-{payment_request.pk}-checkout-2",
        ]

    def test_a_lost_answer_is_retried_with_the_same_key_and_opens_one_session(
        self, client, alice, alices_conversation, stripe_api
    ):
        # Given Stripe creates the session but the answer is lost, for the library's own retries too
        payment_request = send(alices_conversation, alice)
        token = token_of(payment_request)
        stripe_api.drop_session_responses = 3
        response = client.post(f"/pay/{token}/open/")
        assert lifecycle.CHECKOUT_UNAVAILABLE_TEXT in response.content.decode()
        assert reload(payment_request).gateway_reference == ""
        (created,) = stripe_api.sessions  # it did happen at Stripe
        # When the customer tries again: the same key returns that session, never a second one
        client.post(f"/pay/{token}/open/")
        assert reload(payment_request).gateway_reference == created
        assert len(stripe_api.sessions) == 1
        keys = {call[3]["idempotency-key"] for call in stripe_api.calls("POST", "/v1/checkout/sessions")}
        assert keys == {f"chat2pay-request-{payment_request.pk}-checkout"}

    def test_the_pay_button_is_refused_after_the_deadline(self, client, checkout, stripe_api):
        with time_machine.travel(checkout.pay_deadline, tick=False):
            response = client.post(f"/pay/{token_of(checkout)}/payment/", HTTP_HX_REQUEST="true")
        assert "HX-Redirect" not in response.headers
        assert reload(checkout).payment_attempts == 1


class TestScenarios:
    def test_complete(self, checkout, stripe_api, deliver):
        session = stripe_api.complete(checkout.gateway_reference)
        response = deliver(stripe_api.event("checkout.session.completed", session))
        assert response.status_code == 200
        checkout = reload(checkout)
        assert checkout.status == Status.PAID
        assert GatewayWebhookEvent.objects.get().outcome == GatewayWebhookEvent.Outcome.APPLIED
        money_accounted_for(stripe_api)

    def test_expired(self, checkout, stripe_api, deliver, django_capture_on_commit_callbacks):
        # Our deadline: the sweep expires the request and we expire the session ourselves (Stripe's minimum
        # lifetime is 30 minutes), with an idempotency key.
        with time_machine.travel(checkout.pay_deadline, tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                tasks.expire_due_payment_requests_task.apply()
            (call,) = stripe_api.calls("POST", f"/v1/checkout/sessions/{checkout.gateway_reference}/expire")
            assert call[3]["idempotency-key"] == f"chat2pay-checkout-{checkout.gateway_reference}-expire"
            assert stripe_api.sessions[checkout.gateway_reference]["status"] == "expired"
            response = deliver(
                stripe_api.event("checkout.session.expired", stripe_api.sessions[checkout.gateway_reference])
            )
        assert response.status_code == 200
        assert reload(checkout).status == Status.EXPIRED
        assert not PaymentException.objects.exists()
        money_accounted_for(stripe_api)

    def test_duplicate_three_times(self, checkout, stripe_api, deliver):
        event = stripe_api.event(
            "checkout.session.completed", stripe_api.complete(checkout.gateway_reference)
        )
        answers = [deliver(event) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        assert [answer.json()["duplicate"] for answer in answers] == [False, True, True]
        assert reload(checkout).status == Status.PAID
        assert GatewayWebhookEvent.objects.count() == 1
        money_accounted_for(stripe_api)

    def test_the_same_payment_in_another_event_is_counted_once(self, checkout, stripe_api, deliver):
        session = stripe_api.complete(checkout.gateway_reference)
        deliver(stripe_api.event("checkout.session.completed", session))
        deliver(stripe_api.event("checkout.session.async_payment_succeeded", session))
        assert reload(checkout).status == Status.PAID
        assert not PaymentException.objects.exists()
        money_accounted_for(stripe_api)

    @pytest.mark.parametrize("decline_last", [True, False])
    def test_reordered(self, checkout, stripe_api, deliver, decline_last):
        # The customer's first card was declined, the second paid; the events arrive in either order.
        declined = stripe_api.event(
            "payment_intent.payment_failed", stripe_api.decline(checkout.gateway_reference)
        )
        completed = stripe_api.event(
            "checkout.session.completed", stripe_api.complete(checkout.gateway_reference)
        )
        for event in [completed, declined] if decline_last else [declined, completed]:
            assert deliver(event).status_code == 200
        checkout = reload(checkout)
        assert checkout.status == Status.PAID  # never downgraded
        money_accounted_for(stripe_api)

    def test_a_stale_snapshot_cannot_undo_a_payment(self, checkout, stripe_api, deliver):
        # An event whose snapshot still shows the session open arrives after the payment: we ask Stripe.
        stale = stripe_api.event("checkout.session.expired", stripe_api.sessions[checkout.gateway_reference])
        stripe_api.complete(checkout.gateway_reference)
        deliver(stale)
        assert reload(checkout).status == Status.PAID
        money_accounted_for(stripe_api)

    def test_a_decline_shows_the_agent_why_and_the_customer_may_retry(self, checkout, stripe_api, deliver):
        deliver(
            stripe_api.event("payment_intent.payment_failed", stripe_api.decline(checkout.gateway_reference))
        )
        checkout = reload(checkout)
        assert checkout.status == Status.CLICKED
        assert checkout.last_decline == "Your card was declined."

    def test_late_after_the_deadline_is_late_money_and_refundable(
        self, checkout, stripe_api, deliver, sam, django_capture_on_commit_callbacks
    ):
        # Our expire call never got through (Stripe unreachable), and the customer paid after our deadline.
        late = checkout.pay_deadline + timedelta(seconds=90)
        with time_machine.travel(late + timedelta(seconds=5), tick=False):
            actions.expire_due_payment_requests()  # its on-commit expire call is lost
            session = stripe_api.complete(checkout.gateway_reference, at=late.timestamp())
            assert deliver(stripe_api.event("checkout.session.completed", session)).status_code == 200
        checkout = reload(checkout)
        assert checkout.status == Status.EXPIRED  # never silently paid
        exception = PaymentException.objects.get()
        assert (exception.kind, exception.amount) == (PaymentException.Kind.LATE, Decimal("120.50"))
        money_accounted_for(stripe_api)

        refunded = actions.refund_payment_exception(exception.pk, by=sam)

        assert refunded.resolution == PaymentException.Resolution.REFUNDED
        (refund,) = stripe_api.refunds.values()
        assert (refund["payment_intent"], refund["amount"]) == (session["payment_intent"], 12050)
        assert refunded.refund_reference == refund["id"]

    def test_a_refused_refund_stays_open_and_its_retry_sends_a_new_key(
        self, checkout, stripe_api, deliver, sam
    ):
        with time_machine.travel(checkout.pay_deadline + timedelta(seconds=60), tick=False):
            actions.expire_due_payment_requests()
            session = stripe_api.complete(checkout.gateway_reference)
            deliver(stripe_api.event("checkout.session.completed", session))
        exception = PaymentException.objects.get()
        # Given Stripe refuses the refund (and keeps that answer under the attempt's key)
        stripe_api.fail_refunds = True
        with pytest.raises(GatewayError):
            actions.refund_payment_exception(exception.pk, by=sam)
        exception.refresh_from_db()
        assert exception.resolution == PaymentException.Resolution.OPEN  # still visible, never "refunded"
        assert (exception.refund_refusals, exception.last_refund_error) == (
            1,
            "Stripe refused the refund: Refund failed.",
        )
        assert not stripe_api.refunds
        # When the supervisor retries once Stripe would accept it: a new key, so not the replayed refusal
        stripe_api.fail_refunds = False
        refunded = actions.refund_payment_exception(exception.pk, by=sam)
        assert refunded.resolution == PaymentException.Resolution.REFUNDED
        (refund,) = stripe_api.refunds.values()
        assert refunded.refund_reference == refund["id"]
        keys = [call[3]["idempotency-key"] for call in stripe_api.calls("POST", "/v1/refunds")]
        assert keys == [
            f"chat2pay-payment-exception-{exception.pk}-refund",
            f"chat2pay-payment-exception-{exception.pk}-attempt-2-refund",
        ]
        money_accounted_for(stripe_api)

    def test_a_refund_retried_after_a_lost_answer_refunds_once(self, checkout, stripe_api):
        from payments.gateways import get_gateway

        session = stripe_api.complete(checkout.gateway_reference)
        gateway = get_gateway("stripe")
        first = gateway.refund(
            session["payment_intent"], Decimal("120.50"), "ZAR", idempotency_key="exception-1"
        )
        again = gateway.refund(
            session["payment_intent"], Decimal("120.50"), "ZAR", idempotency_key="exception-1"
        )
        assert first == again
        assert len(stripe_api.refunds) == 1

    def test_unknown_session(self, checkout, stripe_api, deliver):
        foreign = {
            "id": "cs_test_someone_else",
            "object": "checkout.session",
            "client_reference_id": "987654",
            "status": "complete",
            "payment_status": "paid",
            "amount_total": 5000,
            "currency": "usd",
            "metadata": {},
        }
        ours_elsewhere = {**foreign, "client_reference_id": str(checkout.pk)}  # a staging desk's request
        for obj in (foreign, ours_elsewhere):
            assert deliver(stripe_api.event("checkout.session.completed", obj)).status_code == 200
        # It may have overtaken our own commit: tried again with backoff, then flagged, never a crash.
        assert set(GatewayWebhookEvent.objects.values_list("outcome", "attempts")) == {("received", 1)}
        run_matching_attempts_until_settled()
        flagged = GatewayWebhookEvent.objects.filter(event_type="checkout.session.completed")
        assert set(flagged.values_list("outcome", "attempts", "next_attempt_at")) == {
            ("unmatched", stripe_inbox.UNMATCHED_MAX_ATTEMPTS, None)
        }
        assert not stripe_api.calls("GET", "/v1/checkout/sessions/cs_test_someone_else")
        # A later reconciler run leaves the flagged events alone.
        with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
            tasks.reconcile_stripe_checkouts_task.apply()
        assert set(flagged.values_list("outcome", "attempts")) == {
            ("unmatched", stripe_inbox.UNMATCHED_MAX_ATTEMPTS)
        }
        assert not PaymentException.objects.exists()
        assert not checkout.events.filter(actor_kind="gateway").exists()  # nothing from the foreign events

    def test_an_event_that_overtakes_our_commit_is_applied_when_the_request_catches_up(
        self, client, alice, alices_conversation, stripe_api, deliver
    ):
        # Given the customer clicked, Stripe opened the session and the customer paid on it, but the commit
        # that attaches the session to our request has not happened yet
        payment_request = send(alices_conversation, alice)
        payment_request = actions.register_click(payment_request.pk).payment_request
        from payments.gateways import get_gateway

        session_id = get_gateway("stripe").create_checkout(payment_request).reference
        session = stripe_api.complete(session_id)
        # When Stripe's event arrives first
        assert deliver(stripe_api.event("checkout.session.completed", session)).status_code == 200
        inbox = GatewayWebhookEvent.objects.get()
        assert (inbox.outcome, inbox.attempts) == ("received", 1)
        assert reload(payment_request).status == Status.CLICKED
        # Then once our row has it (the same idempotency key returns the same session), a retry applies it
        actions.open_checkout(reload(payment_request))
        assert reload(payment_request).gateway_reference == session_id
        run_matching_attempts_until_settled()
        assert GatewayWebhookEvent.objects.get().outcome == "applied"
        assert reload(payment_request).status == Status.PAID
        money_accounted_for(stripe_api)

    def test_an_event_from_live_mode_is_not_ours(self, checkout, stripe_api, deliver):
        session = stripe_api.complete(checkout.gateway_reference)
        deliver(stripe_api.event("checkout.session.completed", session, livemode=True))
        assert GatewayWebhookEvent.objects.get().outcome == "unmatched"
        assert reload(checkout).status == Status.CLICKED

    def test_amount_mismatch_is_flagged_not_paid(self, checkout, stripe_api, deliver):
        session = stripe_api.complete(checkout.gateway_reference, amount=100)
        deliver(stripe_api.event("checkout.session.completed", session))
        checkout = reload(checkout)
        assert checkout.status == Status.CLICKED
        assert PaymentException.objects.get().kind == PaymentException.Kind.AMOUNT_MISMATCH
        assert checkout.events.filter(reason=Reason.AMOUNT_MISMATCH).exists()
        money_accounted_for(stripe_api)

    def test_expire_loses_the_race(self, checkout, stripe_api, deliver, django_capture_on_commit_callbacks):
        # The customer paid a second before the deadline; the webhook is still on its way when we expire.
        session = stripe_api.complete(
            checkout.gateway_reference, at=(checkout.pay_deadline - timedelta(seconds=1)).timestamp()
        )
        with time_machine.travel(checkout.pay_deadline, tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                tasks.expire_due_payment_requests_task.apply()
        checkout = reload(checkout)
        assert checkout.status == Status.PAID  # "already complete" is a payment, never an expiry
        assert list(checkout.events.values_list("to_status", flat=True)) == [
            "sent",
            "clicked",
            "clicked",
            "expired",
            "paid",
        ]
        # The webhook arrives afterwards: the same payment, not a second one.
        deliver(stripe_api.event("checkout.session.completed", session))
        assert reload(checkout).status == Status.PAID
        assert not PaymentException.objects.exists()
        money_accounted_for(stripe_api)


@pytest.mark.django_db(transaction=True)
def test_a_double_clicked_refund_refunds_once(stripe_api, sam):
    # Given late money, and a refund that takes Stripe a moment
    payment_request = make_request(Status.EXPIRED, gateway="stripe", currency="ZAR")
    stripe_api.intents["pi_late"] = {"id": "pi_late", "amount": 12050, "currency": "zar"}
    exception = PaymentException.objects.create(
        payment_request=payment_request,
        kind=PaymentException.Kind.LATE,
        amount=Decimal("120.50"),
        currency="ZAR",
        gateway="stripe",
        gateway_reference="pi_late",
    )
    stripe_api.refund_delay = 0.5
    resolutions = []

    def first_click() -> None:
        try:
            resolutions.append(actions.refund_payment_exception(exception.pk, by=sam).resolution)
        finally:
            connection.close()

    # When the supervisor clicks again while the first click's refund is still at Stripe
    thread = threading.Thread(target=first_click)
    thread.start()
    for _ in range(100):
        if stripe_api.calls("POST", "/v1/refunds"):
            break
        time.sleep(0.05)
    resolutions.append(actions.refund_payment_exception(exception.pk, by=sam).resolution)
    thread.join()
    # Then both clicks sent the same attempt's key, and the money went back once
    assert resolutions == ["refunded", "refunded"]
    assert len(stripe_api.refunds) == 1
    keys = {call[3]["idempotency-key"] for call in stripe_api.calls("POST", "/v1/refunds")}
    assert keys == {f"chat2pay-payment-exception-{exception.pk}-refund"}
    assert payment_request.events.filter(reason=Reason.REFUNDED).count() == 1


class TestReconciler:
    def test_a_lost_webhook_is_found_by_asking_stripe(self, checkout, stripe_api, settings):
        stripe_api.complete(
            checkout.gateway_reference, at=(checkout.pay_deadline - timedelta(seconds=5)).timestamp()
        )
        later = checkout.pay_deadline + timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS + 1)
        with time_machine.travel(later, tick=False):
            actions.expire_due_payment_requests()  # no webhook, and the expire call's task was lost too
            assert tasks.reconcile_stripe_checkouts_task.apply().get() == 1
            assert (
                tasks.reconcile_stripe_checkouts_task.apply().get() == 0
            )  # final state seen: not asked again
        assert reload(checkout).status == Status.PAID
        money_accounted_for(stripe_api)

    def test_a_session_still_open_past_our_deadline_is_expired(self, checkout, stripe_api, settings):
        later = checkout.pay_deadline + timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS + 1)
        with time_machine.travel(later, tick=False):
            actions.expire_due_payment_requests()
            tasks.reconcile_stripe_checkouts_task.apply()
        assert stripe_api.sessions[checkout.gateway_reference]["status"] == "expired"
        assert reload(checkout).status == Status.EXPIRED

    def test_a_stored_event_whose_task_was_lost_is_processed(self, checkout, stripe_api, client, settings):
        post_signed(client, completed_checkout_event(stripe_api, checkout))  # stored, not drained
        assert GatewayWebhookEvent.objects.get().outcome == "received"  # its task never ran
        with time_machine.travel(
            timezone.now() + timedelta(seconds=settings.CHAT2PAY_RECONCILE_AFTER_SECONDS + 1)
        ):
            tasks.reconcile_stripe_checkouts_task.apply()
        assert reload(checkout).status == Status.PAID

    def test_an_event_stripe_cannot_be_asked_about_waits_and_the_drain_goes_on(
        self, checkout, stripe_api, client, settings, alice, alices_conversation
    ):
        # Given a completed checkout's event and, after it, a sandbox gateway's payment, both stored
        post_signed(client, completed_checkout_event(stripe_api, checkout))
        sandbox_request = make_request(Status.CLICKED, agent=alice, conversation=alices_conversation)
        assert post_webhook(client, sandbox_event(sandbox_request)).status_code == 200
        # When a drain runs while Stripe cannot be reached
        settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # the discard port: refused
        assert inbox.drain() == 2
        # Then the Stripe event waits, and the one after it was applied all the same
        assert reload(sandbox_request).status == Status.PAID
        assert reload(checkout).status == Status.CLICKED
        assert GatewayWebhookEvent.objects.get(gateway="stripe").outcome == "received"
        # And once Stripe answers again and the claim ran out, the reconciler's drain applies it
        settings.STRIPE_API_BASE = stripe_api.url
        claim_ran_out = timezone.now() + timedelta(seconds=2 * settings.CELERY_TASK_TIME_LIMIT + 1)
        with time_machine.travel(claim_ran_out):
            tasks.reconcile_stripe_checkouts_task.apply()
        assert reload(checkout).status == Status.PAID


class TestWebhookSignatures:
    def test_either_secret_verifies_during_a_rotation(self, checkout, stripe_api, deliver):
        assert deliver(completed_checkout_event(stripe_api, checkout), secret=OLD_SECRET).status_code == 200
        assert reload(checkout).status == Status.PAID

    @pytest.mark.parametrize(
        "header",
        ["", "garbage", "t=abc,v1=00", f"t={int(time.time())}", f"t={int(time.time())},v1={'0' * 64}"],
    )
    def test_an_invalid_signature_is_400_and_changes_nothing(self, checkout, stripe_api, deliver, header):
        response = deliver(completed_checkout_event(stripe_api, checkout), header=header or " ")
        assert response.status_code == 400
        assert not GatewayWebhookEvent.objects.exists()
        assert reload(checkout).status == Status.CLICKED

    def test_another_accounts_secret_is_400(self, checkout, stripe_api, deliver):
        response = deliver(completed_checkout_event(stripe_api, checkout), secret="whsec_not_ours")
        assert response.status_code == 400

    def test_a_tampered_body_is_400(self, checkout, stripe_api, deliver):
        body = completed_checkout_event(stripe_api, checkout)
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), NEW_SECRET)
        assert deliver(body.replace(b'"paid"', b'"paid" '), header=header).status_code == 400

    @pytest.mark.parametrize(("age", "accepted"), [(0, True), (299, True), (301, False)])
    def test_a_replay_outside_the_tolerance_is_400(self, checkout, stripe_api, deliver, age, accepted):
        body = completed_checkout_event(stripe_api, checkout)
        response = deliver(body, timestamp=int(time.time()) - age)
        assert response.status_code == (200 if accepted else 400)
        # Within the tolerance a replay is a duplicate: answered, changes nothing.
        if accepted:
            assert deliver(body).json()["duplicate"] is True

    @pytest.mark.parametrize(
        "body", [b"not json", b"[]", b'{"id": "evt_1"}', b'{"id": 1, "type": "x", "data": {}}']
    )
    def test_a_malformed_body_with_a_good_signature_is_400(self, stripe_api, deliver, body):
        assert deliver(body).status_code == 400
        assert not GatewayWebhookEvent.objects.exists()

    def test_get_is_not_allowed(self, client, stripe_api):
        assert client.get("/webhooks/stripe/").status_code == 405


class TestSystemChecks:
    @pytest.mark.parametrize(
        ("overrides", "ids"),
        [
            ({"DEBUG": False, "CHAT2PAY_GATEWAY": "sandbox"}, ["payments.E003"]),
            ({"DEBUG": False, "CHAT2PAY_GATEWAY": "sandbox", "CHAT2PAY_ALLOW_SANDBOX": True}, []),
            ({"DEBUG": True, "CHAT2PAY_GATEWAY": "sandbox"}, []),
            ({"CHAT2PAY_GATEWAY": "stripe", "STRIPE_SECRET_KEY": ""}, ["payments.E004"]),
            ({"CHAT2PAY_GATEWAY": "stripe", "STRIPE_WEBHOOK_SECRET": []}, ["payments.E004"]),
            ({"CHAT2PAY_GATEWAY": "stripe"}, []),
            ({"CHAT2PAY_SANDBOX_CHAOS": ["gremlins"]}, ["payments.E005"]),
        ],
    )
    def test_gateway_configuration(self, settings, overrides, ids):
        settings.STRIPE_SECRET_KEY = "sk_test_x"
        settings.STRIPE_WEBHOOK_SECRET = ["whsec_x"]
        settings.CHAT2PAY_PUBLIC_BASE_URL = "https://desk.example.com/"
        settings.CHAT2PAY_ALLOW_SANDBOX = False
        settings.DEBUG = True
        for name, value in overrides.items():
            setattr(settings, name, value)
        errors = check_gateway_configuration(settings)
        assert [error.id for error in errors] == ids
        assert all(error.level == checks.ERROR for error in errors)


def test_the_reconciler_runs_on_beat(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["chat2pay-reconcile-stripe"]
    assert entry["task"] == "payments.tasks.reconcile_stripe_checkouts_task"


def test_idempotency_keys_are_unique_per_request(alice, alices_conversation, stripe_api, client):
    keys = set()
    for _ in range(2):
        payment_request = send(alices_conversation, alice, idempotency_key=uuid.uuid4().hex)
        client.post(f"/pay/{token_of(payment_request)}/open/")
        keys.add(stripe_api.requests[-1][3]["idempotency-key"])
        with time_machine.travel(timezone.now() + timedelta(hours=1), tick=False):
            actions.expire_due_payment_requests()
    assert len(keys) == 2
