"""chatdesk.channel_groups: a publish skips the groups nobody is in, and only those; a socket joins its groups
in one round trip, as group_add would one at a time (real Redis)."""

import time

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from chatdesk.channel_groups import groups_with_members, join_groups


def test_only_groups_with_a_live_member_are_listening(channel_layer):
    async def ask() -> set[str]:
        here = await channel_layer.new_channel()
        left = await channel_layer.new_channel()
        await channel_layer.group_add("desk.conversation.1", here)
        await channel_layer.group_add("payments.request.7", left)
        await channel_layer.group_discard("payments.request.7", left)
        # A page that died without leaving, older than group_expiry: group_send would drop it unsent too.
        stale = time.time() - channel_layer.group_expiry - 5
        await channel_layer.connection(0).zadd(channel_layer._group_key("payments.request.8"), {here: stale})
        groups = ["desk.conversation.1", "payments.request.7", "payments.request.8", "desk.supervisors"]
        return await groups_with_members(channel_layer, groups)

    assert async_to_sync(ask)() == {"desk.conversation.1"}


def test_a_layer_that_cannot_be_asked_skips_no_group():
    layer = InMemoryChannelLayer()

    assert async_to_sync(groups_with_members)(layer, ["desk.supervisors", "payments.request.7"]) == {
        "desk.supervisors",
        "payments.request.7",
    }


def test_joining_groups_at_once_is_what_group_add_does_for_each(channel_layer):
    groups = ["desk.queue", "desk.agent.7", "desk.conversation.1"]

    async def join_then_send() -> tuple[list[dict], list[int]]:
        channel = await channel_layer.new_channel()
        await join_groups(channel_layer, [(group, channel) for group in groups])
        for group in groups:
            await channel_layer.group_send(group, {"type": "hint", "group": group})
        received = [await channel_layer.receive(channel) for _ in groups]
        ttls = [await channel_layer.connection(0).ttl(channel_layer._group_key(group)) for group in groups]
        return received, ttls

    received, ttls = async_to_sync(join_then_send)()

    assert [message["group"] for message in received] == groups
    assert all(0 < ttl <= channel_layer.group_expiry for ttl in ttls)


def test_a_layer_without_redis_joins_one_group_at_a_time():
    layer = InMemoryChannelLayer()

    async def join_then_send() -> dict:
        channel = await layer.new_channel()
        await join_groups(layer, [("desk.queue", channel), ("desk.agent.7", channel)])
        await layer.group_send("desk.agent.7", {"type": "hint"})
        return await layer.receive(channel)

    assert async_to_sync(join_then_send)() == {"type": "hint"}
