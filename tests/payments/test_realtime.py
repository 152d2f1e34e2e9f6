"""Live cards over the real Redis channel layer: a change made anywhere (a Celery task, a webhook, a tab)
reaches every socket showing the conversation, and a (re)connect starts from the current state."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from chatdesk.asgi import application
from desk.consumers import CLOSE_FORBIDDEN
from payments import actions, tasks
from payments.lifecycle import Status
from tests.factories import AgentFactory, ConversationFactory, SupervisorFactory
from tests.payments.conftest import make_request, send, token_of
from tests.websockets import ORIGIN, connect, drain, handshake, session_cookie, trips_to_the_sync_thread

pytestmark = pytest.mark.django_db(transaction=True)


async def next_card(communicator, payment_request_id: int, timeout: float = 5) -> str:
    """The html of the next push that carries this payment card (skipping list refreshes and other ops)."""
    async with asyncio.timeout(timeout):
        while True:
            op = await communicator.receive_json_from(timeout=timeout)
            if f'id="payment-request-{payment_request_id}"' in op.get("html", ""):
                return op["html"]


def card_status(html: str, payment_request_id: int) -> tuple[str, int]:
    card = re.search(rf'<article id="payment-request-{payment_request_id}"[^>]*>', html)[0]
    return re.search(r'data-status="(\w+)"', card)[1], int(re.search(r'data-version="(\d+)"', card)[1])


@pytest.fixture
def people(transactional_db):
    alice = AgentFactory(username="alice", first_name="Alice", last_name="Agent")
    conversation = ConversationFactory(status="open", assigned_agent=alice)
    return alice, conversation


async def test_an_expiry_made_by_the_celery_task_reaches_every_tab_of_the_agent(people):
    alice, conversation = people
    payment_request = await database_sync_to_async(make_request)(
        Status.SENT,
        agent=alice,
        conversation=conversation,
        click_deadline=timezone.now() - timedelta(seconds=1),
    )
    cookie = await session_cookie(alice)
    tabs = [await connect(f"/ws/desk/conversations/{conversation.pk}/", cookie) for _ in range(2)]
    for tab in tabs:  # the snapshot already reads the overdue request as expired (version unchanged)
        assert card_status(await next_card(tab, payment_request.pk), payment_request.pk) == ("expired", 1)

    # When beat's sweep task runs (in the worker's way: the task, not the action)
    assert await database_sync_to_async(lambda: tasks.expire_due_payment_requests_task.apply().get())() == 1

    # Then every tab gets the card, now stored as expired with a higher version, without a Cancel button
    for tab in tabs:
        html = await next_card(tab, payment_request.pk)
        assert card_status(html, payment_request.pk) == ("expired", 2)
        assert "Cancel payment" not in html
        await tab.disconnect()


async def test_a_sweep_pushes_a_conversations_due_cards_together_and_the_supervisor_list_once(people):
    alice, conversation = people
    sam = await database_sync_to_async(SupervisorFactory)()
    overdue = timezone.now() - timedelta(seconds=1)
    requests = [
        await database_sync_to_async(make_request)(
            Status.SENT, agent=alice, conversation=conversation, click_deadline=overdue
        )
        for _ in range(3)
    ]
    page = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    supervisor = await connect("/ws/desk/", await session_cookie(sam))
    try:
        await drain(page)
        await drain(supervisor)

        assert (
            await database_sync_to_async(lambda: tasks.expire_due_payment_requests_task.apply().get())() == 3
        )

        page_ops = await drain(page)
        supervisor_ops = await drain(supervisor)
    finally:
        await page.disconnect()
        await supervisor.disconnect()
    # The page gets each card once, as stored now
    cards = [op["html"] for op in page_ops if op["op"] == "upsert"]
    assert len(cards) == 3
    for payment_request, html in zip(requests, cards, strict=True):
        assert card_status(html, payment_request.pk) == ("expired", 2)
    # The supervisor's list is re-read once, each open transaction's detail once
    targets = [op["target"] for op in supervisor_ops if op["op"] == "refresh"]
    assert targets.count("transactions") == 1
    assert sorted(t for t in targets if t != "transactions") == sorted(
        f"transaction-{payment_request.pk}-detail" for payment_request in requests
    )


async def test_a_click_pushes_clicked_to_the_agent_and_the_pay_page(people):
    alice, conversation = people
    payment_request = await database_sync_to_async(send)(conversation, alice)
    token = await database_sync_to_async(token_of)(payment_request)
    desk = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    html = await next_card(desk, payment_request.pk)
    assert card_status(html, payment_request.pk) == ("sent", 1)
    assert "Cancel payment" in html
    pay_page = await connect(f"/ws/pay/{token}/")
    snapshot = await pay_page.receive_json_from(timeout=5)
    assert 'data-mode="sent"' in snapshot["html"]

    await database_sync_to_async(
        lambda: Client(headers={"User-Agent": "Mozilla/5.0"}).post(f"/pay/{token}/open/")
    )()

    html = await next_card(desk, payment_request.pk)
    assert card_status(html, payment_request.pk)[0] == "clicked"
    assert "Cancel payment" not in html
    async with asyncio.timeout(5):
        while 'data-mode="clicked-ready"' not in (op := await pay_page.receive_json_from(timeout=5)).get(
            "html", ""
        ):
            pass
    assert "Card number" in op["html"]
    await desk.disconnect()
    await pay_page.disconnect()


async def test_the_pay_page_notices_a_cancel_without_a_reload(people):
    alice, conversation = people
    payment_request = await database_sync_to_async(send)(conversation, alice)
    pay_page = await connect(f"/ws/pay/{await database_sync_to_async(token_of)(payment_request)}/")
    await pay_page.receive_json_from(timeout=5)  # snapshot

    await database_sync_to_async(actions.cancel_payment_request)(payment_request.pk, agent=alice)

    op = await pay_page.receive_json_from(timeout=5)
    assert op["op"] == "upsert"
    assert 'id="payment"' in op["html"]
    assert "Payment link canceled" in op["html"]
    assert 'data-mode="canceled"' in op["html"]
    await pay_page.disconnect()


async def test_a_pay_page_connect_costs_at_most_two_trips_to_the_shared_database_thread(people, monkeypatch):
    """The token and its guess limit in one trip, the snapshot in another; none for a user the customer has
    not (tests/desk/test_consumers.py has the desk's figures, and why they matter)."""
    alice, conversation = people
    payment_request = await database_sync_to_async(send)(conversation, alice)
    token = await database_sync_to_async(token_of)(payment_request)

    with trips_to_the_sync_thread(monkeypatch) as trips:
        pay_page = await connect(f"/ws/pay/{token}/")
        try:
            snapshot = await pay_page.receive_json_from(timeout=5)
        finally:
            await pay_page.disconnect()

    assert 'data-mode="sent"' in snapshot["html"]
    assert len(trips) <= 2, trips


async def test_a_reconnect_starts_from_the_current_cards(people):
    alice, conversation = people
    payment_request = await database_sync_to_async(send)(conversation, alice)
    cookie = await session_cookie(alice)
    desk = await connect(f"/ws/desk/conversations/{conversation.pk}/", cookie)
    await next_card(desk, payment_request.pk)
    await desk.disconnect()

    # While the socket is away, the request is canceled
    await database_sync_to_async(actions.cancel_payment_request)(payment_request.pk, agent=alice)

    # On reconnect the snapshot replaces the transcript with the current card
    desk = await connect(f"/ws/desk/conversations/{conversation.pk}/", cookie)
    async with asyncio.timeout(5):
        while (op := await desk.receive_json_from(timeout=5))["op"] != "replace":
            pass
    assert card_status(op["html"], payment_request.pk) == ("canceled", 2)
    assert "The" in op["html"]
    assert "has been canceled by the Agent" in op["html"]
    await desk.disconnect()


async def test_a_supervisor_watching_the_chat_sees_the_card_without_a_cancel_button(people):
    alice, conversation = people
    sam = await database_sync_to_async(SupervisorFactory)(username="sam")
    payment_request = await database_sync_to_async(send)(conversation, alice)
    watching = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(sam))
    await next_card(watching, payment_request.pk)

    await database_sync_to_async(actions.register_click)(payment_request.pk)

    html = await next_card(watching, payment_request.pk)
    assert card_status(html, payment_request.pk)[0] == "clicked"
    assert "Cancel payment" not in html
    await watching.disconnect()


async def test_a_pushed_card_offers_cancel_to_the_agent_who_sent_it_and_to_no_one_else(people):
    """The card arrives rendered by the change, once for all viewers: only its sender gets the button."""
    alice, conversation = people
    sam = await database_sync_to_async(SupervisorFactory)(username="sam")
    page = f"/ws/desk/conversations/{conversation.pk}/"
    alices_page = await connect(page, await session_cookie(alice))
    sams_page = await connect(page, await session_cookie(sam))
    await drain(alices_page)
    await drain(sams_page)

    payment_request = await database_sync_to_async(send)(conversation, alice)

    alices_card = await next_card(alices_page, payment_request.pk)
    sams_card = await next_card(sams_page, payment_request.pk)
    assert card_status(alices_card, payment_request.pk) == ("sent", 1)
    assert "Cancel payment" in alices_card
    assert card_status(sams_card, payment_request.pk) == ("sent", 1)
    assert "Cancel payment" not in sams_card
    await alices_page.disconnect()
    await sams_page.disconnect()


async def test_a_pushed_card_costs_the_websocket_process_no_trip_to_its_database_thread(people, monkeypatch):
    """200 changes a second to open conversations must not queue 200 re-reads and renders a second on the
    thread every socket of the process shares: the card arrives rendered, and the socket forwards it."""
    alice, conversation = people
    payment_request = await database_sync_to_async(make_request)(
        Status.CLICKED, agent=alice, conversation=conversation
    )
    page = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    await drain(page)
    record_attempt = actions.record_payment_attempt
    try:
        with trips_to_the_sync_thread(monkeypatch) as trips:
            await database_sync_to_async(record_attempt)(payment_request.pk, payment_method={"brand": "visa"})
            html = await next_card(page, payment_request.pk)
    finally:
        await page.disconnect()

    assert card_status(html, payment_request.pk) == ("clicked", 2)
    assert [trip for trip in trips if trip is not record_attempt] == []


async def test_other_agents_hear_nothing_and_unknown_pay_tokens_are_refused(people):
    alice, conversation = people
    bob = await database_sync_to_async(AgentFactory)(username="bob")
    bobs = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=bob)
    payment_request = await database_sync_to_async(send)(conversation, alice)
    bobs_socket = await connect(f"/ws/desk/conversations/{bobs.pk}/", await session_cookie(bob))
    while not await bobs_socket.receive_nothing(timeout=0.3):
        await bobs_socket.receive_json_from()

    await database_sync_to_async(actions.cancel_payment_request)(payment_request.pk, agent=alice)

    while not await bobs_socket.receive_nothing(timeout=0.5):
        op = await bobs_socket.receive_json_from()
        assert "payment-request" not in op.get("html", "")
    await bobs_socket.disconnect()

    refused = WebsocketCommunicator(application, "/ws/pay/not-a-token/", headers=[ORIGIN])
    assert await handshake(refused) == (False, CLOSE_FORBIDDEN)
