"""Races on real PostgreSQL: separate connections in real threads, released together by a barrier.

Whatever the interleaving, each race has exactly one outcome, a consistent history, and no error page.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from desk.models import Message
from payments import actions, inbox
from payments.lifecycle import Refusal, Status
from payments.models import GatewayWebhookEvent, PaymentEvent, PaymentRequest
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import SITE, make_request, post_webhook, reload, sandbox_event

pytestmark = pytest.mark.django_db(transaction=True)

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"}


def race(*calls):
    """Run the calls at the same instant, each in its own thread with its own database connection."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            barrier.wait(timeout=10)
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(run, call) for call in calls]]


@pytest.fixture
def alice(transactional_db):
    return AgentFactory(username="alice", first_name="Alice", last_name="Agent")


@pytest.fixture
def conversation(alice):
    return ConversationFactory(status="open", assigned_agent=alice)


def test_cancel_and_click_at_the_same_instant_have_exactly_one_winner_200_times(alice, conversation):
    agent_browser = Client()
    agent_browser.force_login(alice)
    winners = Counter()
    for round_number in range(200):
        # Given a fresh link nobody has opened
        token = uuid.uuid4().hex + uuid.uuid4().hex
        payment_request = make_request(Status.SENT, agent=alice, conversation=conversation, token=token)

        # When the agent presses Cancel while the customer's page posts its click
        cancel, click = race(
            lambda pr=payment_request: agent_browser.post(f"/desk/payments/{pr.pk}/cancel/"),
            lambda token=token: Client(headers=BROWSER).post(f"/pay/{token}/open/"),
        )

        # Then both get a page (no error), and exactly one of the two changes happened
        assert cancel.status_code in {200, 409}, round_number
        assert click.status_code == 200, round_number
        after = reload(payment_request)
        events = list(after.events.values_list("to_status", flat=True))
        if cancel.status_code == 200:
            winners["cancel"] += 1
            assert (after.status, events) == (Status.CANCELED, [Status.CANCELED])
            assert "Payment link canceled" in click.content.decode()
        else:
            winners["click"] += 1
            assert (after.status, events) == (Status.CLICKED, [Status.CLICKED])
            assert "The customer has already clicked the link." in cancel.content.decode()
    # And the customer was told of exactly the cancels that happened
    notices = Message.objects.filter(body__endswith="has been canceled by the Agent").count()
    assert notices == winners["cancel"]
    assert sum(winners.values()) == 200


def test_two_cancels_at_once_cancel_once(alice, conversation):
    for _ in range(25):
        payment_request = make_request(Status.SENT, agent=alice, conversation=conversation)
        results = race(*[lambda pr=payment_request: actions.cancel_payment_request(pr.pk, agent=alice)] * 2)
        assert sorted(str(result.refusal) for result in results) == ["None", Refusal.ALREADY_CANCELED]
        assert payment_request.events.count() == 1
        assert (
            Message.objects.filter(
                body=f"The {payment_request.order_number} has been canceled by the Agent"
            ).count()
            == 1
        )


def stored_event(body: bytes) -> int:
    return GatewayWebhookEvent.objects.get(gateway="sandbox", event_id=json.loads(body)["id"]).pk


def test_the_same_webhook_delivered_three_times_at_once_pays_once(alice, conversation):
    # Three deliveries at once store the event once; applying it three times at once (a redelivered drain
    # beside the first) applies it once: the inbox row's lock decides.
    for _ in range(10):
        payment_request = make_request(Status.CLICKED, agent=alice, conversation=conversation)
        body = sandbox_event(payment_request)
        responses = race(*[lambda body=body: post_webhook(Client(), body)] * 3)
        assert [response.status_code for response in responses] == [200, 200, 200]
        assert sorted(response.json()["duplicate"] for response in responses) == [False, True, True]
        stored = stored_event(body)
        outcomes = race(*[lambda pk=stored: inbox.process_stored_event(pk)] * 3)
        assert sorted(outcomes) == ["applied", "duplicate", "duplicate"]
        assert reload(payment_request).status == Status.PAID
        assert payment_request.events.filter(to_status=Status.PAID).count() == 1
        assert GatewayWebhookEvent.objects.filter(payment_request=payment_request).count() == 1
    assert Message.objects.filter(body__startswith="Payment received").count() == 10


def test_three_drains_at_once_share_a_burst_and_apply_each_event_once(alice, conversation):
    # A burst stored while the worker was busy, then three worker processes each start a drain at once
    burst = [make_request(Status.CLICKED, agent=alice, conversation=conversation) for _ in range(45)]
    for payment_request in burst:
        post_webhook(Client(), sandbox_event(payment_request))
    processed = race(*[inbox.drain] * 3)
    # Each event was claimed by one drain only: the three together processed the 45 once
    assert sum(processed) == 45
    assert GatewayWebhookEvent.objects.filter(outcome="applied").count() == 45
    paid = PaymentEvent.objects.filter(to_status=Status.PAID)
    assert paid.count() == 45
    assert paid.values("payment_request").distinct().count() == 45


def test_a_late_decline_racing_the_payment_never_undoes_it(alice, conversation):
    for _ in range(10):
        payment_request = make_request(Status.CLICKED, agent=alice, conversation=conversation)
        paid = sandbox_event(payment_request)
        declined = sandbox_event(payment_request, kind="payment.failed", failure_message="Declined")
        race(*[lambda body=body: post_webhook(Client(), body) for body in (declined, paid)])
        stored = [stored_event(body) for body in (declined, paid)]
        race(*[lambda pk=pk: inbox.process_stored_event(pk) for pk in stored])
        assert reload(payment_request).status == Status.PAID
        assert payment_request.events.filter(to_status=Status.PAID).count() == 1


def test_two_sweeps_at_once_expire_each_request_exactly_once(alice, conversation):
    past = timezone.now() - timedelta(seconds=1)
    for _ in range(300):
        make_request(Status.SENT, agent=alice, conversation=conversation, click_deadline=past)
    counts = race(*[lambda: actions.expire_due_payment_requests(batch_size=40)] * 4)
    assert sum(counts) == 300
    assert PaymentRequest.objects.filter(status=Status.EXPIRED).count() == 300
    assert PaymentEvent.objects.filter(to_status=Status.EXPIRED).count() == 300


def test_a_double_clicked_send_creates_one_request(alice, conversation):
    key = uuid.uuid4().hex
    fields = dict(
        agent=alice,
        phone="+27821234567",
        amount=Decimal("10.00"),
        currency="ZAR",
        order_number="A-1",
        description="",
        idempotency_key=key,
        site_url=SITE,
    )
    results = race(*[lambda: actions.send_payment_request(conversation.pk, **fields)] * 5)
    assert len({result.pk for result in results}) == 1
    assert PaymentRequest.objects.count() == 1
    assert Message.objects.filter(kind=Message.Kind.PAYMENT).count() == 1


def test_two_agents_sending_for_one_order_at_once_get_one_live_request(alice, conversation):
    bob = AgentFactory(username="bob", first_name="Bob", last_name="Agent")
    bobs = ConversationFactory(status="open", assigned_agent=bob)

    def attempt(agent, chat):
        try:
            return actions.send_payment_request(
                chat.pk,
                agent=agent,
                phone="+27821234567",
                amount=Decimal("10.00"),
                currency="ZAR",
                order_number="SHARED-9",
                description="",
                idempotency_key=uuid.uuid4().hex,
                site_url=SITE,
            )
        except actions.SendRefused as refused:
            return refused

    results = race(lambda: attempt(alice, conversation), lambda: attempt(bob, bobs))
    refused = [result for result in results if isinstance(result, actions.SendRefused)]
    assert len(refused) == 1
    assert "Order SHARED-9 already has a live payment request (sent by" in refused[0].message
    assert PaymentRequest.objects.filter(order_number="SHARED-9").count() == 1
    assert Message.objects.filter(kind=Message.Kind.PAYMENT).count() == 1
