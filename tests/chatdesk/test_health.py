"""GET /healthz: 200 only when the database, Redis, the Celery worker and beat (by heartbeat) are all up."""

import time

import pytest
from django.conf import settings

from chatdesk.celery import BEAT_HEARTBEAT_KEY, WORKER_HEARTBEAT_KEY, write_heartbeat

pytestmark = pytest.mark.django_db

ALL_UP = {"database": "up", "redis": "up", "worker": "up", "beat": "up", "status": "ok"}


def _write_stale_heartbeat(key: str) -> None:
    """A heartbeat from a process that stopped writing one a little longer ago than /healthz tolerates."""
    from django.core.cache import cache

    cache.set(key, time.time() - settings.HEARTBEAT_STALE_AFTER_SECONDS - 1)


def test_it_is_200_with_every_part_up_when_the_heartbeats_are_fresh(client):
    # Given: the worker and beat have both just written their heartbeats
    write_heartbeat(WORKER_HEARTBEAT_KEY)
    write_heartbeat(BEAT_HEARTBEAT_KEY)

    # When: a load balancer probes the health endpoint
    response = client.get("/healthz")

    # Then: it is healthy and names each part
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == ALL_UP


def test_it_is_never_cached(client):
    write_heartbeat(WORKER_HEARTBEAT_KEY)
    write_heartbeat(BEAT_HEARTBEAT_KEY)

    response = client.get("/healthz")

    assert "no-cache" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("written", "down"), [(BEAT_HEARTBEAT_KEY, "worker"), (WORKER_HEARTBEAT_KEY, "beat")]
)
def test_it_is_503_naming_the_process_whose_heartbeat_is_missing(client, written, down):
    write_heartbeat(written)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {**ALL_UP, down: "down", "status": f"down: {down}"}


@pytest.mark.parametrize(("stale", "fresh", "down"), [
    (WORKER_HEARTBEAT_KEY, BEAT_HEARTBEAT_KEY, "worker"),
    (BEAT_HEARTBEAT_KEY, WORKER_HEARTBEAT_KEY, "beat"),
])  # fmt: skip
def test_it_is_503_naming_the_process_whose_heartbeat_is_stale(client, stale, fresh, down):
    write_heartbeat(fresh)
    _write_stale_heartbeat(stale)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {**ALL_UP, down: "down", "status": f"down: {down}"}


def test_it_names_both_when_neither_worker_nor_beat_has_written_a_heartbeat(client):
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "database": "up",
        "redis": "up",
        "worker": "down",
        "beat": "down",
        "status": "down: worker, beat",
    }


def test_it_is_503_naming_redis_when_redis_does_not_answer(client, settings):
    write_heartbeat(WORKER_HEARTBEAT_KEY)
    write_heartbeat(BEAT_HEARTBEAT_KEY)
    # Nothing listens on port 1: every cache call fails, so the heartbeats cannot be read either.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "up"
    assert body["redis"] == "down"
    assert body["status"].startswith("down: redis")


def test_it_answers_head_but_refuses_post(client):
    write_heartbeat(WORKER_HEARTBEAT_KEY)
    write_heartbeat(BEAT_HEARTBEAT_KEY)

    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_it_is_exempt_from_the_https_redirect_that_every_other_page_gets(client, settings):
    # Load balancers and process supervisors probe over plain HTTP.
    settings.SECURE_SSL_REDIRECT = True
    write_heartbeat(WORKER_HEARTBEAT_KEY)
    write_heartbeat(BEAT_HEARTBEAT_KEY)

    assert client.get("/healthz").status_code == 200
    redirected = client.get("/accounts/login/")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")


def test_it_needs_no_login(client):
    write_heartbeat(WORKER_HEARTBEAT_KEY)
    write_heartbeat(BEAT_HEARTBEAT_KEY)

    response = client.get("/healthz")

    assert response.status_code == 200
    assert "Location" not in response


def test_a_heartbeat_that_cannot_reach_redis_is_skipped_not_raised(monkeypatch):
    """Beat writes its heartbeat on every tick: a Redis restart used to raise out of the tick and stop beat
    for good (found by tests/reliability/test_faults.py)."""
    import redis
    from django.core.cache import cache

    def refuse(*args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(cache, "set", refuse)

    write_heartbeat(BEAT_HEARTBEAT_KEY)  # no exception
