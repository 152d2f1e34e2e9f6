"""Helpers for websocket tests against the real ASGI application and the real Redis channel layer."""

import asyncio
from contextlib import contextmanager

from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chatdesk.asgi import application
from desk.consumers import CLOSE_FORBIDDEN

ORIGIN = (b"origin", b"http://127.0.0.1")


@database_sync_to_async
def session_cookie(user) -> tuple[bytes, bytes]:
    """The Cookie header of a logged-in browser session for `user`."""
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


async def connect(path: str, *headers) -> WebsocketCommunicator:
    """An accepted socket on `path` from an allowed Origin (the test fails if it is refused)."""
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])
    connected, code = await communicator.connect(timeout=5)
    assert connected, f"refused with {code}"
    return communicator


async def assert_refused(communicator: WebsocketCommunicator) -> None:
    """The socket is turned away with 4403 (accepted first, so the browser sees the code)."""
    try:
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        assert await communicator.receive_output(timeout=5) == {
            "type": "websocket.close",
            "code": CLOSE_FORBIDDEN,
        }
    finally:
        await communicator.disconnect()


async def handshake(communicator: WebsocketCommunicator) -> tuple[bool, int | None]:
    """Whether the handshake was accepted, and the close code if it was not; the socket is closed after.

    A consumer left running after a refused handshake blocks the event loop's teardown, so every test
    that opens a socket closes it, refused or not.
    """
    try:
        return await communicator.connect(timeout=5)
    finally:
        await communicator.disconnect()


async def receive_until(communicator, predicate, timeout: float = 5) -> dict:
    """The first op matching `predicate`, skipping others (e.g. list refresh hints)."""
    async with asyncio.timeout(timeout):
        while True:
            op = await communicator.receive_json_from(timeout=timeout)
            if predicate(op):
                return op


async def drain(communicator) -> list[dict]:
    """Every op that arrives until the socket has been quiet for 0.3 s."""
    ops = []
    while not await communicator.receive_nothing(timeout=0.3):
        ops.append(await communicator.receive_json_from())
    return ops


@contextmanager
def trips_to_the_sync_thread(monkeypatch):
    """The sync calls made from async code while the block runs (`database_sync_to_async` and
    `sync_to_async`): under Daphne they queue, one at a time, on the thread every socket of the process
    shares, so each one a connect or a ping makes is latency for all of them (docs/performance.md, B1)."""
    trips = []
    real_call = SyncToAsync.__call__

    async def counting_call(self, *args, **kwargs):
        trips.append(self.func)
        return await real_call(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(SyncToAsync, "__call__", counting_call)
        yield trips


@contextmanager
def redis_group_round_trips(monkeypatch):
    """The commands sent to Redis about channel groups while the block runs (the layer's own receive loop
    is left out): each is a round trip a socket's event loop waits for."""
    from redis.asyncio.client import Redis

    trips = []
    real_execute = Redis.execute_command

    async def counting_execute(self, *args, **options):
        if any(isinstance(arg, bytes) and b":group:" in arg for arg in args):  # channels_redis's group keys
            trips.append(args[0])
        return await real_execute(self, *args, **options)

    with monkeypatch.context() as patch:
        patch.setattr(Redis, "execute_command", counting_execute)
        yield trips


def groups_sent_to(layer, monkeypatch) -> list[str]:
    """The groups `layer` sends to from now until the test ends, in order; the sends still go out."""
    sent_to = []
    group_send = layer.group_send

    async def recording_group_send(group: str, event: dict) -> None:
        sent_to.append(group)
        await group_send(group, event)

    monkeypatch.setattr(layer, "group_send", recording_group_send)
    return sent_to
