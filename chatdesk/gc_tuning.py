"""The web processes' garbage collector, set once the app is loaded (chatdesk.asgi for Daphne, chatdesk.wsgi
for gunicorn)."""

import gc


def tune_garbage_collector() -> None:
    """A full collection stops the whole process while it scans the heap: every socket of Daphne's (about
    360 ms at 2,000 held sockets), every request of a gunicorn worker's. The app as loaded (about 40 % of
    that heap) lives as long as the process: freeze it so no collection scans it again. Collect the young
    generation every 10,000 allocations rather than 700, so the short-lived objects of a card or a request
    die young instead of being promoted, and full collections come rarer (docs/performance.md, product
    changes 16 and 23)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
