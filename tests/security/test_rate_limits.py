"""Guessing and brute force are throttled (django-ratelimit, counted in Redis): random tokens on /pay/ and
/chat/ (and their websockets) find nothing and soon get 429, logins lock after repeated failures, and new
chats per address are capped."""

from __future__ import annotations

import math
import secrets
import string
import time
from collections import Counter

import pytest
import time_machine
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.http import Http404
from django.test import Client, RequestFactory
from django_ratelimit.core import _split_rate

from chatdesk.asgi import application
from desk import chat_views
from payments import views as payment_views
from payments.models import new_payment_token
from tests.reliability import profile
from tests.security.test_authorization_matrix import client_for, world  # noqa: F401
from tests.websockets import handshake

pytestmark = pytest.mark.django_db
SECTION = "4. Security: rate limits"


def unknown_limit() -> int:
    return _split_rate(settings.RATELIMIT_UNKNOWN_TOKENS)[0]


@pytest.fixture
def one_window():
    """The exact counts below hold within one rate-limit window. django-ratelimit's fixed windows start at an
    offset per key (crc32 of the address), so among many addresses one rolls over within seconds of any
    moment and gets a fresh allowance; freeze the clock so every request of a test falls in one window."""
    with time_machine.travel(time.time(), tick=False):
        yield


@pytest.mark.timeout(profile.n(300, 3600))  # 100,000 probes: ~15 minutes in the long profile
def test_random_token_probes_find_nothing_and_the_limit_engages(world, one_window, settings):  # noqa: F811
    """The probes call the views in-process (the whole Django view layer and Redis, no socket), from many
    addresses, half on /pay/ and half on /chat/; one real token is tried from a blocked address too."""
    probes, addresses = profile.n(2_000, 100_000), profile.n(40, 1_000)
    if profile.LONG:
        # The long run outlasts a 10-minute window's counters in Redis (they expire by Redis' own clock, which
        # is not frozen): the same allowance per hour keeps them for the whole run.
        settings.RATELIMIT_UNKNOWN_TOKENS = f"{unknown_limit()}/h"
    factory = RequestFactory()
    answers = Counter()
    started = time.monotonic()
    for number in range(probes):
        address = f"10.{number % addresses // 256}.{number % addresses % 256}.7"
        token = secrets.token_urlsafe(32)
        if number % 2:
            request = factory.get(f"/pay/{token}/", REMOTE_ADDR=address)
            answers[payment_views.pay(request, token=token).status_code] += 1
        else:
            request = factory.get(f"/chat/{token}/", REMOTE_ADDR=address)
            try:
                answers[chat_views.conversation(request, token=token).status_code] += 1
            except Http404:  # raised by the view (the handler would make it a 404 page)
                answers[404] += 1
    elapsed = time.monotonic() - started

    hits = sum(count for status, count in answers.items() if status not in {404, 429})
    assert hits == 0, answers
    assert answers[404] == addresses * unknown_limit()  # each address got its free misses, no more
    assert answers[429] == probes - addresses * unknown_limit()
    # A blocked address learns nothing even with a working token; a fresh address gets the page.
    blocked = Client(REMOTE_ADDR="10.0.0.7")
    assert blocked.get(f"/pay/{world['pay_token']}/").status_code == 429
    assert Client(REMOTE_ADDR="192.0.2.1").get(f"/pay/{world['pay_token']}/").status_code == 200
    for name, value in [
        ("probes (random 256-bit tokens, /pay/ and /chat/ alternately)", probes),
        ("client addresses", addresses),
        ("limit (RATELIMIT_UNKNOWN_TOKENS)", settings.RATELIMIT_UNKNOWN_TOKENS),
        ("answered 404 (looked up, unknown)", answers[404]),
        ("answered 429 (throttled before the lookup)", answers[429]),
        ("hits (a request found)", hits),
        ("probes per second", f"{probes / elapsed:,.0f}"),
    ]:
        profile.record(SECTION, name, value)


async def test_the_customer_websockets_count_and_refuse_guesses_too():
    for _ in range(unknown_limit()):
        communicator = WebsocketCommunicator(
            application, f"/ws/pay/{secrets.token_urlsafe(32)}/", headers=[(b"origin", b"http://127.0.0.1")]
        )
        connected, _ = await handshake(communicator)
        assert not connected
    # Over the limit: even a websocket for a chat token is refused before any lookup.
    communicator = WebsocketCommunicator(
        application, f"/ws/chat/{secrets.token_urlsafe(32)}/", headers=[(b"origin", b"http://127.0.0.1")]
    )
    try:
        connected, code = await communicator.connect(timeout=5)
        if connected:
            code = (await communicator.receive_output(timeout=5))["code"]
        assert code == 4403
    finally:
        await communicator.disconnect()


def test_link_tokens_are_256_random_bits_of_url_safe_text():
    count = profile.n(5_000, 100_000)
    tokens = [new_payment_token() for _ in range(count)]
    assert len(set(tokens)) == count
    assert {len(token) for token in tokens} == {43}
    alphabet = set(string.ascii_letters + string.digits + "-_")
    assert set("".join(tokens)) <= alphabet
    # The first 42 characters carry 6 random bits each: each of the 64 symbols ~1/64 of the time (chi-square).
    counts = Counter(char for token in tokens for char in token[:42])
    expected = count * 42 / 64
    chi2 = sum((counts[char] - expected) ** 2 / expected for char in alphabet)
    assert chi2 < 63 + 6 * math.sqrt(2 * 63)  # mean 63, > 6 standard deviations would be a broken generator
    profile.record(SECTION, "tokens generated / distinct / length", f"{count:,} / {len(set(tokens)):,} / 43")
    profile.record(SECTION, "token symbol chi-square (63 d.f.)", f"{chi2:.1f}")


PASSWORD = "chatdesk-test"


def test_login_brute_force_is_throttled_per_address_and_per_username(world, one_window):  # noqa: F811
    limit = _split_rate(settings.RATELIMIT_LOGIN_FAILURES)[0]
    attacker = Client(REMOTE_ADDR="198.51.100.9")
    statuses = Counter()
    for attempt in range(limit + 5):
        response = attacker.post("/accounts/login/", {"username": "alice", "password": f"guess-{attempt}"})
        statuses[response.status_code] += 1
    assert statuses == {200: limit, 429: 5}
    assert "Too many attempts" in response.content.decode()
    # The right password no longer works from there, nor for that username from elsewhere, nor via the admin.
    assert attacker.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 429
    elsewhere = Client(REMOTE_ADDR="203.0.113.5")
    assert elsewhere.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 429
    admin = Client(REMOTE_ADDR="198.51.100.9")
    admin.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert "_auth_user_id" not in admin.session
    # Another user from another address is unaffected.
    other = Client(REMOTE_ADDR="203.0.113.6")
    response = other.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    profile.record(
        SECTION, "login failures allowed per address and username", settings.RATELIMIT_LOGIN_FAILURES
    )
    profile.record(SECTION, f"login attempts {limit + 5} → answers", dict(sorted(statuses.items())))


def test_new_chats_per_address_are_capped():
    limit = _split_rate(settings.RATELIMIT_CHAT_STARTS)[0]
    client = Client(REMOTE_ADDR="198.51.100.20")
    statuses = Counter(
        client.post("/chat/", {"name": "Ann", "phone": "+27821234567", "body": "hi"}).status_code
        for _ in range(limit + 3)
    )
    assert statuses == {302: limit, 429: 3}
