"""Rate limits against guessing and brute force: django-ratelimit counting in Redis (the default cache).

Two things are limited, per client IP (`RATELIMIT_IP_META_KEY`), and the counters are shared by every web
process because they live in Redis:

- **Unknown customer tokens** (`/pay/<token>/…`, `/chat/<token>/…` and their websockets). A real customer
  holds a working link and never misses, so only misses are counted; once an IP has missed more than
  `RATELIMIT_UNKNOWN_TOKENS`, every token URL answers it 429, even for a token that exists, so a guesser
  learns nothing more until the window ends. Customers behind the same IP are unaffected until then.
- **Failed logins**, per IP and per username (`RATELIMIT_LOGIN_FAILURES`): over the limit, the login page
  answers 429 and the authentication backend refuses even the right password, on /accounts/login/ and on
  the admin's login alike.
- **New web chats** (`POST /chat/`), per IP (`RATELIMIT_CHAT_STARTS`): each one lands in every agent's queue.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django_ratelimit.core import get_usage, is_ratelimited

UNKNOWN_TOKEN_GROUP = "chatdesk.unknown-token"
LOGIN_FAILURE_GROUP = "chatdesk.login-failure"
CHAT_START_GROUP = "chatdesk.chat-start"
TOO_MANY = "Too many attempts from your network. Wait a few minutes and try again."


def _limited(request, group: str, rate: str, *, key="ip", increment: bool) -> bool:
    return is_ratelimited(request, group=group, key=key, rate=rate, increment=increment)


def _used_up(request, group: str, rate: str, *, key="ip") -> bool:
    """Whether the window's allowance is spent (count ≥ limit), read without counting: "10/15m" allows 10."""
    usage = get_usage(request, group=group, key=key, rate=rate, increment=False)
    return usage is not None and usage["count"] >= usage["limit"]


def too_many_requests(message: str = TOO_MANY) -> HttpResponse:
    response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = "60"
    return response


# --- Customer tokens ----------------------------------------------------------------------------------------


def token_guessing_blocked(request) -> bool:
    """Whether this client has already missed too many tokens (reads the counter, adds nothing)."""
    return _used_up(request, UNKNOWN_TOKEN_GROUP, settings.RATELIMIT_UNKNOWN_TOKENS)


def count_unknown_token(request) -> None:
    _limited(request, UNKNOWN_TOKEN_GROUP, settings.RATELIMIT_UNKNOWN_TOKENS, increment=True)


def limit_token_guessing(view):
    """For views reached by a customer token: 429 once the client missed too often; a 404 counts a miss."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if token_guessing_blocked(request):
            return too_many_requests()
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            count_unknown_token(request)
            raise
        if response.status_code == 404:
            count_unknown_token(request)
        return response

    return wrapped


def scope_as_request(scope) -> SimpleNamespace:
    """What django-ratelimit needs of a request (method and client address), built from an ASGI scope."""
    client = scope.get("client") or ("", 0)
    # No address (a unix socket, or an in-process test): one shared bucket, 0.0.0.0.
    meta = {"REMOTE_ADDR": client[0] or "0.0.0.0"}
    key = settings.RATELIMIT_IP_META_KEY
    if key.startswith("HTTP_"):  # the proxy's header, as Django would name it in request.META
        wanted = key[5:].lower().replace("_", "-").encode()
        for name, value in scope.get("headers", []):
            if name.lower() == wanted:
                meta[key] = value.decode("latin-1").split(",")[0].strip()
    return SimpleNamespace(method="GET", META=meta, user=None)


def admit_socket_token(scope, find: Callable[[str], int | None]) -> int | None:
    """`limit_token_guessing` for a websocket: the id that the token in the socket's URL opens, or None to
    refuse the socket (a refused socket is an answer too, so a miss counts). Sync, so that a consumer makes
    the lookup and the limit one trip to the database thread."""
    client = scope_as_request(scope)
    if token_guessing_blocked(client):
        return None
    found = find(scope["url_route"]["kwargs"]["token"])
    if found is None:
        count_unknown_token(client)
    return found


# --- Chat starts --------------------------------------------------------------------------------------------


def chat_start_limited(request) -> bool:
    """Count one new chat from this client; True once over the limit."""
    return _limited(request, CHAT_START_GROUP, settings.RATELIMIT_CHAT_STARTS, increment=True)


# --- Logins -------------------------------------------------------------------------------------------------


def _username_key(username: str):
    return lambda group, request: (username or "").strip().lower()[:150]


def login_blocked(request, username: str) -> bool:
    rate = settings.RATELIMIT_LOGIN_FAILURES
    return _used_up(request, LOGIN_FAILURE_GROUP, rate) or _used_up(
        request, LOGIN_FAILURE_GROUP + ".user", rate, key=_username_key(username)
    )


def count_login_failure(request, username: str) -> None:
    rate = settings.RATELIMIT_LOGIN_FAILURES
    _limited(request, LOGIN_FAILURE_GROUP, rate, increment=True)
    _limited(request, LOGIN_FAILURE_GROUP + ".user", rate, key=_username_key(username), increment=True)


class ThrottledModelBackend(ModelBackend):
    """Django's backend, refusing every attempt (even a right password) once an IP or username has failed
    too often, and counting each failure. `request` is None for `Client.login()` and management commands,
    which are not brute-forceable from outside."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        if username is None:
            username = kwargs.get(self.get_user_model_username_field(), "")
        if login_blocked(request, username or ""):
            raise PermissionDenied  # authenticate() stops here and reports a failed login
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            count_login_failure(request, username or "")
        return user

    @staticmethod
    def get_user_model_username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
