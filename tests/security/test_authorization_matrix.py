"""Who may open what: every URL in the URLconf and every websocket route, for every role.

The matrix below has one row per URL pattern, enumerated from the resolver, so a new URL without a row fails
`test_every_url_has_a_row`. Roles: anonymous, a customer (no session, but holding their own link and chat
tokens), the agent who owns the conversation (alice), another agent (bob), a supervisor (sam), and a
superuser with no desk role (root). A role without the customer's tokens uses a random token of the same
shape.
Every refused state-changing request is also checked to have changed nothing.
"""

from __future__ import annotations

import json
import secrets

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from chatdesk.asgi import application
from desk.consumers import CLOSE_FORBIDDEN
from desk.models import Conversation, Message
from desk.routing import websocket_urlpatterns as desk_websockets
from payments.models import GatewayWebhookEvent, PaymentEvent, PaymentRequest
from payments.routing import websocket_urlpatterns as payments_websockets
from tests.factories import AgentFactory, ConversationFactory, SupervisorFactory
from tests.payments.conftest import send, token_of
from tests.websockets import handshake

ROLES = ("anonymous", "customer", "agent", "other_agent", "supervisor", "admin")
LOGIN = "login"  # 302 to /accounts/login/?next=…
ADMIN_LOGIN = "admin login"  # 302 to /admin/login/?next=…
REDIRECT = "redirect"  # 302 somewhere else (e.g. a role's landing page)
ANY_HEALTH = (200, 503)  # /healthz says what is down (no worker in tests); no secrets either way


def row(*expected):
    assert len(expected) == len(ROLES)
    return dict(zip(ROLES, expected, strict=True))


# pattern -> {method: expected status by role}. `send` form posts are empty (a 422 proves the view ran).
MATRIX: dict[str, dict[str, dict]] = {
    "": {"GET": row(LOGIN, LOGIN, REDIRECT, REDIRECT, REDIRECT, REDIRECT)},
    "healthz": {"GET": row(*[ANY_HEALTH] * 6)},
    "accounts/login/": {"GET": row(200, 200, REDIRECT, REDIRECT, REDIRECT, REDIRECT)},
    "accounts/logout/": {"GET": row(*[405] * 6), "POST": row(*[REDIRECT] * 6)},
    "desk/": {"GET": row(LOGIN, LOGIN, 200, 200, 403, 403)},
    "desk/conversations/": {"GET": row(LOGIN, LOGIN, 200, 200, 403, 403)},
    "desk/conversations/<int:pk>/": {"GET": row(LOGIN, LOGIN, 200, 403, 403, 403)},
    "desk/conversations/<int:pk>/accept/": {"POST": row(LOGIN, LOGIN, 409, 409, 403, 403)},
    "desk/conversations/<int:pk>/messages/": {"POST": row(LOGIN, LOGIN, 422, 403, 403, 403)},
    "desk/conversations/<int:pk>/close/": {"POST": row(LOGIN, LOGIN, 200, 403, 403, 403)},
    "desk/conversations/<int:pk>/extensions/": {"GET": row(LOGIN, LOGIN, 200, 403, 403, 403)},
    "desk/conversations/<int:pk>/chat2pay/": {
        "GET": row(LOGIN, LOGIN, 200, 403, 403, 403),
        "POST": row(LOGIN, LOGIN, 422, 403, 403, 403),
    },
    "desk/payments/<int:pk>/cancel/": {"POST": row(LOGIN, LOGIN, 200, 403, 403, 403)},
    "chat/": {"GET": row(*[200] * 6), "POST": row(*[200] * 6)},  # an empty post is an unbound form
    "chat/<str:token>/": {"GET": row(404, 200, 404, 404, 404, 404)},
    "chat/<str:token>/messages/": {"POST": row(404, 422, 404, 404, 404, 404)},
    "supervisor/": {"GET": row(LOGIN, LOGIN, 403, 403, 200, 403)},
    "supervisor/transactions/": {"GET": row(LOGIN, LOGIN, 403, 403, 200, 403)},
    "supervisor/transactions/export.csv": {"GET": row(LOGIN, LOGIN, 403, 403, 200, 403)},
    "supervisor/transactions/<int:pk>/": {"GET": row(LOGIN, LOGIN, 403, 403, 200, 403)},
    "supervisor/conversations/": {"GET": row(LOGIN, LOGIN, 403, 403, 200, 403)},
    "supervisor/conversations/<int:pk>/": {"GET": row(LOGIN, LOGIN, 403, 403, 200, 403)},
    # The REST API takes bearer API keys only: a desk session (even an admin's) is no credential there.
    "api/v1/": {"GET": row(*[404] * 6)},
    "api/v1/openapi.json": {"GET": row(*[200] * 6)},
    "api/v1/docs": {"GET": row(*[200] * 6)},
    "api/v1/payment-requests": {"GET": row(*[401] * 6), "POST": row(*[401] * 6)},
    "api/v1/payment-requests/<id>": {"GET": row(*[401] * 6)},
    "api/v1/payment-requests/<id>/cancel": {"POST": row(*[401] * 6)},
    "api/v1/^": {"GET": row(*[404] * 6)},  # any other path under the API: a JSON 404 (api/v1.py)
    "pay/<str:token>/": {"GET": row(404, 200, 404, 404, 404, 404)},
    "pay/<str:token>/open/": {"POST": row(204, 200, 204, 204, 204, 204)},
    "pay/<str:token>/payment/": {"POST": row(200, 200, 200, 200, 200, 200)},
    "pay/stripe/return/": {"GET": row(*[200] * 6)},
    # Gateways authenticate by signature alone; unsigned posts are refused whoever sends them.
    "webhooks/sandbox/": {"GET": row(*[405] * 6), "POST": row(*[400] * 6)},
    "webhooks/stripe/": {"GET": row(*[405] * 6), "POST": row(*[400] * 6)},
    # Messaging providers (docs/channels.md): WhatsApp's GET is its verify-token handshake.
    "webhooks/whatsapp/": {"GET": row(*[403] * 6), "POST": row(*[400] * 6)},
    "webhooks/clickatell/": {"GET": row(*[405] * 6), "POST": row(*[400] * 6)},
}


def url_patterns(resolver=None, prefix: str = "") -> list[str]:
    """Every URL pattern of the URLconf as one string, e.g. "desk/conversations/<int:pk>/"."""
    patterns = []
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            patterns += url_patterns(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            patterns.append(prefix + str(entry.pattern))
    return sorted(set(patterns))


def is_admin(pattern: str) -> bool:
    return pattern.startswith("admin/")


@pytest.fixture
def world(db):
    alice = AgentFactory(username="alice")
    bob = AgentFactory(username="bob")
    sam = SupervisorFactory(username="sam")
    root = get_user_model().objects.create_superuser("root", "root@example.com", "chatdesk-test")
    conversation = ConversationFactory(status="open", assigned_agent=alice)
    payment_request = send(conversation, alice)
    return {
        "users": {"agent": alice, "other_agent": bob, "supervisor": sam, "admin": root},
        "conversation": conversation,
        "payment_request": payment_request,
        "pay_token": token_of(payment_request),
        "chat_token": conversation.customer_token,
    }


def client_for(world, role: str) -> Client:
    client = Client()
    if user := world["users"].get(role):
        client.force_login(user)
    return client


def concrete(pattern: str, world, role: str) -> str:
    """The pattern with real ids; token URLs get the customer's token only for the customer."""
    customer = role == "customer"
    pay_token = world["pay_token"] if customer else secrets.token_urlsafe(32)
    chat_token = world["chat_token"] if customer else secrets.token_urlsafe(32)
    object_id = world["payment_request"].pk if "payment" in pattern or "transactions" in pattern else None
    path = (
        pattern.replace("<int:pk>", str(object_id or world["conversation"].pk))
        .replace("<id>", str(world["payment_request"].pk))
        .replace("chat/<str:token>", f"chat/{chat_token}")
        .replace("pay/<str:token>", f"pay/{pay_token}")
    )
    assert "<" not in path, f"no way to fill in {pattern}"
    return "/" + path


def fingerprint() -> tuple:
    """What a refused request must not change."""
    return (
        list(PaymentRequest.objects.order_by("pk").values_list("pk", "status", "version")),
        PaymentEvent.objects.count(),
        list(Conversation.objects.order_by("pk").values_list("pk", "status", "assigned_agent", "version")),
        Message.objects.count(),
        GatewayWebhookEvent.objects.count(),
    )


def check(response, expected, role: str, what: str) -> None:
    status = response.status_code
    if expected in (LOGIN, ADMIN_LOGIN, REDIRECT):
        assert status == 302, (what, role, status)
        location = response["Location"]
        if expected == LOGIN:
            assert location.startswith("/accounts/login/?next="), (what, role, location)
        elif expected == ADMIN_LOGIN:
            assert location.startswith("/admin/login/?next="), (what, role, location)
        else:
            assert "?next=" not in location, (what, role, location)
    elif isinstance(expected, tuple):
        assert status in expected, (what, role, status)
    else:
        assert status == expected, (what, role, status, response.content[:300])


def test_every_url_has_a_row():
    missing = [pattern for pattern in url_patterns() if not is_admin(pattern) and pattern not in MATRIX]
    stale = [pattern for pattern in MATRIX if pattern not in url_patterns()]
    assert missing == [], "add these URLs to the authorization matrix"
    assert stale == []


@pytest.mark.parametrize("pattern", sorted(MATRIX))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_what_the_matrix_says(world, pattern, role):
    for method, expected in MATRIX[pattern].items():
        client = client_for(world, role)
        url = concrete(pattern, world, role)
        before = fingerprint()
        response = client.get(url) if method == "GET" else client.post(url, {})
        check(response, expected[role], role, f"{method} {url}")
        if method == "POST" and response.status_code in {302, 400, 401, 403, 404, 405, 409, 422}:
            if pattern != "accounts/logout/":
                assert fingerprint() == before, f"refused {method} {url} as {role} changed something"


def _admin_concrete(pattern: str, world) -> str:
    path = (
        pattern.replace("<path:object_id>", str(world["users"]["agent"].pk))
        .replace("<id>", str(world["users"]["agent"].pk))
        .replace("<path:content_type_id>", "1")
        .replace("^(?P<app_label>auth|desk|payments|api)/$", "auth/")
        .replace("(?P<app_label>", "")
    )
    if "(?P<url>" in path:
        path = "admin/nowhere/"
    return "/" + path.replace("^", "").replace("$", "")


def test_only_staff_reach_any_admin_url(world):
    patterns = [pattern for pattern in url_patterns() if is_admin(pattern)]
    assert len(patterns) > 20
    for pattern in patterns:
        url = _admin_concrete(pattern, world)
        for role in ("anonymous", "agent", "supervisor"):  # a customer is anonymous; bob is an agent
            response = client_for(world, role).get(url)
            if pattern in {"admin/login/"}:
                assert response.status_code == 200, (url, role)
            elif pattern == "admin/logout/":  # a GET logs nobody out
                assert response.status_code in {302, 405}, (url, role)
            else:
                check(response, ADMIN_LOGIN, role, url)
        if (
            "object_id" not in pattern
        ):  # the admin's own pages answer (object pages: see tests/*/test_admin.py)
            assert client_for(world, "admin").get(url).status_code < 500, url


# --- Websockets ---------------------------------------------------------------------------------------------

WS_ROLES = ROLES
# route -> expected by role: True (accepted, snapshot sent) or False (turned away with 4403)
WS_MATRIX = {
    "ws/desk/": dict(zip(WS_ROLES, (False, False, True, True, True, False), strict=True)),
    "ws/desk/conversations/<int:conversation_id>/": dict(
        zip(WS_ROLES, (False, False, True, False, True, False), strict=True)
    ),
    "ws/chat/<str:token>/": dict(zip(WS_ROLES, (False, True, False, False, False, False), strict=True)),
    "ws/pay/<str:token>/": dict(zip(WS_ROLES, (False, True, False, False, False, False), strict=True)),
}
# Client message types the consumers are sent: only "ping" means anything; the rest must change nothing.
WS_MESSAGES = [
    {"type": "ping"},
    {"type": "cancel", "payment_request_id": "{pr}"},
    {"type": "payment.request_changed", "payment_request_id": "{pr}", "conversation_id": "{conversation}"},
    {"type": "message.created", "message_id": 1, "conversation_id": "{conversation}"},
    {"type": "accept", "conversation_id": "{conversation}"},
    {"type": "send_message", "body": "hi", "conversation_id": "{conversation}"},
    {},
    [],
    "text",
]


def test_every_websocket_route_has_a_row():
    routes = sorted(str(route.pattern) for route in desk_websockets + payments_websockets)
    assert routes == sorted(WS_MATRIX)


@database_sync_to_async
def _ws_world():
    alice = AgentFactory(username="ws-alice")
    users = {
        "agent": alice,
        "other_agent": AgentFactory(username="ws-bob"),
        "supervisor": SupervisorFactory(username="ws-sam"),
        "admin": get_user_model().objects.create_superuser("ws-root", "r@example.com", "chatdesk-test"),
    }
    conversation = ConversationFactory(status="open", assigned_agent=alice)
    payment_request = send(conversation, alice)
    cookies = {}
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        cookies[role] = f"sessionid={client.cookies['sessionid'].value}".encode()
    return {
        "cookies": cookies,
        "conversation": conversation,
        "payment_request": payment_request,
        "pay_token": token_of(payment_request),
        "chat_token": conversation.customer_token,
    }


@database_sync_to_async
def _ws_fingerprint():
    return fingerprint()


def _ws_path(route: str, world, role: str) -> str:
    customer = role == "customer"
    return "/" + (
        route.replace("<int:conversation_id>", str(world["conversation"].pk))
        .replace("chat/<str:token>", f"chat/{world['chat_token'] if customer else secrets.token_urlsafe(32)}")
        .replace("pay/<str:token>", f"pay/{world['pay_token'] if customer else secrets.token_urlsafe(32)}")
    )


async def _drain(communicator) -> list:
    out = []
    while not await communicator.receive_nothing(timeout=0.2):
        out.append(await communicator.receive_output())
    return out


@pytest.mark.django_db(transaction=True)
async def test_each_role_gets_what_the_websocket_matrix_says_and_no_message_type_acts():
    world = await _ws_world()
    for route, expected in WS_MATRIX.items():
        for role in WS_ROLES:
            headers = [(b"origin", b"http://127.0.0.1")]
            if role in world["cookies"]:
                headers.append((b"cookie", world["cookies"][role]))
            communicator = WebsocketCommunicator(application, _ws_path(route, world, role), headers=headers)
            try:
                await _check_route(communicator, world, route, role, expected[role])
            finally:
                # A refused socket's consumer is still running: left alone, it blocks the loop's teardown.
                await communicator.disconnect()


async def _check_route(communicator, world, route: str, role: str, allowed: bool) -> None:
    connected, code = await communicator.connect(timeout=5)
    if not allowed:
        # Refused: at the handshake, or (desk, chat) accepted and closed with 4403 so the page learns it.
        if connected:
            first = await communicator.receive_output(timeout=5)
            assert first == {"type": "websocket.close", "code": CLOSE_FORBIDDEN}, (route, role)
        else:
            assert code == CLOSE_FORBIDDEN, (route, role, code)
        return
    assert connected, (route, role)
    first = await communicator.receive_output(timeout=5)
    assert first["type"] == "websocket.send", (route, role)
    await _drain(communicator)
    before = await _ws_fingerprint()
    for message in WS_MESSAGES:
        text = json.dumps(message).replace('"{pr}"', str(world["payment_request"].pk))
        text = text.replace('"{conversation}"', str(world["conversation"].pk))
        await communicator.send_to(text_data=text)
    await communicator.send_to(text_data="not json {")  # a broken frame must not kill the server
    outputs = await _drain(communicator)
    assert await _ws_fingerprint() == before, (route, role)
    pongs = [o for o in outputs if o.get("type") == "websocket.send" and '"pong"' in o.get("text", "")]
    assert len(pongs) == 1, (route, role, outputs)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", [b"http://evil.example", b"https://127.0.0.1.evil.example", b"null"])
async def test_a_foreign_origin_is_refused_on_every_route_even_with_a_session(origin):
    world = await _ws_world()
    for route in WS_MATRIX:
        headers = [(b"origin", origin), (b"cookie", world["cookies"]["agent"])]
        communicator = WebsocketCommunicator(application, _ws_path(route, world, "customer"), headers=headers)
        connected, _ = await handshake(communicator)
        assert not connected, (route, origin)
