"""A stateful property test of Chat 2 Pay: Hypothesis drives the real `payments.actions` (and the cancel view)
on PostgreSQL with a plain model alongside, and checks the invariants after every step.

Rules: send (new order, replayed form, same order again), click, cancel as the agent / another agent / a
supervisor, a payment attempt that the gateway approves or declines, gateway webhooks (delivered in any order,
duplicated, re-sent under a new event id, late, with a wrong amount), the channel failing, advancing the clock
(also to exactly a deadline), one expiry, and the sweep. The clock is time_machine's, frozen between steps.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from desk.models import Message
from payments import actions, lifecycle
from payments.gateways.base import EventKind, GatewayEvent
from payments.lifecycle import Refusal, Status
from payments.models import GatewayWebhookEvent, PaymentEvent, PaymentException, PaymentRequest
from tests.factories import AgentFactory, ConversationFactory, SupervisorFactory
from tests.payments.conftest import apply_gateway_event
from tests.reliability import profile

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "http://testserver/"
OPEN = {Status.SENT, Status.CLICKED}
REFUSAL_FOR_STATUS = {  # product.md: what a refused caller is told, by the status it finds
    Status.SENT: Refusal.NOT_CLICKED,
    Status.CLICKED: Refusal.ALREADY_CLICKED,
    Status.PAID: Refusal.ALREADY_PAID,
    Status.CANCELED: Refusal.ALREADY_CANCELED,
    Status.EXPIRED: Refusal.EXPIRED,
    Status.FAILED: Refusal.NOT_DELIVERED,
}
CURRENCIES = {"ZAR": Decimal("120.50"), "JPY": Decimal("1500"), "KWD": Decimal("3.125")}
STATS: dict[str, int] = {}


@dataclass
class Model:
    """What the database should say about one request."""

    order_number: str
    idempotency_key: str
    amount: Decimal
    currency: str
    click_deadline: datetime
    status: str = Status.SENT
    clicked_at: datetime | None = None
    pay_deadline: datetime | None = None
    payment_started_at: datetime | None = None
    attempts: int = 0
    version: int = 1
    history: int = 1  # rows in its history
    cancel_notices: int = 0
    exceptions: int = 0
    confirmed_payments: set[str] = field(default_factory=set)  # payment references the gateway confirmed
    ever_paid: bool = False

    @property
    def deadline(self) -> datetime | None:
        return {Status.SENT: self.click_deadline, Status.CLICKED: self.pay_deadline}.get(self.status)

    def overdue(self, now: datetime) -> bool:
        return self.status in OPEN and now >= self.deadline

    def seen(self, now: datetime) -> str:
        return Status.EXPIRED if self.overdue(now) else self.status


def count(name: str) -> None:
    STATS[name] = STATS.get(name, 0) + 1


class ChatToPay(RuleBasedStateMachine):
    requests = Bundle("requests")
    events = Bundle("events")
    clock_start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)

    def __init__(self) -> None:
        super().__init__()
        # Each example starts later than every earlier one ended (their rows stay; the teardown closed them).
        self.traveller = time_machine.travel(ChatToPay.clock_start, tick=False)
        self.clock = self.traveller.start()
        self.alice = AgentFactory(username="sm-alice")
        self.bob = AgentFactory(username="sm-bob")
        self.sam = SupervisorFactory(username="sm-sam")
        self.conversation = ConversationFactory(status="open", assigned_agent=self.alice)
        self.prefix = secrets.token_hex(3).upper()
        self.model: dict[int, Model] = {}
        self.delivered: set[str] = set()
        self.orders = 0

    def teardown(self) -> None:
        # Close everything this example left open, so the next example's sweep counts only its own rows.
        self.clock.shift(timedelta(days=2))
        actions.expire_due_payment_requests()
        ChatToPay.clock_start = self.now + timedelta(hours=1)
        self.traveller.stop()

    @property
    def now(self) -> datetime:
        return datetime.now(UTC)

    # --- Send -----------------------------------------------------------------------------------------------

    def _send(self, order_number: str, key: str, currency: str):
        return actions.send_payment_request(
            self.conversation.pk,
            agent=self.alice,
            phone=self.conversation.customer.phone,
            amount=CURRENCIES[currency],
            currency=currency,
            order_number=order_number,
            description="",
            idempotency_key=key,
            site_url=SITE,
        )

    def _created(self, payment_request, key: str) -> int:
        self.model[payment_request.pk] = Model(
            order_number=payment_request.order_number,
            idempotency_key=key,
            amount=CURRENCIES[payment_request.currency],
            currency=payment_request.currency,
            click_deadline=self.now + timedelta(seconds=settings.CHAT2PAY_CLICK_WINDOW_SECONDS),
        )
        count("send: created")
        return payment_request.pk

    @initialize(target=events, currency=st.sampled_from(sorted(CURRENCIES)), approved=st.booleans())
    def a_request_the_customer_is_paying(self, currency, approved):
        """Every example starts with one paid-for request, so short runs reach the gateway rules too."""
        pk = self.send(currency)
        return self.click_and_pay(pk, approved)

    @rule(target=requests, currency=st.sampled_from(sorted(CURRENCIES)))
    def send(self, currency):
        self.orders += 1
        key = uuid.uuid4().hex
        return self._created(self._send(f"{self.prefix}-{self.orders}", key, currency), key)

    @rule(pk=requests)
    def send_the_same_form_again(self, pk):
        model = self.model[pk]
        replay = self._send(model.order_number, model.idempotency_key, model.currency)
        assert replay.pk == pk  # the double-clicked Send returns the first request, and writes nothing
        count("send: replayed")

    @rule(target=requests, pk=requests)
    def send_again_for_the_same_order(self, pk):
        model = self.model[pk]
        now = self.now
        live = [m for m in self.model.values() if m.order_number == model.order_number and m.status in OPEN]
        key = uuid.uuid4().hex
        if any(not m.overdue(now) for m in live):
            with pytest.raises(actions.SendRefused, match="already has a live payment request"):
                self._send(model.order_number, key, model.currency)
            count("send: refused, order live")
            return multiple()
        for m in live:  # overdue: the send expires it first (the sweep has not reached it)
            self._expire(m)
        count("send: same order after close")
        return self._created(self._send(model.order_number, key, model.currency), key)

    # --- Customer and agent ---------------------------------------------------------------------------------

    def _refusal(self, model: Model, transition: lifecycle.Transition) -> Refusal:
        seen = model.seen(self.now)
        if transition == lifecycle.Transition.CANCEL and seen == Status.PAID:
            return Refusal.ALREADY_CLICKED
        return REFUSAL_FOR_STATUS[seen]

    def _transition(self, model: Model, status: str) -> None:
        model.status = status
        model.version += 1
        model.history += 1

    def _expire(self, model: Model) -> None:
        self._transition(model, Status.EXPIRED)

    @rule(pk=requests)
    def click(self, pk):
        model = self.model[pk]
        result = actions.register_click(pk)
        if model.status == Status.SENT and not model.overdue(self.now):
            assert result.ok
            self._transition(model, Status.CLICKED)
            model.clicked_at = self.now
            model.pay_deadline = self.now + timedelta(seconds=settings.CHAT2PAY_PAY_WINDOW_SECONDS)
            count("click: applied")
        else:
            assert result.refusal == self._refusal(model, lifecycle.Transition.CLICK)
            count("click: refused")

    @rule(pk=requests, who=st.sampled_from(["agent", "other agent", "supervisor"]))
    def cancel(self, pk, who):
        model = self.model[pk]
        user = {"agent": self.alice, "other agent": self.bob, "supervisor": self.sam}[who]
        browser = Client()
        browser.force_login(user)
        response = browser.post(f"/desk/payments/{pk}/cancel/")
        if who == "other agent":
            assert response.status_code == 403  # agents cannot act on each other's conversations
        elif who == "supervisor":
            assert response.status_code == 403
        elif model.status == Status.SENT and not model.overdue(self.now):
            assert response.status_code == 200
            self._transition(model, Status.CANCELED)
            model.cancel_notices += 1
        else:
            assert response.status_code == 409
            assert self._refusal(model, lifecycle.Transition.CANCEL).label in response.content.decode()
        count(f"cancel by {who}: {response.status_code}")

    @rule(pk=requests, approved=st.booleans(), target=events)
    def pay(self, pk, approved):
        """The customer submits the gateway's form; its verdict becomes a webhook event to deliver."""
        model = self.model[pk]
        result = actions.record_payment_attempt(pk, payment_method={"brand": "visa", "last4": "4242"})
        if model.status != Status.CLICKED or model.overdue(self.now):
            assert result.refusal == self._refusal(model, lifecycle.Transition.START_PAYMENT)
            count("pay attempt: refused")
            return multiple()
        assert result.ok
        model.payment_started_at = self.now
        model.attempts += 1
        model.version += 1
        model.history += 1
        count("pay attempt: recorded")
        return GatewayEvent(
            event_id=f"evt_sm_{secrets.token_hex(8)}",
            kind=EventKind.PAYMENT_SUCCEEDED if approved else EventKind.PAYMENT_FAILED,
            type="payment.succeeded" if approved else "payment.failed",
            client_reference=str(pk),
            payment_reference=f"pay_sm_{secrets.token_hex(8)}",
            amount=model.amount,
            currency=model.currency,
            started_at=self.now,
            failure_message="" if approved else "Your card was declined.",
        )

    @rule(pk=requests, approved=st.booleans(), target=events)
    def click_and_pay(self, pk, approved):
        """The common path, so that examples reach the gateway often: open the link, then pay at once."""
        self.click(pk)
        return self.pay(pk, approved)

    @rule(pk=requests)
    def channel_fails(self, pk):
        model = self.model[pk]
        result = actions.mark_failed(pk, reason="provider said no")
        if model.status == Status.SENT:  # Window.ANY: a late delivery report still fails a sent link
            assert result.ok
            self._transition(model, Status.FAILED)
        else:
            assert not result.ok
        count(f"channel fails: {'applied' if result.ok else 'refused'}")

    # --- Gateway --------------------------------------------------------------------------------------------

    def _expected_outcome(self, event: GatewayEvent) -> str:
        pk = int(event.client_reference)
        model = self.model[pk]
        if event.event_id in self.delivered:
            return actions.DUPLICATE
        if event.kind == EventKind.PAYMENT_FAILED:
            if model.status == Status.CLICKED:
                model.version += 1
                model.history += 1
                return GatewayWebhookEvent.Outcome.APPLIED
            return GatewayWebhookEvent.Outcome.IGNORED
        if event.payment_reference in model.confirmed_payments:
            return GatewayWebhookEvent.Outcome.IGNORED  # the same money reported again
        model.confirmed_payments.add(event.payment_reference)
        in_time = model.clicked_at is not None and event.started_at < model.pay_deadline
        wrong_money = event.amount != model.amount or event.currency != model.currency
        if wrong_money or model.status == Status.PAID or model.status not in {Status.CLICKED, Status.EXPIRED}:
            paid = False
        else:
            paid = in_time
        if paid:
            self._transition(model, Status.PAID)
            model.ever_paid = True
            return GatewayWebhookEvent.Outcome.APPLIED
        model.exceptions += 1
        model.version += 1
        model.history += 1
        return GatewayWebhookEvent.Outcome.EXCEPTION

    def _deliver(self, event: GatewayEvent, label: str) -> None:
        expected = self._expected_outcome(event)
        outcome = apply_gateway_event(event)
        assert outcome == expected, (label, event)
        self.delivered.add(event.event_id)
        count(f"webhook {label}: {outcome}")

    @rule(event=events)
    def deliver(self, event):
        """Any pending event, in any order, possibly after its window (late), possibly again (duplicate)."""
        self._deliver(event, "duplicate" if event.event_id in self.delivered else "delivered")

    @rule(event=events)
    def resend_under_a_new_event_id(self, event):
        """The gateway reports the same payment again in another event (e.g. a second event type)."""
        self._deliver(
            GatewayEvent(**{**event.__dict__, "event_id": f"evt_sm_{secrets.token_hex(8)}"}), "re-sent"
        )

    @rule(event=consumes(events))
    def deliver_with_a_wrong_amount(self, event):
        self._deliver(
            GatewayEvent(
                **{**event.__dict__, "event_id": f"evt_sm_{secrets.token_hex(8)}", "amount": event.amount + 1}
            ),
            "wrong amount",
        )

    # --- Time -----------------------------------------------------------------------------------------------

    @rule(seconds=st.integers(min_value=1, max_value=1000))
    def advance_the_clock(self, seconds):
        self.clock.shift(timedelta(seconds=seconds))
        count("clock: advanced")

    @rule(pk=requests, offset=st.sampled_from([-1, 0, 1]))
    def advance_to_a_deadline(self, pk, offset):
        """To a running deadline, one millisecond either side, or exactly on it."""
        deadline = self.model[pk].deadline
        if deadline is not None:
            target = deadline + timedelta(milliseconds=offset)
            if target > self.now:
                self.clock.move_to(target)
                count(f"clock: to a deadline {offset:+d} ms")

    @rule(pk=requests)
    def expire_one(self, pk):
        model = self.model[pk]
        result = actions.expire_payment_request(pk)
        if model.overdue(self.now):
            assert result.ok
            self._expire(model)
        else:
            expected = Refusal.NOT_DUE if model.status in OPEN else REFUSAL_FOR_STATUS[model.status]
            assert result.refusal == expected
        count(f"expire one: {'applied' if result.ok else 'refused'}")

    @rule()
    def sweep(self):
        now = self.now
        due = [model for model in self.model.values() if model.overdue(now)]
        assert actions.expire_due_payment_requests() == len(due)
        for model in due:
            self._expire(model)
        count("sweep")

    # --- Invariants -----------------------------------------------------------------------------------------

    @invariant()
    def the_database_equals_the_model(self):
        if not self.model:
            return
        rows = PaymentRequest.objects.filter(pk__in=self.model).values(
            "pk", "status", "version", "clicked_at", "pay_deadline", "payment_attempts", "click_deadline"
        )
        assert len(rows) == len(self.model)
        for row in rows:
            model = self.model[row["pk"]]
            got = (
                row["status"],
                row["version"],
                row["clicked_at"],
                row["pay_deadline"],
                row["payment_attempts"],
            )
            want = (model.status, model.version, model.clicked_at, model.pay_deadline, model.attempts)
            assert got == want, row["pk"]
            assert row["click_deadline"] == model.click_deadline

    @invariant()
    def history_replays_to_the_status_with_at_most_one_terminal_transition(self):
        if not self.model:
            return
        history: dict[int, list[tuple[str, str, str]]] = {pk: [] for pk in self.model}
        for pk, from_status, to_status, reason in PaymentEvent.objects.filter(
            payment_request__in=self.model
        ).values_list("payment_request", "from_status", "to_status", "reason"):
            history[pk].append((from_status, to_status, reason))
        for pk, rows in history.items():
            model = self.model[pk]
            assert len(rows) == model.history, pk
            status = ""
            terminal = []
            for from_status, to_status, _ in rows:
                assert from_status == status, (pk, rows)  # each row starts where the last one ended
                if to_status != status and to_status in lifecycle.CLOSED_STATUSES:
                    terminal.append((status, to_status))
                if status == Status.PAID:
                    assert to_status == Status.PAID, (pk, rows)  # paid never regresses
                status = to_status
            assert status == model.status, (pk, rows)
            # One terminal transition; the only second one is expired → paid for a payment started in time.
            assert len(terminal) <= 1 or (
                len(terminal) == 2 and terminal[1] == (Status.EXPIRED, Status.PAID)
            ), (pk, terminal)
            if model.ever_paid:
                assert model.status == Status.PAID

    @invariant()
    def every_confirmed_payment_is_paid_or_flagged(self):
        confirmed = {ref: pk for pk, model in self.model.items() for ref in model.confirmed_payments}
        if not confirmed:
            return
        paid = set(
            PaymentEvent.objects.filter(
                payment_request__in=self.model, reason=lifecycle.Reason.PAID
            ).values_list("details__payment", flat=True)
        )
        flagged = set(
            PaymentException.objects.filter(payment_request__in=self.model).values_list(
                "gateway_reference", flat=True
            )
        )
        for reference in confirmed:
            assert (reference in paid) != (reference in flagged), reference  # exactly one of the two
        assert PaymentException.objects.filter(payment_request__in=self.model).count() == sum(
            model.exceptions for model in self.model.values()
        )

    @invariant()
    def each_canceled_request_sent_exactly_one_cancel_notice(self):
        for model in self.model.values():
            notice = lifecycle.CANCEL_NOTICE.format(order_number=model.order_number)
            sent = Message.objects.filter(conversation=self.conversation, body=notice).count()
            # One order number may have several requests (sent again after one closed): count per order.
            expected = sum(
                m.cancel_notices for m in self.model.values() if m.order_number == model.order_number
            )
            assert sent == expected, model.order_number


@pytest.mark.timeout(profile.n(300, 3600))  # the long profile's 25,000 steps take about a quarter of an hour
def test_chat_to_pay_against_a_model(transactional_db):
    examples, steps = profile.n(10, 500), profile.n(30, 50)
    STATS.clear()
    run_state_machine_as_test(
        ChatToPay,
        settings=hypothesis_settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        ),
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        profile.note_environment("PostgreSQL", cursor.fetchone()[0])
    section = "1. Stateful property test (Hypothesis RuleBasedStateMachine)"
    profile.record(section, "examples × max steps", f"{examples} × {steps}")
    profile.record(section, "steps run (all rules)", sum(STATS.values()))
    for name in sorted(STATS):
        profile.record(section, name, STATS[name])
    profile.record(section, "invariant violations", 0)
