"""chatdesk.event_loop: sync code outside an ASGI server sends on one long-lived loop per process."""

import asyncio
import os
import threading

import pytest
from asgiref.sync import sync_to_async

from chatdesk import event_loop


def _where() -> tuple[asyncio.AbstractEventLoop, str]:
    seen = {}

    async def note():
        seen["loop"] = asyncio.get_running_loop()
        seen["thread"] = threading.current_thread().name

    event_loop.run_from_sync(note)
    return seen["loop"], seen["thread"]


def test_sync_code_reuses_one_background_loop_for_every_call():
    """So channels_redis keeps one connection pool (a fresh loop per send would open a fresh pool)."""
    first, thread = _where()
    second, _ = _where()
    assert first is second
    assert thread == "chatdesk-event-loop"


async def test_inside_an_asgi_server_the_servers_own_loop_runs_it():
    """Daphne's sync thread hands the coroutine back to Daphne's loop, as async_to_sync does."""
    loop, thread = await sync_to_async(_where)()
    assert loop is asyncio.get_running_loop()
    assert thread != "chatdesk-event-loop"


def test_an_error_in_the_coroutine_reaches_the_caller():
    """publish_on_commit's robust hook then logs it; nothing is swallowed here."""

    async def fail():
        raise ConnectionError("redis down")

    with pytest.raises(ConnectionError, match="redis down"):
        event_loop.run_from_sync(fail)


def test_a_forked_child_starts_its_own_loop():
    """A Celery prefork child inherits the parent's loop object but not its thread."""
    parent_loop, _ = _where()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a running loop of its own
        try:
            child_loop, _ = _where()
            os.write(write_end, b"own" if child_loop is not parent_loop else b"same")
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 10) == b"own"
