"""Per-key rate limit: a fixed one-minute window counted with Redis' atomic INCR (through Django's cache).

Shared by every web process, so the limit holds however many Daphne processes serve the API.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from .errors import ApiError
from .models import ApiKey

WINDOW_SECONDS = 60


def check_rate_limit(api_key: ApiKey) -> dict[str, str]:
    """Count one request for the key; raise 429 over the limit. Returns headers describing the window."""
    limit = settings.API_RATE_LIMIT_PER_MINUTE
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    counter = f"api:ratelimit:{api_key.pk}:{window}"
    # add() is SET NX: the first request of a window creates the counter with an expiry; incr() is atomic,
    # so concurrent requests in any process each get their own count.
    cache.add(counter, 0, timeout=WINDOW_SECONDS * 2)
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add and incr: this request opens a new counter
        cache.add(counter, 1, timeout=WINDOW_SECONDS * 2)
        count = 1
    reset = (window + 1) * WINDOW_SECONDS
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, limit - count)),
        "X-RateLimit-Reset": str(reset),
    }
    if count > limit:
        retry_after = max(1, int(reset - now))
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests for this API key: at most {limit} a minute. Retry in {retry_after} s.",
            headers=headers | {"Retry-After": str(retry_after)},
        )
    return headers
