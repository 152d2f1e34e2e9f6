"""Live pushes for the desk: small typed hints, sent to Channels groups only after the transaction commits.

The channel layer is at-most-once, so a push is a hint: consumers re-read the row and render the current
state, and pages re-read everything they show on every (re)connect.
"""

from collections.abc import Iterable

from channels.layers import get_channel_layer
from django.db import transaction

from chatdesk import event_loop

QUEUE_GROUP = "desk.queue"
SUPERVISORS_GROUP = "desk.supervisors"
# One channel per web process: the payment cards of every conversation its desks show (desk.card_fanout).
CARDS_GROUP = "desk.cards"


def agent_group(user_id: int) -> str:
    return f"desk.agent.{user_id}"


def conversation_group(conversation_id: int) -> str:
    return f"desk.conversation.{conversation_id}"


def user_group(user_id: int) -> str:
    """Every desk socket of one user, agent or supervisor: told when their access changes."""
    return f"desk.user.{user_id}"


def send_to_groups_rollback_unsafe(groups: list[str], event: dict) -> None:
    """Send now, whatever happens to the current transaction. Use `publish_on_commit` instead."""
    layer = get_channel_layer()

    async def send_all():
        for group in groups:
            await layer.group_send(group, event)

    event_loop.run_from_sync(send_all)


def publish_on_commit(groups: list[str], event: dict) -> None:
    """Send `event` to `groups` once the surrounding transaction commits (never for a rollback)."""
    transaction.on_commit(lambda: send_to_groups_rollback_unsafe(groups, event), robust=True)


def publish_conversation_changed(conversation, *, left_queue: bool = False) -> None:
    """Tell every desk that lists this conversation, and every page showing it, to re-read it."""
    groups = [SUPERVISORS_GROUP, conversation_group(conversation.pk)]
    if conversation.status == "pending" or left_queue:
        groups.append(QUEUE_GROUP)  # it appears in, or leaves, every agent's queue
    if conversation.assigned_agent_id:
        groups.append(agent_group(conversation.assigned_agent_id))
    publish_on_commit(groups, {"type": "conversation.changed", "conversation_id": conversation.pk})


def publish_message_created(message) -> None:
    """Push a new message to the pages showing its conversation, and bump it in the desk lists."""
    conversation = message.conversation
    groups = [SUPERVISORS_GROUP, conversation_group(conversation.pk)]
    if conversation.status == "pending":
        groups.append(QUEUE_GROUP)
    if conversation.assigned_agent_id:
        groups.append(agent_group(conversation.assigned_agent_id))
    publish_on_commit(
        groups,
        {"type": "message.created", "conversation_id": conversation.pk, "message_id": message.pk},
    )


def publish_access_changed(user_ids: Iterable[int], *, ended_session_key: str | None = None) -> None:
    """Tell the users' open desks to re-read who they are now (signals.py), in one send per commit. A logout
    names the session it ends: that session's desks close at once, since the hint can arrive before the
    session row is deleted."""
    if groups := [user_group(user_id) for user_id in user_ids]:
        publish_on_commit(groups, {"type": "access.changed", "ended_session_key": ended_session_key})
