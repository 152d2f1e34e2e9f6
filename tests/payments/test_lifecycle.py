"""The full transition table, through the real actions: every (status, action) pair, before, exactly at
and after the running deadline. Expectations are written out from product.md here, not read from
`payments.lifecycle`, so this checks the table against the spec rather than against itself."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from desk.models import Message
from payments import actions, lifecycle
from payments.gateways import sandbox
from payments.gateways.sandbox import SandboxGateway
from payments.lifecycle import Refusal, Status
from payments.models import PaymentEvent, PaymentException
from tests.payments.conftest import apply_gateway_event, make_request, reload, sandbox_event

pytestmark = pytest.mark.django_db

NOW = timezone.datetime(2030, 1, 15, 10, 0, tzinfo=timezone.get_fixed_timezone(0))
TIMINGS = {"before": timedelta(seconds=1), "at": timedelta(0), "after": -timedelta(seconds=1)}
OPEN, CLOSED = (Status.SENT, Status.CLICKED), (Status.PAID, Status.CANCELED, Status.EXPIRED, Status.FAILED)

# What each closed status says to any action that is not allowed in it.
CLOSED_REFUSALS = {
    Status.PAID: Refusal.ALREADY_PAID,
    Status.CANCELED: Refusal.ALREADY_CANCELED,
    Status.EXPIRED: Refusal.EXPIRED,
    Status.FAILED: Refusal.NOT_DELIVERED,
}

# (action, status, timing) -> the new status, or the refusal. Timing matters only while a deadline runs.
EXPECTED: dict[tuple[str, str, str], Status | Refusal] = {}
for timing in TIMINGS:
    late = timing != "before"
    EXPECTED |= {
        ("click", Status.SENT, timing): Refusal.EXPIRED if late else Status.CLICKED,
        ("click", Status.CLICKED, timing): Refusal.EXPIRED if late else Refusal.ALREADY_CLICKED,
        ("start_payment", Status.SENT, timing): Refusal.EXPIRED if late else Refusal.NOT_CLICKED,
        ("start_payment", Status.CLICKED, timing): Refusal.EXPIRED if late else Status.CLICKED,
        ("cancel", Status.SENT, timing): Refusal.EXPIRED if late else Status.CANCELED,
        ("cancel", Status.CLICKED, timing): Refusal.EXPIRED if late else Refusal.ALREADY_CLICKED,
        ("expire", Status.SENT, timing): Status.EXPIRED if late else Refusal.NOT_DUE,
        ("expire", Status.CLICKED, timing): Status.EXPIRED if late else Refusal.NOT_DUE,
        # A channel's permanent failure is a fact whenever it is reported for a link nobody opened.
        ("fail", Status.SENT, timing): Status.FAILED,
        ("fail", Status.CLICKED, timing): Refusal.EXPIRED if late else Refusal.ALREADY_CLICKED,
    }
    for action in ("click", "start_payment", "cancel", "expire", "fail"):
        for status in CLOSED:
            EXPECTED[(action, status, timing)] = CLOSED_REFUSALS[status]
    # product.md: cancel of a paid request says the customer has already clicked the link.
    EXPECTED[("cancel", Status.PAID, timing)] = Refusal.ALREADY_CLICKED


def _request_in(status: str, timing: str, alice):
    deadline = NOW + TIMINGS[timing]
    fields = {"agent": alice, "sent_at": NOW - timedelta(minutes=1)}
    if status == Status.SENT:
        fields["click_deadline"] = deadline
    else:
        fields |= {"click_deadline": NOW - timedelta(seconds=30), "clicked_at": NOW - timedelta(seconds=40)}
        fields["pay_deadline"] = deadline if status == Status.CLICKED else NOW + timedelta(minutes=10)
    return make_request(status, **fields)


def _act(action: str, payment_request, alice) -> actions.TransitionResult:
    if action == "click":
        return actions.register_click(payment_request.pk)
    if action == "start_payment":
        return actions.record_payment_attempt(
            payment_request.pk, payment_method={"brand": "visa", "last4": "4242"}
        )
    if action == "cancel":
        return actions.cancel_payment_request(payment_request.pk, agent=alice)
    if action == "expire":
        return actions.expire_payment_request(payment_request.pk)
    return actions.mark_failed(payment_request.pk, reason="Number unreachable")


@pytest.mark.parametrize(("action", "status", "timing"), sorted(EXPECTED))
def test_every_action_in_every_status(action, status, timing, alice):
    # Given a request in `status` whose running deadline is 1 s ahead, exactly now, or 1 s past
    payment_request = _request_in(status, timing, alice)
    events_before = PaymentEvent.objects.count()
    messages_before = Message.objects.count()
    expected = EXPECTED[(action, status, timing)]

    # When the action happens (the sweep has not run: the deadline is checked by the action itself)
    with time_machine.travel(NOW, tick=False):
        result = _act(action, payment_request, alice)

    # Then it either moves along the table, with one history row, or is refused and changes nothing
    after = reload(payment_request)
    if isinstance(expected, Refusal):
        assert result.refusal == expected
        assert (after.status, after.version) == (payment_request.status, payment_request.version)
        assert PaymentEvent.objects.count() == events_before
        assert Message.objects.count() == messages_before
    else:
        assert result.ok, result.refusal
        assert after.status == expected
        assert after.version == payment_request.version + 1
        event = PaymentEvent.objects.latest("pk")
        assert (event.from_status, event.to_status, event.at) == (status, expected, NOW)


def test_the_refusal_texts_are_the_specs():
    assert Refusal.ALREADY_CLICKED.label == "The customer has already clicked the link."
    assert Refusal.ALREADY_CANCELED.label == "The link is already canceled."
    assert Refusal.EXPIRED.label == "The link has expired."


class TestSideEffectsOfTransitions:
    def test_a_click_starts_the_pay_window_from_the_click(self, alice, settings):
        settings.CHAT2PAY_PAY_WINDOW_SECONDS = 900
        payment_request = _request_in(Status.SENT, "before", alice)
        with time_machine.travel(NOW, tick=False):
            actions.register_click(payment_request.pk)
        after = reload(payment_request)
        assert (after.clicked_at, after.pay_deadline) == (NOW, NOW + timedelta(minutes=15))
        assert after.deadline == after.pay_deadline

    def test_a_cancel_tells_the_customer_exactly_the_vendors_words(self, alice):
        payment_request = _request_in(Status.SENT, "before", alice)
        with time_machine.travel(NOW, tick=False):
            actions.cancel_payment_request(payment_request.pk, agent=alice)
        notice = Message.objects.latest("pk")
        assert notice.body == f"The {payment_request.order_number} has been canceled by the Agent"
        assert (notice.direction, notice.author) == (Message.Direction.OUTBOUND, alice)
        event = PaymentEvent.objects.latest("pk")
        assert (event.actor_kind, event.actor_user, event.reason) == ("agent", alice, "canceled")

    def test_expiry_says_which_window_ran_out(self, alice):
        sent = _request_in(Status.SENT, "after", alice)
        clicked = _request_in(Status.CLICKED, "after", alice)
        with time_machine.travel(NOW, tick=False):
            actions.expire_payment_request(sent.pk)
            actions.expire_payment_request(clicked.pk)
        assert sent.events.get().reason == lifecycle.Reason.CLICK_WINDOW_PASSED
        assert clicked.events.get().reason == lifecycle.Reason.PAY_WINDOW_PASSED
        assert reload(sent).closed_at == NOW


class TestGatewayResultsInEveryStatus:
    """mark_paid and declines arrive as webhooks; money is either a payment or a recorded exception."""

    @pytest.mark.parametrize("timing", list(TIMINGS))
    def test_a_payment_started_in_time_is_paid_even_after_the_deadline(self, alice, timing):
        payment_request = _request_in(Status.CLICKED, timing, alice)
        outcome = _confirm(payment_request, started_at=NOW - timedelta(seconds=5))
        assert outcome == "applied"
        assert reload(payment_request).status == Status.PAID
        assert Message.objects.filter(body__startswith="Payment received for order").count() == 1

    def test_a_payment_started_in_time_lifts_a_swept_request_to_paid(self, alice):
        payment_request = _request_in(Status.CLICKED, "after", alice)
        with time_machine.travel(NOW, tick=False):
            actions.expire_payment_request(payment_request.pk)
        assert (
            _confirm(payment_request, started_at=payment_request.pay_deadline - timedelta(seconds=1))
            == "applied"
        )
        after = reload(payment_request)
        assert after.status == Status.PAID
        assert list(after.events.order_by("pk").values_list("to_status", flat=True)) == [
            Status.EXPIRED,
            Status.PAID,
        ]

    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (Status.SENT, PaymentException.Kind.LATE),
            (Status.CANCELED, PaymentException.Kind.LATE),
            (Status.EXPIRED, PaymentException.Kind.LATE),
            (Status.FAILED, PaymentException.Kind.LATE),
            (Status.PAID, PaymentException.Kind.DUPLICATE),
        ],
    )
    def test_money_that_cannot_be_a_payment_is_recorded_and_flagged(self, alice, status, kind):
        fields = {"agent": alice}
        if status in {Status.EXPIRED, Status.CANCELED, Status.FAILED, Status.SENT}:
            fields |= {"clicked_at": None, "pay_deadline": None}
        payment_request = make_request(status, **fields)
        assert _confirm(payment_request, started_at=timezone.now()) == "exception"
        after = reload(payment_request)
        assert after.status == status  # never silently paid, never dropped
        exception = PaymentException.objects.get()
        assert (exception.kind, exception.amount, exception.resolution) == (
            kind,
            payment_request.amount,
            "open",
        )
        assert after.events.latest("pk").reason in {"late_payment", "duplicate_payment"}

    def test_a_payment_started_after_the_pay_deadline_is_late_money(self, alice):
        payment_request = _request_in(Status.CLICKED, "after", alice)
        assert _confirm(payment_request, started_at=payment_request.pay_deadline) == "exception"
        assert reload(payment_request).status == Status.CLICKED
        assert PaymentException.objects.get().kind == PaymentException.Kind.LATE

    @pytest.mark.parametrize(("amount", "currency"), [("999.00", None), (None, "USD")])
    def test_a_different_amount_or_currency_is_not_a_payment(self, alice, amount, currency):
        payment_request = _request_in(Status.CLICKED, "before", alice)
        assert _confirm(payment_request, started_at=NOW, amount=amount, currency=currency) == "exception"
        assert reload(payment_request).status == Status.CLICKED
        assert PaymentException.objects.get().kind == PaymentException.Kind.AMOUNT_MISMATCH

    @pytest.mark.parametrize("status", list(Status))
    def test_a_decline_is_recorded_only_while_the_customer_can_pay(self, alice, status):
        payment_request = make_request(status, agent=alice)
        outcome = _confirm(payment_request, kind="payment.failed", failure_message="Your card was declined.")
        after = reload(payment_request)
        assert after.status == status
        if status == Status.CLICKED:
            assert outcome == "applied"
            assert after.last_decline == "Your card was declined."
        else:
            assert outcome == "ignored"


def _confirm(payment_request, *, kind="payment.succeeded", started_at=None, **overrides) -> str:
    """Apply a verified sandbox gateway event to the request, as the webhook view does, a minute after NOW
    (so after every deadline in these tests: the gateway's confirmation is late, its start time decides)."""
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        body = sandbox_event(payment_request, kind=kind, started_at=started_at, **overrides)
        event = SandboxGateway().parse_webhook(body, {sandbox.SIGNATURE_HEADER: sandbox.sign(body)})
        return apply_gateway_event(event)


class TestMoney:
    @pytest.mark.parametrize(
        ("amount", "currency", "written"),
        [
            ("1250", "ZAR", "ZAR 1,250.00"),
            ("1500", "JPY", "JPY 1,500"),
            ("3.125", "KWD", "KWD 3.125"),
            ("0.5", "USD", "USD 0.50"),
        ],
    )
    def test_amounts_are_written_with_the_currencys_minor_units(self, amount, currency, written):
        assert lifecycle.format_amount(Decimal(amount), currency) == written

    def test_minor_units_follow_iso_4217(self):
        assert (lifecycle.MINOR_UNITS["JPY"], lifecycle.MINOR_UNITS["ZAR"], lifecycle.MINOR_UNITS["KWD"]) == (
            0,
            2,
            3,
        )

    @pytest.mark.parametrize(("seconds", "words"), [(300, "5 minutes"), (60, "1 minute"), (30, "30 seconds")])
    def test_windows_are_described_in_words(self, seconds, words):
        assert lifecycle.describe_window(seconds) == words
