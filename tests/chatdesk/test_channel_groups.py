"""chatdesk.channel_groups: a publish skips the groups nobody is in, and only those (real Redis)."""

import time

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from chatdesk.channel_groups import groups_with_members


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
