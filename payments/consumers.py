"""The customer's open /pay/<token>/ page, kept current: it notices a cancel, an expiry or the payment
without a reload. Authorised by the token alone (as the page is); the group is per request.

A websocket rather than polling: the desk already runs one, the push arrives within the sweep's second,
and realtime.js brings reconnects and version checks for free. Each (re)connect starts with a snapshot.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from chatdesk import throttling
from desk.consumers import CLOSE_FORBIDDEN, JsonObjectConsumer

from . import access, realtime


def _payment_request_id(token: str) -> int | None:
    payment_request = access.get_payment_request_for_customer(token)
    return payment_request and payment_request.pk


class PaymentPageConsumer(JsonObjectConsumer):
    async def connect(self) -> None:
        self.token = self.scope["url_route"]["kwargs"]["token"]
        self.payment_request_id = await database_sync_to_async(throttling.admit_socket_token)(
            self.scope, _payment_request_id
        )
        if self.payment_request_id is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = realtime.pay_page_group(self.payment_request_id)
        # Join before the snapshot, so a change made in between is not missed.
        await self.join([self.group])
        await self.accept()
        await self.send_json(await self._op())

    @database_sync_to_async
    def _op(self) -> dict:
        return realtime.pay_page_op(self.payment_request_id, token=self.token)

    async def disconnect(self, code) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        """A ping re-joins the group (it may have expired, or gone with a Redis flush) and gets a snapshot."""
        if content.get("type") == "ping":
            await self.join([self.group])
            await self.send_json(await self._op())
            await self.send_json({"op": "pong"})

    async def payment_request_changed(self, event) -> None:
        await self.send_json(await self._op())
