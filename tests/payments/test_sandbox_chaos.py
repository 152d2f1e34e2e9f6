"""The sandbox as the chaos tool: each CHAT2PAY_SANDBOX_CHAOS knob reproduces one gateway scenario of the
reliability spec, and the request ends in the state the spec demands with every payment accounted for."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine

from payments import actions, tasks
from payments.gateways.base import GatewayError
from payments.lifecycle import Reason, Status
from payments.models import GatewayWebhookEvent, PaymentException, SandboxCheckout
from tests.payments.conftest import reload, send, token_of
from tests.payments.test_pay_page import CARDS, customer, open_link, pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def opened(alice, alices_conversation):
    """(request, token, the customer's browser) once the link is open and the pay window runs."""
    payment_request = send(alices_conversation, alice)
    token = token_of(payment_request)
    browser = customer()
    open_link(browser, token)
    return reload(payment_request), token, browser


def paid_once(payment_request) -> None:
    payment_request = reload(payment_request)
    assert payment_request.status == Status.PAID
    assert payment_request.events.filter(reason=Reason.PAID).count() == 1
    assert not PaymentException.objects.exists()


def test_duplicate_delivers_every_webhook_three_times_and_pays_once(
    opened, settings, sandbox_webhooks_inline, django_capture_on_commit_callbacks
):
    settings.CHAT2PAY_SANDBOX_CHAOS = ["duplicate"]
    payment_request, token, browser = opened
    with django_capture_on_commit_callbacks(execute=True):
        pay(browser, token, CARDS["ok"])
    assert sandbox_webhooks_inline == [200, 200, 200]
    assert GatewayWebhookEvent.objects.count() == 1
    paid_once(payment_request)


def test_reorder_delivers_a_stale_decline_after_the_success_and_the_payment_stands(
    opened, settings, sandbox_webhooks_inline, django_capture_on_commit_callbacks
):
    settings.CHAT2PAY_SANDBOX_CHAOS = ["reorder"]
    payment_request, token, browser = opened
    with django_capture_on_commit_callbacks(execute=True):
        pay(browser, token, CARDS["ok"])
    assert sandbox_webhooks_inline == [200, 200]
    assert list(GatewayWebhookEvent.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "applied",
        "ignored",
    ]
    paid_once(payment_request)
    assert reload(payment_request).last_decline == ""


def test_delay_delivers_after_the_deadline_and_a_payment_started_in_time_is_still_paid(
    opened, settings, monkeypatch, celery_eager, django_capture_on_commit_callbacks
):
    settings.CHAT2PAY_SANDBOX_CHAOS = ["delay"]
    payment_request, token, browser = opened
    queued = []
    monkeypatch.setattr(
        tasks.deliver_sandbox_webhook_task,
        "apply_async",
        lambda args, **options: queued.append((args, options)),
    )
    with django_capture_on_commit_callbacks(execute=True):
        pay(browser, token, CARDS["ok"])
    ((args, options),) = queued
    assert options["countdown"] >= settings.CHAT2PAY_SANDBOX_DELAY_SECONDS
    # The deadline passes and the sweep expires the request before the webhook arrives.
    with time_machine.travel(
        payment_request.pay_deadline + timedelta(seconds=options["countdown"]), tick=False
    ):
        actions.expire_due_payment_requests()
        assert reload(payment_request).status == Status.EXPIRED
        from tests.payments.conftest import post_webhook

        with django_capture_on_commit_callbacks(execute=True):  # the webhook's task
            assert post_webhook(customer(), args[1].encode()).status_code == 200
    paid_once(payment_request)  # started before the deadline: paid, judged by the gateway's clock (B3)


def test_money_started_after_the_deadline_is_late_money_not_a_payment(opened):
    from tests.payments.conftest import deliver, sandbox_event

    payment_request, _, _ = opened
    late = payment_request.pay_deadline + timedelta(seconds=5)
    with time_machine.travel(late, tick=False):
        actions.expire_due_payment_requests()
        deliver(sandbox_event(payment_request, started_at=late))
    assert reload(payment_request).status == Status.EXPIRED
    assert PaymentException.objects.get().kind == PaymentException.Kind.LATE


def test_drop_then_retry_delivers_on_the_retry(
    opened, settings, sandbox_webhooks_inline, django_capture_on_commit_callbacks
):
    from chatdesk.celery import app

    settings.CHAT2PAY_SANDBOX_CHAOS = ["drop_then_retry"]
    payment_request, token, browser = opened
    # Eager Celery re-runs a retried task at once, but only if the first failure is not propagated.
    app.conf.task_eager_propagates = False
    with django_capture_on_commit_callbacks(execute=True):
        pay(browser, token, CARDS["ok"])
    assert sandbox_webhooks_inline == [200]  # the first attempt never reached us
    paid_once(payment_request)


def test_complete_before_expire_makes_the_expiry_a_payment(
    opened, settings, sandbox_webhooks_inline, django_capture_on_commit_callbacks
):
    settings.CHAT2PAY_SANDBOX_CHAOS = ["complete_before_expire"]
    payment_request, _, _ = opened
    with time_machine.travel(payment_request.pay_deadline, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            actions.expire_due_payment_requests()
    assert SandboxCheckout.objects.get().state == SandboxCheckout.State.COMPLETE
    assert sandbox_webhooks_inline == [200]
    paid_once(payment_request)  # expired by the sweep, then paid: the payment was started in time


def test_decline_declines_every_card_and_the_agent_sees_why(
    opened, settings, sandbox_webhooks_inline, django_capture_on_commit_callbacks
):
    settings.CHAT2PAY_SANDBOX_CHAOS = ["decline"]
    payment_request, token, browser = opened
    with django_capture_on_commit_callbacks(execute=True):
        response = pay(browser, token, CARDS["ok"])
    assert "declined" in response.content.decode()
    payment_request = reload(payment_request)
    assert payment_request.status == Status.CLICKED
    assert payment_request.last_decline.startswith("Your card was declined")


def test_fail_refunds_keeps_late_money_open(opened, settings, sam):
    from tests.payments.conftest import deliver, sandbox_event

    settings.CHAT2PAY_SANDBOX_CHAOS = ["fail_refunds"]
    payment_request, _, _ = opened
    late = payment_request.pay_deadline + timedelta(seconds=5)
    with time_machine.travel(late, tick=False):
        actions.expire_due_payment_requests()
        deliver(sandbox_event(payment_request, started_at=late))
    exception = PaymentException.objects.get()
    with pytest.raises(GatewayError):
        actions.refund_payment_exception(exception.pk, by=sam)
    exception.refresh_from_db()
    assert exception.resolution == PaymentException.Resolution.OPEN
    settings.CHAT2PAY_SANDBOX_CHAOS = []
    assert actions.refund_payment_exception(exception.pk, by=sam).resolution == "refunded"


def test_the_knobs_are_configuration(settings):
    from payments.gateways.sandbox import CHAOS

    assert set(CHAOS) == {
        "duplicate",
        "reorder",
        "delay",
        "drop_then_retry",
        "complete_before_expire",
        "decline",
        "fail_refunds",
    }
    assert json.dumps(settings.CHAT2PAY_SANDBOX_CHAOS) == "[]"
