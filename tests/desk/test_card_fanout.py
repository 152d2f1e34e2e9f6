"""desk.card_fanout: one channel per web process brings the payment cards of the conversations it shows."""

import asyncio
from datetime import timedelta

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from chatdesk.channel_groups import groups_with_members
from desk.card_fanout import CardFanout
from desk.realtime import CARDS_GROUP
from payments import realtime, tasks
from payments.lifecycle import Status
from tests.factories import AgentFactory, ConversationFactory, SupervisorFactory
from tests.payments.conftest import make_request
from tests.websockets import connect, drain, groups_sent_to, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


def card_ids(ops: list[dict]) -> list[int]:
    return sorted(
        int(op["html"].split('id="payment-request-', 1)[1].split('"', 1)[0])
        for op in ops
        if op["op"] == "upsert" and 'id="payment-request-' in op["html"]
    )


def overdue(agent, conversation, count: int) -> list[int]:
    past = timezone.now() - timedelta(seconds=1)
    return [
        make_request(Status.SENT, agent=agent, conversation=conversation, click_deadline=past).pk
        for _ in range(count)
    ]


def sweep() -> int:
    return tasks.expire_due_payment_requests_task.apply().get()


async def cards_group_has_a_member() -> bool:
    return CARDS_GROUP in await groups_with_members(get_channel_layer(), [CARDS_GROUP])


async def test_a_sweep_across_conversations_reaches_each_desk_with_its_own_cards_in_one_message(monkeypatch):
    alice, bob = [await database_sync_to_async(AgentFactory)() for _ in range(2)]
    sam = await database_sync_to_async(SupervisorFactory)()
    alices, bobs = [
        await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=agent)
        for agent in (alice, bob)
    ]
    alices_due = await database_sync_to_async(overdue)(alice, alices, 3)
    bobs_due = await database_sync_to_async(overdue)(bob, bobs, 2)
    alices_page = await connect(f"/ws/desk/conversations/{alices.pk}/", await session_cookie(alice))
    bobs_page = await connect(f"/ws/desk/conversations/{bobs.pk}/", await session_cookie(bob))
    sams_transcript = await connect(f"/ws/desk/conversations/{alices.pk}/", await session_cookie(sam))
    pages = [alices_page, bobs_page, sams_transcript]
    sent_to = groups_sent_to(get_channel_layer(), monkeypatch)
    try:
        for page in pages:
            await drain(page)

        assert await database_sync_to_async(sweep)() == 5

        alices_ops, bobs_ops, sams_ops = [await drain(page) for page in pages]
    finally:
        for page in pages:
            await page.disconnect()

    assert card_ids(alices_ops) == sorted(alices_due)
    assert card_ids(sams_ops) == sorted(alices_due)
    assert card_ids(bobs_ops) == sorted(bobs_due)
    assert sent_to.count(CARDS_GROUP) == 1


async def test_the_fanout_stops_with_the_last_desk_showing_a_conversation_and_starts_again_with_the_next():
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    cookie = await session_cookie(alice)
    path = f"/ws/desk/conversations/{conversation.pk}/"
    list_page = await connect("/ws/desk/", cookie)  # shows no conversation: no cards to bring
    assert not await cards_group_has_a_member()
    first, second = await connect(path, cookie), await connect(path, cookie)
    assert await cards_group_has_a_member()
    await first.disconnect()
    assert await cards_group_has_a_member()
    await second.disconnect()
    assert not await cards_group_has_a_member()

    again = await connect(path, cookie)
    try:
        await drain(again)
        (due,) = await database_sync_to_async(overdue)(alice, conversation, 1)
        assert await database_sync_to_async(sweep)() == 1
        assert card_ids(await drain(again)) == [due]
    finally:
        await again.disconnect()
        await list_page.disconnect()


async def test_after_a_redis_flush_the_first_ping_brings_the_cards_back(settings):
    """Scenario 35: a flush drops every group membership, the fan-out's too; a ping joins it again along with
    the desk's own groups, so the next change is pushed, not only made good at a later ping."""
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    page = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    try:
        await drain(page)
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
        await page.send_json_to({"type": "ping", "cards": {}})
        assert await drain(page) == [{"op": "pong"}]

        (due,) = await database_sync_to_async(overdue)(alice, conversation, 1)
        assert await database_sync_to_async(sweep)() == 1
        pushed = await drain(page)
    finally:
        await page.disconnect()

    assert card_ids(pushed) == [due]


async def test_a_socket_that_fails_keeps_the_cards_from_no_other_and_no_later_message():
    class ClosedUnderfoot:
        async def send_cards(self, cards: list[dict]) -> None:
            raise ConnectionError("the socket went away")

    class Page:
        def __init__(self) -> None:
            self.received: asyncio.Queue[list[dict]] = asyncio.Queue()

        async def send_cards(self, cards: list[dict]) -> None:
            await self.received.put(cards)

    fanout, closed, page = CardFanout(), ClosedUnderfoot(), Page()
    await fanout.show(closed, 1)
    await fanout.show(page, 1)
    try:
        for card_id in (7, 8):
            cards = {"type": realtime.CARDS_EVENT_TYPE, "conversations": [[1, [{"id": card_id}]]]}
            await get_channel_layer().group_send(CARDS_GROUP, cards)
        received = [await asyncio.wait_for(page.received.get(), timeout=5) for _ in range(2)]
    finally:
        await fanout.hide(closed)
        await fanout.hide(page)

    assert received == [[{"id": 7}], [{"id": 8}]]
    assert not await cards_group_has_a_member()
