"""Real concurrency on PostgreSQL, counted: barrier-released threads, each with its own connection.

Reuses `race` from tests/payments/test_concurrency.py. Quick counts in `make test`; the issue's N in
`make reliability` (CHATDESK_PROFILE=long).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from desk.models import Message
from payments import actions, inbox, realtime
from payments.lifecycle import CANCEL_NOTICE, Refusal, Status
from payments.models import GatewayWebhookEvent, PaymentEvent, PaymentRequest
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import SITE, make_request, post_webhook, reload, sandbox_event
from tests.payments.test_concurrency import race
from tests.reliability import profile

pytestmark = pytest.mark.django_db(transaction=True)
SECTION = "2. Real concurrency on PostgreSQL"


@pytest.fixture
def alice(transactional_db):
    return AgentFactory(username="race-alice")


@pytest.fixture
def conversation(alice):
    return ConversationFactory(status="open", assigned_agent=alice)


def test_cancel_vs_click(alice, conversation):
    rounds = profile.n(60, 1_000)
    outcome = Counter()
    for _ in range(rounds):
        payment_request = make_request(Status.SENT, agent=alice, conversation=conversation)
        cancel, click = race(
            lambda pr=payment_request: actions.cancel_payment_request(pr.pk, agent=alice),
            lambda pr=payment_request: actions.register_click(pr.pk),
        )
        after = reload(payment_request)
        history = list(after.events.values_list("to_status", flat=True))
        if cancel.ok and not click.ok and click.refusal == Refusal.ALREADY_CANCELED:
            consistent = after.status == Status.CANCELED and history == [Status.CANCELED]
            outcome["cancel won" if consistent else "inconsistent"] += 1
        elif click.ok and not cancel.ok and cancel.refusal == Refusal.ALREADY_CLICKED:
            consistent = after.status == Status.CLICKED and history == [Status.CLICKED]
            outcome["click won" if consistent else "inconsistent"] += 1
        else:
            outcome["inconsistent"] += 1
    notices = Message.objects.filter(body__endswith="has been canceled by the Agent").count()
    assert outcome["inconsistent"] == 0
    assert notices == outcome["cancel won"]
    if profile.LONG:  # both interleavings really happened
        assert outcome["cancel won"]
        assert outcome["click won"]
    profile.record(SECTION, "cancel vs click: rounds", rounds)
    profile.record(
        SECTION,
        "cancel vs click: cancel won / click won / inconsistent",
        f"{outcome['cancel won']} / {outcome['click won']} / {outcome['inconsistent']}",
    )
    profile.record(SECTION, "cancel vs click: cancel notices sent", notices)


def test_click_vs_expiry_at_the_deadline(alice, conversation):
    """The click and the expiry fire within a few ms either side of the click deadline (real clock)."""
    rounds = profile.n(30, 500)
    outcome = Counter()
    offsets = [-0.004, -0.002, -0.001, 0.0, 0.001, 0.002, 0.004]
    for number in range(rounds):
        deadline = timezone.now() + timedelta(milliseconds=80)
        payment_request = make_request(
            Status.SENT, agent=alice, conversation=conversation, click_deadline=deadline
        )
        click_at = deadline.timestamp() + offsets[number % len(offsets)]
        expire_at = deadline.timestamp() + offsets[(number * 3 + 2) % len(offsets)]

        def at(moment, call):
            def run():
                connection.ensure_connection()  # connect first, so the call itself lands on its moment
                time.sleep(max(0.0, moment - time.time()))
                return call()

            return run

        click, expire = race(
            at(click_at, lambda pr=payment_request: actions.register_click(pr.pk)),
            at(expire_at, lambda pr=payment_request: actions.expire_payment_request(pr.pk)),
        )
        after = reload(payment_request)
        assert not (click.ok and expire.ok)
        if click.ok:
            assert after.status == Status.CLICKED
            assert after.clicked_at < deadline
            outcome["click won (before the deadline)"] += 1
        elif expire.ok:
            assert after.status == Status.EXPIRED
            assert after.closed_at >= deadline
            assert click.refusal == Refusal.EXPIRED
            outcome["expiry won"] += 1
        else:  # the expiry came before the deadline, the click after it: read-time enforcement says expired
            assert after.status == Status.SENT
            assert after.effective_status() == Status.EXPIRED
            assert click.refusal == Refusal.EXPIRED
            assert expire.refusal == Refusal.NOT_DUE
            outcome["neither (expired at read time; the sweep persists it)"] += 1
    profile.record(SECTION, "click vs expiry at the deadline (±4 ms): rounds", rounds)
    for name, value in sorted(outcome.items()):
        profile.record(SECTION, f"click vs expiry: {name}", value)
    profile.record(SECTION, "click vs expiry: both applied (must be 0)", 0)


def test_double_send(alice, conversation):
    pairs = profile.n(40, 500)
    fields = dict(
        agent=alice,
        phone="+27821234567",
        amount=Decimal("10.00"),
        currency="ZAR",
        description="",
        site_url=SITE,
    )
    for number in range(pairs):
        key = uuid.uuid4().hex
        first, second = race(
            *[
                lambda number=number, key=key: actions.send_payment_request(
                    conversation.pk, order_number=f"DS-{number}", idempotency_key=key, **fields
                )
            ]
            * 2
        )
        assert first.pk == second.pk
    created = PaymentRequest.objects.filter(order_number__startswith="DS-").count()
    messages = Message.objects.filter(kind=Message.Kind.PAYMENT).count()
    assert (created, messages) == (pairs, pairs)
    profile.record(
        SECTION, "double Send: pairs → requests → link messages", f"{pairs} → {created} → {messages}"
    )


@pytest.mark.parametrize("sweepers", [2, 4, 8])
def test_concurrent_sweeps(alice, conversation, sweepers, monkeypatch):
    due = profile.n(120, 1_000)
    past = timezone.now() - timedelta(seconds=1)
    for _ in range(due):
        make_request(Status.SENT, agent=alice, conversation=conversation, click_deadline=past)
    pushed: list[int] = []
    lock = threading.Lock()
    original = realtime.publish_payment_requests_changed

    def counting(batch):
        batch = list(batch)
        with lock:
            pushed.extend(pr.pk for pr in batch)
        original(batch)

    monkeypatch.setattr(realtime, "publish_payment_requests_changed", counting)
    started = time.monotonic()
    counts = race(*[lambda: actions.expire_due_payment_requests(batch_size=50)] * sweepers)
    elapsed = time.monotonic() - started
    expired_events = PaymentEvent.objects.filter(to_status=Status.EXPIRED).count()
    assert sum(counts) == due == expired_events
    assert PaymentRequest.objects.filter(status=Status.EXPIRED).count() == due
    assert sorted(Counter(pushed).values()) == [1] * due  # one push per request
    profile.record(
        SECTION,
        f"{sweepers} concurrent sweeps over {due} due requests",
        f"expired {sum(counts)} (per sweep {sorted(counts)}), history rows {expired_events}, "
        f"pushes {len(pushed)}, {elapsed:.2f} s",
    )


@pytest.mark.timeout(profile.n(300, 2400))  # 1,000 events × 3 deliveries: ~10 minutes in the long profile
def test_each_webhook_delivered_three_times_in_parallel(alice, conversation):
    """Each event delivered three times at once, then its task run three times at once (redeliveries)."""
    events = profile.n(20, 1_000)
    answers = Counter()
    for _ in range(events):
        payment_request = make_request(Status.CLICKED, agent=alice, conversation=conversation)
        body = sandbox_event(payment_request)
        responses = race(*[lambda body=body: post_webhook(Client(), body)] * 3)
        answers.update(
            f"{r.status_code} {'duplicate' if r.json()['duplicate'] else 'stored'}" for r in responses
        )
        stored = GatewayWebhookEvent.objects.get(gateway="sandbox", event_id=json.loads(body)["id"])
        runs = race(*[lambda pk=stored.pk: inbox.process_stored_event(pk)] * 3)
        answers.update(f"task {outcome}" for outcome in runs)
    connections.close_all()
    paid = PaymentRequest.objects.filter(status=Status.PAID).count()
    paid_events = PaymentEvent.objects.filter(to_status=Status.PAID, from_status=Status.CLICKED).count()
    confirmations = Message.objects.filter(body__startswith="Payment received").count()
    assert answers == {
        "200 stored": events,
        "200 duplicate": 2 * events,
        "task applied": events,
        "task duplicate": 2 * events,
    }
    assert paid == paid_events == confirmations == events
    profile.record(SECTION, "webhook ×3 in parallel: events → deliveries", f"{events} → {3 * events}")
    profile.record(SECTION, "webhook ×3: answers", dict(sorted(answers.items())))
    profile.record(
        SECTION,
        "webhook ×3: paid / paid transitions / confirmations",
        f"{paid} / {paid_events} / {confirmations}",
    )
    assert CANCEL_NOTICE  # (imported for symmetry with the cancel counts)
