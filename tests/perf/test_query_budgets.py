"""Regression guard for the hot paths measured by bench/ (issue 7): counts, never clocks, so it cannot flake.

What makes a card slow at scale is how much work each unit does, and that is deterministic: SQL queries per
transition, per card render and per webhook; channel-layer sends per change; event-loop hops
(`chatdesk.event_loop.run_from_sync`) per unit of work. The budgets are today's counts;
an improvement passes, a regression fails here instead of in `make bench`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chatdesk import event_loop
from desk import actions as desk_actions
from desk.consumers import _conversation_ops
from desk.realtime import CARDS_GROUP, conversation_group
from payments import actions, inbox, realtime, tasks
from payments.lifecycle import Status
from payments.models import PaymentRequest
from tests.factories import ConversationFactory, MessageFactory
from tests.payments.conftest import make_request, post_webhook, queued_task_names, sandbox_event
from tests.websockets import groups_sent_to

pytestmark = pytest.mark.django_db
CARDS = realtime.CARDS_EVENT_TYPE

# Budgets (today's counts; lower them when a change makes a path cheaper).
TRANSITION_QUERIES = 6  # lock, update, history insert, + the test transaction's savepoints
CARD_RENDER_QUERIES = 1  # the publisher renders the changed cards: whether money waits on the closed ones
# A ping whose page missed pushes: the conversation's card versions, the stale cards, whether money waits on
# the closed ones (on the websocket process's one database thread, where a backlog of pushes makes many).
PING_RESEND_QUERIES = 3
# The webhook's request: one INSERT … ON CONFLICT DO NOTHING, committing by itself (spec C3 #28: no more).
WEBHOOK_REQUEST_QUERIES = 1
# Applying one stored event: read the row, lock the request and the row, update, history, confirmation
# message, its conversation, the integrations outbox (api.outbox): which webhook endpoints subscribe to the
# event; and the pushed card's money-waiting note, read once where each open page's socket used to read it.
WEBHOOK_APPLY_QUERIES = 17
# A drain's claim of a batch (select for update skip locked, update, + the savepoints), and its last look,
# which finds nothing left.
DRAIN_CLAIM_QUERIES = 4
DRAIN_FINDS_NOTHING_QUERIES = 3
# A message posted to a conversation (an agent's reply): lock the conversation (with its customer), insert the
# message, bump the version on the locked row, + the test transaction's savepoints. No re-read.
REPLY_QUERIES = 5
# per sweep batch, whatever its size: the two due-queries, one update, one history insert, the outbox's
# subscriptions, the expired cards' money-waiting notes, and the test transaction's savepoints
SWEEP_QUERIES = 8
GROUPS_PER_CHANGE = 3  # the web processes (the card for the desk pages), the supervisors, the pay page


class CountingLayer:
    """Stands in for the channel layer: counts group sends and the event-loop hops that carry them."""

    def __init__(self) -> None:
        self.sends: list[tuple[str, str]] = []
        self.events: list[tuple[str, dict]] = []
        self.hops = 0

    async def group_send(self, group: str, event: dict) -> None:
        self.sends.append((group, event["type"]))
        self.events.append((group, event))


@pytest.fixture
def layer(monkeypatch) -> CountingLayer:
    layer = CountingLayer()

    run_from_sync = event_loop.run_from_sync

    def counting_run_from_sync(function):
        layer.hops += 1
        return run_from_sync(function)

    monkeypatch.setattr(event_loop, "run_from_sync", counting_run_from_sync)
    for module in ("desk.realtime", "payments.realtime"):
        monkeypatch.setattr(f"{module}.get_channel_layer", lambda: layer)
    return layer


def test_a_transition_costs_a_few_queries_one_hop_and_one_send_per_group(
    layer, django_capture_on_commit_callbacks
):
    # Given a clicked request
    payment_request = make_request(Status.CLICKED)
    # When the customer submits a payment (a clicked -> clicked transition, as B3 drives it)
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        result = actions.record_payment_attempt(payment_request.pk, payment_method={"brand": "visa"})
    # Then it wrote within budget and published once, after commit, to each page group
    assert result.ok
    assert len(queries) <= TRANSITION_QUERIES, [q["sql"] for q in queries]
    assert len(layer.sends) == GROUPS_PER_CHANGE
    assert layer.hops == 1


@pytest.mark.parametrize("changed", [1, 12])
def test_the_cards_of_a_change_are_rendered_once_in_one_query_whatever_their_number(
    layer, django_capture_on_commit_callbacks, alice, changed
):
    # Given `changed` paid requests of one conversation (closed: each card says whether money waits on it)
    conversation = ConversationFactory()
    requests = [make_request(Status.PAID, agent=alice, conversation=conversation) for _ in range(changed)]
    # When one unit of work publishes them
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        realtime.publish_payment_requests_changed(requests)
    # Then the conversation's pages get every card rendered, read in one query, not one per card or per page
    (event,) = [event for group, event in layer.events if group == CARDS_GROUP]
    ((shown_in, hints),) = event["conversations"]
    assert shown_in == conversation.pk
    cards = zip(requests, hints, strict=True)
    assert [card["html"].count(f'id="{pr.dom_id}"') for pr, card in cards] == [1] * changed
    assert len(queries) <= CARD_RENDER_QUERIES, [q["sql"] for q in queries]


@pytest.mark.parametrize("stale", [1, 12])
def test_a_pings_resend_reads_the_cards_a_page_missed_in_the_same_queries_whatever_their_number(alice, stale):
    # Given `stale` expired requests of one conversation whose pushes the page missed
    conversation = ConversationFactory()
    requests = [make_request(Status.EXPIRED, agent=alice, conversation=conversation) for _ in range(stale)]
    # When the page's ping says it shows none of them
    with CaptureQueriesContext(connection) as queries:
        ops = realtime.stale_card_ops(conversation.pk, {}, user=alice, viewer="agent")
    # Then every card is sent again, read in a fixed number of queries, not one more per closed card
    sent_again = zip(requests, ops, strict=True)
    assert [op["html"].count(f'id="{pr.dom_id}"') for pr, op in sent_again] == [1] * stale
    assert len(queries) <= PING_RESEND_QUERIES, [q["sql"] for q in queries]


@pytest.mark.parametrize(("due", "conversations"), [(1, 1), (12, 1), (12, 12)])
def test_the_expiry_sweep_costs_the_same_queries_for_one_due_request_or_many_and_publishes_in_one_hop(
    layer, django_capture_on_commit_callbacks, due, conversations
):
    # Given `due` requests past their click deadline, spread over `conversations`
    past = timezone.now() - timedelta(seconds=1)
    open_conversations = [ConversationFactory() for _ in range(conversations)]
    for n in range(due):
        make_request(
            Status.SENT,
            conversation=open_conversations[n % conversations],
            click_deadline=past,
            sent_at=past - timedelta(minutes=5),
        )
    # When one sweep runs
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        expired = actions.expire_due_payment_requests()
    # Then its queries do not grow with the batch, and all its pushes leave in one event-loop hop
    assert expired == due
    assert len(queries) <= SWEEP_QUERIES, [q["sql"] for q in queries]
    # one message of cards for the web processes and one hint for the supervisors, whatever the batch's size
    # and the number of conversations it spans (each process's one receive loop takes a message at a time),
    # and the customer's own pay page per request
    assert layer.sends.count((CARDS_GROUP, CARDS)) == 1
    assert len(layer.sends) == 2 + due
    assert layer.hops == 1


def test_a_sweep_sends_only_to_the_pages_someone_has_open(
    channel_layer, monkeypatch, django_capture_on_commit_callbacks
):
    # Given three due requests in three conversations, one conversation open on a desk (its web process in
    # the cards' group) and one link open on the customer's phone (the real Redis layer, counting its sends)
    past = timezone.now() - timedelta(seconds=1)
    due = [
        make_request(Status.SENT, click_deadline=past, sent_at=past - timedelta(minutes=5)) for _ in range(3)
    ]
    desk_page = conversation_group(due[0].conversation_id)
    pay_page = realtime.pay_page_group(due[1].pk)

    async def open_pages() -> tuple[str, str]:
        desk, web_process, phone = [await channel_layer.new_channel() for _ in range(3)]
        await channel_layer.group_add(desk_page, desk)
        await channel_layer.group_add(CARDS_GROUP, web_process)
        await channel_layer.group_add(pay_page, phone)
        return web_process, phone

    web_process, phone = async_to_sync(open_pages)()
    sent_to = groups_sent_to(channel_layer, monkeypatch)
    # When the sweep expires them
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.expire_due_payment_requests() == 3
    # Then the web process got the open conversation's card only, the phone its hint, and nothing was sent
    # to the groups nobody is in
    assert sorted(sent_to) == sorted([CARDS_GROUP, pay_page])
    received = async_to_sync(channel_layer.receive)
    ((conversation_id, cards),) = received(web_process)["conversations"]
    assert (conversation_id, [card["id"] for card in cards]) == (due[0].conversation_id, [due[0].pk])
    assert received(phone)["payment_request_id"] == due[1].pk


def test_a_burst_of_signed_webhooks_queues_one_drain_that_applies_them_within_budgets(
    layer, django_capture_on_commit_callbacks
):
    burst = [
        make_request(Status.CLICKED, gateway_reference=f"cs_sbx_budget_{n}")
        for n in range(inbox.CLAIM_BATCH_SIZE)
    ]
    with CaptureQueriesContext(connection) as requests, django_capture_on_commit_callbacks(execute=True):
        for payment_request in burst:
            response = post_webhook(Client(), sandbox_event(payment_request))
            assert response.json() == {"received": True, "duplicate": False}
    assert len(requests) <= len(burst) * WEBHOOK_REQUEST_QUERIES, [q["sql"] for q in requests]
    # One drain is queued for the burst: publishing a task per event cost as much as the rest of the request
    assert queued_task_names() == ["payments.tasks.drain_webhook_inbox_task"]
    # Then a worker runs it: a claim for the batch, each event in its budget, a look that finds no more
    with CaptureQueriesContext(connection) as drain, django_capture_on_commit_callbacks(execute=True):
        assert tasks.drain_webhook_inbox_task.apply().get() == len(burst)
    assert PaymentRequest.objects.filter(status=Status.PAID).count() == len(burst)
    budget = DRAIN_CLAIM_QUERIES + len(burst) * WEBHOOK_APPLY_QUERIES + DRAIN_FINDS_NOTHING_QUERIES
    assert len(drain) <= budget, [q["sql"] for q in drain]
    # Each event: the card change, and the confirmation message in the transcript: one hop each
    assert layer.hops <= 2 * len(burst)


def test_an_agent_reply_costs_a_lock_an_insert_and_an_update(
    layer, django_capture_on_commit_callbacks, alice, alices_conversation
):
    version = alices_conversation.version
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        message = desk_actions.send_agent_message(alices_conversation.pk, agent=alice, body="On its way.")
    assert len(queries) <= REPLY_QUERIES, [q["sql"] for q in queries]
    # The version it published is the row's: the next page to ask sees this message's change
    alices_conversation.refresh_from_db()
    assert message.conversation.version == alices_conversation.version == version + 1
    assert message.conversation.customer == alices_conversation.customer
    assert {group for group, _ in layer.sends} >= {conversation_group(alices_conversation.pk)}


@pytest.mark.parametrize("status", [Status.SENT, Status.EXPIRED, Status.PAID])
def test_a_desk_snapshot_does_not_query_per_payment_card(alice, alices_conversation, status):
    """The (re)connect snapshot of a conversation (B2's resync) must not grow with its payment cards, open or
    closed (a closed card says whether money waits on it)."""

    def snapshot_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            _conversation_ops(alices_conversation, viewer="agent", user=alice, with_transcript=True)
        return len(queries)

    def add_payment_message() -> None:
        message = MessageFactory(conversation=alices_conversation, kind="payment", author=alice)
        make_request(status, conversation=alices_conversation, agent=alice, message=message)

    add_payment_message()
    snapshot_queries()  # warm the per-process caches (template loaders, content types)
    with_one = snapshot_queries()
    for _ in range(5):
        add_payment_message()
    assert snapshot_queries() == with_one
