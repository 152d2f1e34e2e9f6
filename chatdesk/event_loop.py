"""Running the channel layer's coroutines from sync code, on a loop that lives as long as the process.

Inside Daphne, sync code (views, consumers' database calls) runs in a thread that `async_to_sync` hands back
to Daphne's own event loop. Anywhere else (Celery workers, gunicorn threads, management commands)
`async_to_sync` starts a fresh event loop per call, and channels_redis opens a fresh Redis connection pool
with it: 3–54 ms per publish measured (docs/performance.md). There, one background loop per process keeps
one pool for every send.
"""

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable

from asgiref.sync import SyncToAsync, async_to_sync

SEND_TIMEOUT_SECONDS = 10  # a send that takes longer is a Redis outage: the caller logs it, never hangs

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def _inside_asgi_server() -> bool:
    """True in a thread that async_to_sync can hand back to a running server's loop (Daphne, tests' loops)."""
    return getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) == os.getpid() and (
        getattr(SyncToAsync.threadlocal, "main_event_loop", None) is not None
    )


def _background_loop() -> asyncio.AbstractEventLoop:
    """This process's loop, started on first use (again in a forked child, e.g. a Celery prefork worker)."""
    global _loop, _thread, _pid
    with _lock:
        if _pid != os.getpid() or _thread is None or not _thread.is_alive():
            _loop = asyncio.new_event_loop()
            _thread = threading.Thread(target=_loop.run_forever, name="chatdesk-event-loop", daemon=True)
            _thread.start()
            _pid = os.getpid()
        return _loop


def run_from_sync(coroutine_function: Callable[[], Awaitable[None]]) -> None:
    """Run `coroutine_function()` to completion from sync code, on the cheapest loop available."""
    if _inside_asgi_server():
        async_to_sync(coroutine_function)()
        return
    future = asyncio.run_coroutine_threadsafe(coroutine_function(), _background_loop())
    future.result(timeout=SEND_TIMEOUT_SECONDS)
