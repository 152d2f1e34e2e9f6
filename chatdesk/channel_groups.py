"""Channel groups in one round trip to Redis: which have anyone in them, and joining several at once.

channels_redis's `group_send` costs two round trips to Redis before it learns that a group is empty, and
most groups a payment change is published to are: the pay page of a link nobody has open, a conversation no
desk is showing. A change goes to three groups and an expiry sweep's batch to about a thousand, so
`payments.realtime` asks first, in one script call per Redis host, and sends only to the groups with a member
(docs/performance.md, product change 17).

Its `group_add` costs two round trips per group too, and a desk joins four or five groups at connect and
joins them again at every ping (scenarios B10 and 35), so `join_groups` does it in one script call per host.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from channels_redis.core import RedisChannelLayer

# One script call for all the groups of a host: a pipeline of one ZCOUNT per group costs the client more than
# the round trips it saves.
COUNT_MEMBERS = """
local counts = {}
for i = 1, #KEYS do
    counts[i] = redis.call('ZCOUNT', KEYS[i], ARGV[1], '+inf')
end
return counts
"""
# What channels_redis's group_add does for each (group, member): the member with the time as its score, and
# the group kept for group_expiry after its newest member joined.
JOIN = """
for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2 + i])
    redis.call('EXPIRE', KEYS[i], ARGV[2])
end
return #KEYS
"""


async def join_groups(layer, memberships: Iterable[tuple[str, str]]) -> None:
    """Add each (group, channel) of `memberships`, as `group_add` would one at a time. Layers other than
    channels_redis's are asked one at a time."""
    memberships = list(memberships)
    if not isinstance(layer, RedisChannelLayer):
        for group, channel in memberships:
            await layer.group_add(group, channel)
        return
    by_host: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for group, channel in memberships:
        by_host[layer.consistent_hash(group)].append((group, channel))
    for index, host_memberships in by_host.items():
        keys = [layer._group_key(group) for group, _ in host_memberships]
        members = [channel for _, channel in host_memberships]
        await layer.connection(index).eval(JOIN, len(keys), *keys, time.time(), layer.group_expiry, *members)


async def groups_with_members(layer, groups: Iterable[str]) -> set[str]:
    """The groups among `groups` with a live member. A member counts as channels_redis's `group_send` counts
    it: added within the layer's `group_expiry`. Layers that cannot be asked (the pub/sub layer, in-memory
    ones) get every group back, so nothing is ever skipped by mistake."""
    groups = set(groups)
    if not isinstance(layer, RedisChannelLayer):
        return groups
    by_host: dict[int, list[str]] = defaultdict(list)
    for group in groups:
        by_host[layer.consistent_hash(group)].append(group)
    joined_after = f"({int(time.time()) - layer.group_expiry}"  # group_send drops members at or before this
    found = set()
    for index, host_groups in by_host.items():
        keys = [layer._group_key(group) for group in host_groups]
        counts = await layer.connection(index).eval(COUNT_MEMBERS, len(keys), *keys, joined_after)
        found.update(group for group, count in zip(host_groups, counts, strict=True) if count)
    return found
