"""Websocket consumers for the agent/supervisor desk and the customer's web chat.

Pushes are hints: each handler re-reads the row and renders the same partial the page uses (payment cards
arrive rendered by the change itself, `payments.realtime.card_hint`), and every (re)connect starts with a
snapshot of what the page shows. Every element carries a version, so the browser ignores a late or duplicate
push (static/desk/realtime.js).
"""

import json
import time
from importlib import import_module
from types import SimpleNamespace

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib import auth
from django.http import Http404
from django.template.loader import render_to_string

from chatdesk import throttling
from chatdesk.channel_groups import join_groups
from payments import realtime as payments_realtime

from . import access, realtime
from .card_fanout import card_fanout
from .models import Conversation, Message

CLOSE_FORBIDDEN = 4403


class JsonObjectConsumer(AsyncJsonWebsocketConsumer):
    """Takes only JSON objects from clients: any other frame (broken JSON, a list, a string, binary) is
    ignored, where the base class would raise and drop the socket (and log a server error) on every one.

    Channels (4.2+) also runs `close_old_connections` on the sync thread before every handler and after a
    disconnect: a trip per message per socket, on the one thread every socket of the process shares, even
    for a hint that only says "refresh the list" to every agent. Here every database step goes through
    `database_sync_to_async`, which closes old connections around itself, so those trips are skipped."""

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message):
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = json.loads(text_data) if text_data else None
        except ValueError:
            content = None
        if isinstance(content, dict):
            await self.receive_json(content, **kwargs)

    async def join(self, groups: list[str], *others: tuple[str, str]) -> None:
        """Join `groups`, or join them again at a ping (a Redis flush or `group_expiry` drops members
        silently, B10), and any `others` (group, channel), in one round trip to Redis for all of them."""
        await join_groups(self.channel_layer, [(group, self.channel_name) for group in groups] + list(others))


async def refuse(consumer: AsyncJsonWebsocketConsumer) -> None:
    """Turn a socket away with 4403. It is accepted first because a refused handshake reaches the browser
    only as code 1006, and the page must learn that retrying will not help (it shows "Signed out")."""
    await consumer.accept()
    await consumer.close(code=CLOSE_FORBIDDEN)


def _conversation_ops(
    conversation: Conversation, *, viewer: str, user=None, with_transcript: bool
) -> list[dict]:
    """Render the header, composer and (optionally) the whole transcript of a conversation as push ops."""
    context = {
        "conversation": conversation,
        "viewer": viewer,
        "user": user,
        "is_agent": bool(user and access.is_agent(user)),
    }
    template = "desk/_conversation.html" if viewer == "agent" else "chat/_chat.html"
    ops = [
        {"op": "upsert", "html": render_to_string(f"{template}#header", context)},
        {"op": "upsert", "html": render_to_string(f"{template}#composer", context)},
    ]
    if with_transcript:
        context["messages"] = conversation.transcript()
        ops.append({"op": "replace", "html": render_to_string(f"{template}#transcript", context)})
    return ops


MAX_PINGED_CARDS = 1000


def _card_versions(cards) -> dict[int, int]:
    """The {payment request id: version} a ping says its page shows; anything malformed counts as nothing
    shown (every card is sent again), never as an error."""
    if not isinstance(cards, dict) or len(cards) > MAX_PINGED_CARDS:
        return {}
    known = {}
    for key, version in cards.items():
        if isinstance(key, str) and key.isdigit() and type(version) is int:
            known[int(key)] = version
    return known


def _message_op(message: Message, *, viewer: str, user=None) -> dict:
    html = render_to_string("desk/_message.html", {"message": message, "viewer": viewer, "user": user})
    return {"op": "upsert", "container": f"transcript-{message.conversation_id}", "html": html}


class DeskConsumer(JsonObjectConsumer):
    """An agent's or supervisor's desk page: the conversation lists, and optionally one open conversation."""

    viewer = "agent"

    async def connect(self):
        """Who is asking and what they may join, in one trip to the database thread; a list page's
        snapshot needs no other, an open conversation's one more (after the join)."""
        self.conversation_id = None
        self.groups_joined: list[str] = []
        checked = await self._check_access(None)
        if checked is None:
            await refuse(self)
            return
        # Join before the snapshot so nothing that changes in between is missed.
        await self._set_groups(checked[0])
        await self.accept()
        await self.send_snapshot()

    async def _set_groups(self, groups: list[str]) -> None:
        """Join `groups` (again, at a ping) and leave any the user may no longer join. The open
        conversation's cards come through the process's fan-out, whose channel joins again with them."""
        for group in set(self.groups_joined) - set(groups):
            await self.channel_layer.group_discard(group, self.channel_name)
        fanout = card_fanout()
        if self.conversation_id is None:
            await fanout.hide(self)
        else:
            await fanout.show(self, self.conversation_id)
        await self.join(groups, *fanout.memberships())
        self.groups_joined = groups

    def _groups_for_user(self) -> list[str] | None:
        user = self.user
        self.is_supervisor = access.is_supervisor(user)
        if self.is_supervisor:
            groups = [realtime.SUPERVISORS_GROUP]
        elif access.is_agent(user):
            groups = [realtime.QUEUE_GROUP, realtime.agent_group(user.pk)]
        else:
            return None
        groups.append(realtime.user_group(user.pk))
        raw_id = self.scope["url_route"]["kwargs"].get("conversation_id")
        if raw_id is not None:
            try:
                self.conversation_id = access.get_conversation_for_viewer(user, int(raw_id)).pk
            except Http404:
                return None
            groups.append(realtime.conversation_group(self.conversation_id))
        return groups

    async def disconnect(self, code):
        await card_fanout().hide(self)
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """The only message a client sends is a ping (every 25 s): re-join the groups (B10, C35) and send
        again any payment card newer than the versions the ping says the page shows, so a push the
        at-most-once channel layer lost is made good within one ping interval. The user, session and role
        are re-read only every DESK_ACCESS_RECHECK_SECONDS (C41): changes made through the app reach the
        socket at once (`access_changed`), so an idle desk's ping costs one query, or none on a list page."""
        if content.get("type") != "ping":
            return
        known = _card_versions(content.get("cards"))
        if time.monotonic() - self.access_checked_at >= settings.DESK_ACCESS_RECHECK_SECONDS:
            checked = await self._check_access(known)
            if checked is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return
            groups, stale_card_ops = checked
        else:
            groups = self.groups_joined
            stale_card_ops = await self._stale_card_ops(known) if self.conversation_id is not None else []
        await self._set_groups(groups)
        for op in stale_card_ops:
            await self.send_json(op)
        await self.send_json({"op": "pong"})

    async def access_changed(self, event):
        """The user logged out, changed password, lost or gained a role, or was deactivated (signals.py)."""
        if event["ended_session_key"] is not None and event["ended_session_key"] == self._session_key():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        checked = await self._check_access(None)
        if checked is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self._set_groups(checked[0])

    def _session_key(self) -> str | None:
        return self.scope["session"].session_key

    @database_sync_to_async
    def _check_access(self, known: dict[int, int] | None) -> tuple[list[str], list[dict]] | None:
        """Who is asking, as the session store says now (at connect; or logged out, expired, deactivated or
        password changed since?), the groups they may join and, for a ping (`known`), the cards newer than
        the page shows, in one trip to the database thread that every socket of the process shares. None
        if they may not see this page."""
        session = import_module(settings.SESSION_ENGINE).SessionStore(self._session_key())
        self.user = auth.get_user(SimpleNamespace(session=session))
        groups = self._groups_for_user()
        if groups is None:
            return None
        self.access_checked_at = time.monotonic()
        if known is None or self.conversation_id is None:
            return groups, []
        return groups, self._stale_card_ops_now(known)

    def _stale_card_ops_now(self, known: dict[int, int]) -> list[dict]:
        return payments_realtime.stale_card_ops(self.conversation_id, known, user=self.user, viewer="agent")

    _stale_card_ops = database_sync_to_async(_stale_card_ops_now)

    async def send_snapshot(self):
        await self.send_json({"op": "refresh", "target": "conversation-list"})
        if self.conversation_id is not None:
            for op in await self._open_conversation_ops(with_transcript=True):
                await self.send_json(op)

    async def _open_conversation_ops(self, *, with_transcript: bool) -> list[dict]:
        """The open conversation's ops; if the user may no longer see it (e.g. another agent took it), the
        socket leaves its group at once and the page reloads to learn what it may show."""
        ops = await self._conversation_ops(with_transcript=with_transcript)
        if ops is None:
            left = realtime.conversation_group(self.conversation_id)
            self.conversation_id = None
            await self._set_groups([group for group in self.groups_joined if group != left])
            return [{"op": "refresh", "target": "conversation-pane"}]
        return ops

    @database_sync_to_async
    def _conversation_ops(self, *, with_transcript: bool) -> list[dict] | None:
        try:
            conversation = access.get_conversation_for_viewer(self.user, self.conversation_id)
        except Http404:
            return None
        return _conversation_ops(
            conversation, viewer="agent", user=self.user, with_transcript=with_transcript
        )

    @database_sync_to_async
    def _message_op(self, message_id: int) -> dict | None:
        message = (
            Message.objects.select_related("author", "conversation__customer").filter(pk=message_id).first()
        )
        return message and _message_op(message, viewer="agent", user=self.user)

    async def conversation_changed(self, event):
        await self.send_json({"op": "refresh", "target": "conversation-list"})
        if event["conversation_id"] == self.conversation_id:
            for op in await self._open_conversation_ops(with_transcript=False):
                await self.send_json(op)

    async def message_created(self, event):
        await self.send_json({"op": "refresh", "target": "conversation-list"})
        if event["conversation_id"] == self.conversation_id and (
            op := await self._message_op(event["message_id"])
        ):
            await self.send_json(op)

    async def payment_requests_changed(self, event):
        """Chat 2 Pay requests changed (one, or the expiry sweep's batch): supervisor pages re-read their
        transaction list (with its filters) and any open transaction."""
        await self.send_json({"op": "refresh", "target": "transactions"})
        for payment_request_id in event["payment_request_ids"]:
            await self.send_json({"op": "refresh", "target": f"transaction-{payment_request_id}-detail"})

    async def send_cards(self, cards: list[dict]) -> None:
        """The open conversation's Chat 2 Pay cards changed: sent as the change rendered them (by the
        process's `card_fanout`), with no trip to the database thread; their versions keep a late push from
        rolling a card back."""
        for card in cards:
            await self.send_json(payments_realtime.card_for_viewer(card, user=self.user))


def _customer_conversation_id(token: str) -> int | None:
    try:
        return access.get_conversation_for_customer(token).pk
    except Http404:
        return None


class CustomerChatConsumer(JsonObjectConsumer):
    """The customer's own chat page, authorised by its unguessable token."""

    async def connect(self):
        self.conversation_id = await database_sync_to_async(throttling.admit_socket_token)(
            self.scope, _customer_conversation_id
        )
        if self.conversation_id is None:
            await refuse(self)
            return
        self.group = realtime.conversation_group(self.conversation_id)
        await self.join([self.group])
        await self.accept()
        for op in await self._ops(with_transcript=True):
            await self.send_json(op)

    @database_sync_to_async
    def _ops(self, *, with_transcript: bool) -> list[dict]:
        conversation = Conversation.objects.select_related("customer", "assigned_agent").get(
            pk=self.conversation_id
        )
        return _conversation_ops(conversation, viewer="customer", with_transcript=with_transcript)

    @database_sync_to_async
    def _message_op(self, message_id: int) -> dict | None:
        message = (
            Message.objects.select_related("author", "conversation__customer").filter(pk=message_id).first()
        )
        return message and _message_op(message, viewer="customer")

    async def disconnect(self, code):
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.join([self.group])
            await self.send_json({"op": "pong"})

    async def conversation_changed(self, event):
        for op in await self._ops(with_transcript=False):
            await self.send_json(op)

    async def message_created(self, event):
        if op := await self._message_op(event["message_id"]):
            await self.send_json(op)
