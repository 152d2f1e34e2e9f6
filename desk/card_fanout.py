"""One channel per web process brings the payment cards of every conversation its desks show.

channels_redis hands a process its messages one at a time, through one receive loop that makes four round
trips to Redis for each. A message per open conversation made the expiry sweep's 10,000 cards 10,000 messages
queued behind each other, and the web process spent its core on the queue rather than on the sockets (B4).
So a unit of work's cards travel once, in one message to CARDS_GROUP (`payments.realtime`), which every web
process joins with one channel; here they are handed to the process's desk sockets that show each
conversation. Other conversation events (messages, assignment) still go to the conversation's group.

There is one fan-out per event loop (a Daphne process has one). It starts with the first socket that shows
a conversation and stops with the last; its channel joins CARDS_GROUP again at each of its sockets' pings,
in the same round trip as the socket's own groups (a Redis flush drops every membership: scenario 35).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from typing import Protocol

from channels.layers import get_channel_layer

from .realtime import CARDS_GROUP

logger = logging.getLogger(__name__)


class ShowsCards(Protocol):
    async def send_cards(self, cards: list[dict]) -> None: ...


class CardFanout:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self._showing: dict[ShowsCards, int] = {}
        self._by_conversation: dict[int, set[ShowsCards]] = defaultdict(set)
        self._receiving: asyncio.Task | None = None
        self._starting = asyncio.Lock()

    def memberships(self) -> list[tuple[str, str]]:
        """The (group, channel) the fan-out is in while it runs, for a ping to join again."""
        return [(CARDS_GROUP, self.channel)] if self.channel else []

    async def show(self, socket: ShowsCards, conversation_id: int) -> None:
        """`socket` shows this conversation from now on (and no other)."""
        self._forget(socket)
        self._showing[socket] = conversation_id
        self._by_conversation[conversation_id].add(socket)
        async with self._starting:
            if self._receiving is None:
                self.channel = await self.layer.new_channel()
                await self.layer.group_add(CARDS_GROUP, self.channel)
                self._receiving = asyncio.create_task(self._receive(self.channel))

    async def hide(self, socket: ShowsCards) -> None:
        """`socket` shows no conversation any more (it left it, or closed); the last one stops the fan-out."""
        self._forget(socket)
        async with self._starting:
            if self._showing or self._receiving is None:
                return
            receiving, channel = self._receiving, self.channel
            self._receiving = self.channel = None
            receiving.cancel()
            await self.layer.group_discard(CARDS_GROUP, channel)

    def _forget(self, socket: ShowsCards) -> None:
        conversation_id = self._showing.pop(socket, None)
        if conversation_id is not None:
            self._by_conversation[conversation_id].discard(socket)
            if not self._by_conversation[conversation_id]:
                del self._by_conversation[conversation_id]

    async def _receive(self, channel: str) -> None:
        while True:
            try:
                event = await self.layer.receive(channel)
            except Exception:  # Redis away: the pages' pings make good what is missed meanwhile
                logger.exception("The payment cards' channel could not be read; trying again in a second")
                await asyncio.sleep(1)
                continue
            for conversation_id, cards in event["conversations"]:
                for socket in list(self._by_conversation.get(conversation_id, ())):
                    try:
                        await socket.send_cards(cards)
                    except Exception:  # one socket's failure must not keep the cards from the others
                        logger.exception("Payment cards could not be sent to a desk socket")


_fanouts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CardFanout] = weakref.WeakKeyDictionary()


def card_fanout() -> CardFanout:
    """The running event loop's fan-out."""
    loop = asyncio.get_running_loop()
    if loop not in _fanouts:
        _fanouts[loop] = CardFanout()
    return _fanouts[loop]
