"""The desk and customer websockets, against the real Redis channel layer and committed PostgreSQL data."""

import asyncio

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client
from django.urls import reverse

from chatdesk.asgi import application
from chatdesk.channel_groups import groups_with_members
from desk import access, actions, realtime
from desk.consumers import CLOSE_FORBIDDEN
from tests.factories import AgentFactory, ConversationFactory, SupervisorFactory
from tests.websockets import (
    ORIGIN,
    assert_refused,
    connect,
    drain,
    handshake,
    receive_until,
    redis_group_round_trips,
    session_cookie,
    trips_to_the_sync_thread,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_anonymous_socket_is_refused():
    await assert_refused(WebsocketCommunicator(application, "/ws/desk/", headers=[ORIGIN]))


async def test_a_foreign_origin_is_refused():
    agent = await database_sync_to_async(AgentFactory)()
    communicator = WebsocketCommunicator(
        application, "/ws/desk/", headers=[(b"origin", b"https://evil.example"), await session_cookie(agent)]
    )
    connected, _ = await handshake(communicator)
    assert not connected


async def test_an_agent_cannot_open_another_agents_conversation():
    alice, bob = await database_sync_to_async(lambda: (AgentFactory(), AgentFactory()))()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    await assert_refused(
        WebsocketCommunicator(
            application,
            f"/ws/desk/conversations/{conversation.pk}/",
            headers=[ORIGIN, await session_cookie(bob)],
        )
    )


async def test_an_agent_receives_only_events_of_their_own_conversations():
    alice, bob = await database_sync_to_async(lambda: (AgentFactory(), AgentFactory()))()
    alices, bobs = await database_sync_to_async(
        lambda: (
            ConversationFactory(status="open", assigned_agent=alice),
            ConversationFactory(status="open", assigned_agent=bob),
        )
    )()
    socket = await connect("/ws/desk/", await session_cookie(alice))
    await drain(socket)

    await database_sync_to_async(actions.receive_customer_message)(bobs.pk, body="for bob")
    assert await drain(socket) == []

    await database_sync_to_async(actions.receive_customer_message)(alices.pk, body="for alice")
    assert {"op": "refresh", "target": "conversation-list"} in await drain(socket)
    await socket.disconnect()


async def test_a_new_chat_reaches_every_agents_queue_and_leaves_it_when_accepted():
    alice, bob = await database_sync_to_async(lambda: (AgentFactory(), AgentFactory()))()
    alice_socket = await connect("/ws/desk/", await session_cookie(alice))
    bob_socket = await connect("/ws/desk/", await session_cookie(bob))
    await drain(alice_socket), await drain(bob_socket)

    conversation = await database_sync_to_async(actions.start_conversation)(
        name="Thandi", phone="+27821234567", body="Hello"
    )
    for socket in (alice_socket, bob_socket):
        assert {"op": "refresh", "target": "conversation-list"} in await drain(socket)

    await database_sync_to_async(actions.accept_conversation)(conversation.pk, agent=alice)
    assert {"op": "refresh", "target": "conversation-list"} in await drain(bob_socket)
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_a_conversation_page_gets_new_messages_rendered_and_escaped():
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    socket = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    await drain(socket)

    await database_sync_to_async(actions.receive_customer_message)(
        conversation.pk, body="<script>alert(1)</script>"
    )

    op = await receive_until(socket, lambda op: op.get("container") == f"transcript-{conversation.pk}")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in op["html"]
    assert "<script>" not in op["html"]
    await socket.disconnect()


async def test_messages_sent_while_disconnected_are_in_the_snapshot_after_reconnecting():
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    cookie = await session_cookie(alice)
    path = f"/ws/desk/conversations/{conversation.pk}/"
    socket = await connect(path, cookie)
    await socket.disconnect()

    await database_sync_to_async(actions.receive_customer_message)(
        conversation.pk, body="while you were away"
    )

    socket = await connect(path, cookie)
    snapshot = await drain(socket)
    transcript = next(op for op in snapshot if op["op"] == "replace")
    assert "while you were away" in transcript["html"]
    await socket.disconnect()


async def test_pushes_carry_the_current_version_so_a_stale_one_can_be_ignored():
    """Every push re-reads the row: a late hint still carries the newest version, never an older one."""
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="pending")
    socket = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    await drain(socket)

    accepted = await database_sync_to_async(actions.accept_conversation)(conversation.pk, agent=alice)
    await database_sync_to_async(actions.close_conversation)(conversation.pk, agent=alice)
    closed_version = (
        await database_sync_to_async(lambda: type(accepted).objects.get(pk=accepted.pk))()
    ).version

    headers = [
        op for op in await drain(socket) if f"conversation-header-{conversation.pk}" in op.get("html", "")
    ]
    assert headers, "no header pushes"
    assert all(f'data-version="{closed_version}"' in op["html"] for op in headers)
    await socket.disconnect()


async def test_a_supervisor_receives_read_only_events_of_every_conversation():
    alice, sam = await database_sync_to_async(lambda: (AgentFactory(), SupervisorFactory()))()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    socket = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(sam))
    snapshot = await drain(socket)
    assert not any(
        "Accept chat" in op.get("html", "") or "Close chat" in op.get("html", "") for op in snapshot
    )

    await database_sync_to_async(actions.receive_customer_message)(conversation.pk, body="hello")
    op = await receive_until(socket, lambda op: op.get("container") == f"transcript-{conversation.pk}")
    assert "hello" in op["html"]
    await socket.disconnect()


async def test_the_customer_socket_is_authorised_by_its_token_only():
    conversation = await database_sync_to_async(ConversationFactory)()
    await assert_refused(WebsocketCommunicator(application, "/ws/chat/not-a-token/", headers=[ORIGIN]))

    socket = await connect(f"/ws/chat/{conversation.customer_token}/")
    await drain(socket)
    await database_sync_to_async(actions.receive_customer_message)(conversation.pk, body="my own message")
    op = await receive_until(socket, lambda op: op.get("container") == f"transcript-{conversation.pk}")
    assert "You" in op["html"]
    await socket.disconnect()


async def closed(socket) -> bool:
    """The server closed the socket (with or without a ping first), skipping ops sent before the close."""
    async with asyncio.timeout(5):
        while True:
            output = await socket.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                return output["code"] == CLOSE_FORBIDDEN


async def still_open(socket) -> bool:
    await socket.send_json_to({"type": "ping"})
    return (await drain(socket))[-1:] == [{"op": "pong"}]


def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def test_deactivating_a_user_through_the_app_closes_their_open_desk_at_once():
    alice = await database_sync_to_async(AgentFactory)()
    socket = await connect("/ws/desk/", await session_cookie(alice))
    await drain(socket)

    def deactivate():
        alice.is_active = False
        alice.save()

    await database_sync_to_async(deactivate)()

    assert await closed(socket)


async def test_a_password_change_elsewhere_closes_the_open_desk_at_once():
    """Changing the password signs out every other session (Django's session hash), open desks included."""
    alice = await database_sync_to_async(AgentFactory)()
    socket = await connect("/ws/desk/", await session_cookie(alice))
    await drain(socket)

    def change_password():
        alice.set_password("a-new-passphrase-9")
        alice.save()

    await database_sync_to_async(change_password)()

    assert await closed(socket)


async def test_logging_out_closes_that_sessions_desk_and_leaves_the_users_other_sessions_open():
    alice = await database_sync_to_async(AgentFactory)()
    laptop, phone = await database_sync_to_async(lambda: (logged_in_client(alice), logged_in_client(alice)))()
    laptop_socket = await connect(
        "/ws/desk/", (b"cookie", f"sessionid={laptop.cookies['sessionid'].value}".encode())
    )
    phone_socket = await connect(
        "/ws/desk/", (b"cookie", f"sessionid={phone.cookies['sessionid'].value}".encode())
    )
    await drain(laptop_socket)
    await drain(phone_socket)
    try:
        response = await database_sync_to_async(laptop.post)(reverse("logout"))
        assert response.status_code == 302

        assert await closed(laptop_socket)
        assert await still_open(phone_socket)
    finally:
        await phone_socket.disconnect()


async def test_losing_the_agent_role_closes_the_open_desk_at_once():
    alice = await database_sync_to_async(AgentFactory)()
    socket = await connect("/ws/desk/", await session_cookie(alice))
    await drain(socket)

    await database_sync_to_async(lambda: Group.objects.get(name=access.AGENTS_GROUP).user_set.remove(alice))()

    assert await closed(socket)


async def test_a_supervisor_made_an_agent_stops_receiving_every_conversation_at_once():
    sam = await database_sync_to_async(SupervisorFactory)()
    someone_elses = await database_sync_to_async(
        lambda: ConversationFactory(status="open", assigned_agent=AgentFactory())
    )()
    socket = await connect("/ws/desk/", await session_cookie(sam))
    await drain(socket)

    @transaction.atomic
    def demote():
        sam.groups.add(Group.objects.get_or_create(name=access.AGENTS_GROUP)[0])
        sam.groups.remove(Group.objects.get(name=access.SUPERVISORS_GROUP))

    await database_sync_to_async(demote)()
    await drain(socket)
    await database_sync_to_async(actions.receive_customer_message)(someone_elses.pk, body="not for sam now")

    try:
        assert await drain(socket) == []
        assert await still_open(socket)
    finally:
        await socket.disconnect()


async def test_an_agent_whose_open_conversation_is_taken_stops_receiving_its_messages_at_once():
    alice, bob = await database_sync_to_async(lambda: (AgentFactory(), AgentFactory()))()
    conversation = await database_sync_to_async(ConversationFactory)(status="pending", assigned_agent=None)
    socket = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    await drain(socket)

    await database_sync_to_async(actions.accept_conversation)(conversation.pk, agent=bob)
    taken = await drain(socket)
    await database_sync_to_async(actions.receive_customer_message)(conversation.pk, body="for bob only")

    try:
        assert {"op": "refresh", "target": "conversation-pane"} in taken
        assert await drain(socket) == []
    finally:
        await socket.disconnect()


@pytest.mark.parametrize(
    "behind_the_apps_back",
    [
        pytest.param(
            lambda user: type(user).objects.filter(pk=user.pk).update(is_active=False), id="deactivated"
        ),
        pytest.param(lambda user: Session.objects.all().delete(), id="session-deleted"),
    ],
)
async def test_a_change_made_behind_the_apps_back_closes_the_desk_at_the_periodic_recheck(
    behind_the_apps_back, settings
):
    """Raw SQL and expired sessions send no hint: a ping re-reads the session and user when the recheck
    interval has passed (here at once)."""
    settings.DESK_ACCESS_RECHECK_SECONDS = 0
    alice = await database_sync_to_async(AgentFactory)()
    socket = await connect("/ws/desk/", await session_cookie(alice))
    await drain(socket)

    await database_sync_to_async(behind_the_apps_back)(alice)
    await socket.send_json_to({"type": "ping"})

    assert await closed(socket)


@pytest.mark.parametrize(
    ("page", "recheck_due", "most_trips"),
    [
        ("conversation", False, 1),  # the card versions
        ("list", False, 0),
        ("conversation", True, 1),  # the session, user, role and card versions together
    ],
)
async def test_a_ping_costs_at_most_one_trip_to_the_shared_database_thread(
    page, recheck_due, most_trips, settings, monkeypatch
):
    """Every socket of a process queues its database work on one thread, so an idle desk's ping (every
    25 s) must cost at most one trip there, and none on a list page (docs/performance.md, B1 idle CPU)."""

    settings.DESK_ACCESS_RECHECK_SECONDS = 0 if recheck_due else 300
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    path = f"/ws/desk/conversations/{conversation.pk}/" if page == "conversation" else "/ws/desk/"
    socket = await connect(path, await session_cookie(alice))
    await drain(socket)
    try:
        with trips_to_the_sync_thread(monkeypatch) as trips:
            await socket.send_json_to({"type": "ping", "cards": {}})
            ops = await drain(socket)
    finally:
        await socket.disconnect()

    assert ops[-1] == {"op": "pong"}
    assert len(trips) <= most_trips


@pytest.mark.parametrize("page", ["conversation", "list"])
async def test_a_ping_joins_all_its_groups_again_in_one_round_trip_to_redis(page, monkeypatch, settings):
    """A ping joins the desk's groups again (a Redis flush or `group_expiry` drops members silently: B10,
    scenario 35). 2,000 desks ping 80 times a second, and channels_redis's `group_add` would make two round
    trips per group: the queue, the agent's, the user's, the open conversation's and its cards'."""
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    path = f"/ws/desk/conversations/{conversation.pk}/" if page == "conversation" else "/ws/desk/"
    groups = {realtime.QUEUE_GROUP, realtime.agent_group(alice.pk), realtime.user_group(alice.pk)}
    if page == "conversation":  # and the web process's channel for its cards (desk.card_fanout)
        groups |= {realtime.conversation_group(conversation.pk), realtime.CARDS_GROUP}
    socket = await connect(path, await session_cookie(alice))
    await drain(socket)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # Redis restarted under the open socket
    try:
        with redis_group_round_trips(monkeypatch) as trips:
            await socket.send_json_to({"type": "ping", "cards": {}})
            ops = await drain(socket)
        rejoined = await groups_with_members(get_channel_layer(), groups)
    finally:
        await socket.disconnect()

    assert ops == [{"op": "pong"}]
    assert trips == ["EVAL"]
    assert rejoined == groups


async def test_a_ping_resends_the_cards_newer_than_the_page_shows_before_its_pong():
    """A push the channel layer lost (a worker killed between commit and push, a Redis restart under an open
    socket) is made good at the page's next ping (found by tests/reliability/test_faults.py); a page that
    missed nothing gets only its pong."""
    from payments.lifecycle import Status
    from tests.payments.conftest import make_request

    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    payment_request = await database_sync_to_async(make_request)(
        Status.SENT, agent=alice, conversation=conversation
    )
    socket = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    try:
        await drain(socket)
        # Expired while no push reached this socket
        await database_sync_to_async(type(payment_request).objects.filter(pk=payment_request.pk).update)(
            status=Status.EXPIRED, version=2
        )

        await socket.send_json_to({"type": "ping", "cards": {str(payment_request.pk): 1}})
        ops = await drain(socket)
        await socket.send_json_to({"type": "ping", "cards": {str(payment_request.pk): 2}})
        up_to_date = await drain(socket)
        await socket.send_json_to({"type": "ping", "cards": "not a map"})  # read as: no card shown
        malformed = await drain(socket)
    finally:
        await socket.disconnect()

    assert [op["op"] for op in ops] == ["upsert", "pong"]
    assert f'id="{payment_request.dom_id}"' in ops[0]["html"]
    assert 'data-version="2"' in ops[0]["html"]
    assert 'data-status="expired"' in ops[0]["html"]
    assert up_to_date == [{"op": "pong"}]
    assert [op["op"] for op in malformed] == ["upsert", "pong"]


@pytest.mark.parametrize(
    ("page", "most_trips"),
    [
        ("list", 1),  # the session, user, role and groups
        ("conversation", 2),  # and, after joining its group, the conversation's snapshot
        ("customer chat", 2),  # the token and its guess limit, then the snapshot
    ],
)
async def test_a_connect_costs_at_most_two_trips_to_the_shared_database_thread(page, most_trips, monkeypatch):
    """A deploy reconnects every desk at once, and each trip of each connect queues behind all the others
    (docs/performance.md, B1 and B2): who is asking and what they may join is one trip, not one for the
    auth middleware and another for the groups, and a customer's socket spends none on a user it has not."""
    alice = await database_sync_to_async(AgentFactory)()
    conversation = await database_sync_to_async(ConversationFactory)(status="open", assigned_agent=alice)
    path, headers = {
        "list": ("/ws/desk/", [await session_cookie(alice)]),
        "conversation": (f"/ws/desk/conversations/{conversation.pk}/", [await session_cookie(alice)]),
        "customer chat": (f"/ws/chat/{conversation.customer_token}/", []),
    }[page]

    with trips_to_the_sync_thread(monkeypatch) as trips:
        socket = await connect(path, *headers)
        try:
            ops = await drain(socket)
        finally:
            await socket.disconnect()

    assert ops, "the snapshot"
    assert len(trips) <= most_trips, trips


async def test_a_list_refresh_hint_costs_no_trip_to_the_shared_database_thread(monkeypatch):
    """A new chat hints every agent's list at once: each socket only forwards "refresh", with no trip to the
    thread all the process's sockets share (channels' per-message close_old_connections is skipped)."""
    alice = await database_sync_to_async(AgentFactory)()
    socket = await connect("/ws/desk/", await session_cookie(alice))
    await drain(socket)
    start_conversation = actions.start_conversation
    try:
        with trips_to_the_sync_thread(monkeypatch) as trips:
            await database_sync_to_async(start_conversation)(
                name="Thandi", phone="+27821234567", body="Hello"
            )
            ops = await drain(socket)
    finally:
        await socket.disconnect()

    assert {"op": "refresh", "target": "conversation-list"} in ops
    assert [trip for trip in trips if trip is not start_conversation] == []
