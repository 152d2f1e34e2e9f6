"""CSRF on every state-changing POST, security headers (CSP, HSTS, pay pages), sessions that expire, and an
append-only history at the database level."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client

from payments.models import PaymentEvent
from tests.security.test_authorization_matrix import MATRIX, client_for, concrete, world  # noqa: F401

pytestmark = pytest.mark.django_db

# POSTs that are not protected by the CSRF cookie, and why: gateways sign their webhooks; the REST API takes
# bearer keys only (no cookie, so no ambient authority for a forged cross-site request).
CSRF_EXEMPT = {"api/v1/payment-requests", "api/v1/payment-requests/<id>/cancel"}
# For each POST, the role that may make it (so that only the missing token can be the reason for a 403).
POSTER = {"chat/<str:token>/messages/": "customer", "chat/": "anonymous", "accounts/logout/": "agent"}


def posts() -> list[str]:
    return sorted(pattern for pattern, methods in MATRIX.items() if "POST" in methods)


@pytest.mark.parametrize(
    "pattern", [p for p in posts() if p not in CSRF_EXEMPT and not p.startswith("webhooks/")]
)
def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(world, pattern):  # noqa: F811
    from tests.security.test_authorization_matrix import fingerprint

    role = POSTER.get(pattern, "customer" if pattern.startswith("pay/") else "agent")
    client = client_for(world, role)
    client.handler.enforce_csrf_checks = True
    url = concrete(pattern, world, role)
    before = fingerprint()

    response = client.post(url, {"body": "hello"}, headers={"User-Agent": "Mozilla/5.0 Chrome/126"})

    assert response.status_code == 403, url
    assert fingerprint() == before

    # And with the token the page carries (htmx sends it as X-CSRFToken), the same POST gets through.
    page = client.get("/accounts/login/" if role in {"anonymous", "customer"} else "/desk/")
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else None
    assert token or page.status_code == 302
    response = client.post(url, {"body": "hello"}, headers={"X-CSRFToken": token or ""})
    assert response.status_code != 403, url


def test_every_page_sends_the_csrf_token_to_htmx():
    base = (settings.BASE_DIR / "templates" / "base.html").read_text()
    assert """hx-headers='{"X-CSRFToken": "{{ csrf_token }}"}'""" in base


# --- Headers ------------------------------------------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def test_every_html_page_has_a_csp_without_inline_script_and_no_inline_script(world):  # noqa: F811
    pages = 0
    for pattern, methods in MATRIX.items():
        if "GET" not in methods:
            continue
        for role, expected in methods["GET"].items():
            if expected != 200:
                continue
            response = client_for(world, role).get(concrete(pattern, world, role))
            csp = response.get("Content-Security-Policy", "")
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp
            if response.get("Content-Type", "").startswith("text/html"):
                html = response.content.decode()
                assert not INLINE_SCRIPT.search(html), (pattern, INLINE_SCRIPT.search(html).group())
                assert not INLINE_HANDLER.search(html), (pattern, INLINE_HANDLER.search(html).group())
                pages += 1
            break
    assert pages >= 15


def test_no_template_has_inline_script_or_event_handlers():
    for path in (settings.BASE_DIR / "templates").rglob("*.html"):
        text = path.read_text()
        assert not INLINE_SCRIPT.search(text), path
        assert not INLINE_HANDLER.search(text), path


@pytest.mark.parametrize("path_kind", ["valid", "unknown", "closed"])
def test_pay_pages_are_private_whatever_the_answer(world, path_kind):  # noqa: F811
    from payments import actions

    token = world["pay_token"] if path_kind != "unknown" else "x" * 43
    if path_kind == "closed":
        actions.cancel_payment_request(world["payment_request"].pk, agent=world["users"]["agent"])
    for method, suffix in [("get", ""), ("post", "open/"), ("post", "payment/")]:
        response = getattr(Client(), method)(f"/pay/{token}/{suffix}")
        assert response["Cache-Control"] == "no-store"
        assert response["Referrer-Policy"] == "no-referrer"
        assert "noindex" in response["X-Robots-Tag"]
    page = Client().get(f"/pay/{token}/").content.decode()
    assert '<meta name="robots" content="noindex, nofollow">' in page
    customer = world["payment_request"].customer  # no PII on the page
    assert customer.phone not in page
    assert customer.name not in page


def test_production_settings_send_hsts_and_secure_cookies():
    code = (
        "from django.conf import settings as s; import django; django.setup(); "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_SSL_REDIRECT, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "chatdesk.settings",
        "SECRET_KEY": "x" * 50,
        "DEBUG": "false",
        "DATABASE_URL": "postgres://u@127.0.0.1/x",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "CHAT2PAY_ALLOW_SANDBOX": "true",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["31536000", "True", "True", "True", "True"]


def test_an_https_response_carries_hsts(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    response = client.get("/accounts/login/", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000; includeSubDomains")


# --- Sessions -----------------------------------------------------------------------------------------------


def test_a_login_session_expires_after_session_cookie_age(world):  # noqa: F811
    with time_machine.travel(0, tick=False) as clock:
        clock.move_to("2030-01-01T09:00:00Z")
        client = client_for(world, "agent")
        assert client.get("/desk/").status_code == 200
        clock.shift(timedelta(seconds=settings.SESSION_COOKIE_AGE - 60))
        assert client.get("/desk/").status_code == 200
        clock.shift(timedelta(seconds=61))
        response = client.get("/desk/")
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_logging_out_kills_the_session_server_side(world):  # noqa: F811
    client = client_for(world, "agent")
    cookie = client.cookies["sessionid"].value
    client.post("/accounts/logout/")
    replay = Client()
    replay.cookies["sessionid"] = cookie
    assert replay.get("/desk/").status_code == 302


# --- History ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE payments_paymentevent SET to_status = 'paid' WHERE id = %s",
        "DELETE FROM payments_paymentevent WHERE id = %s",
    ],
)
def test_history_rows_cannot_be_changed_or_deleted_even_with_raw_sql(world, sql):  # noqa: F811
    event = PaymentEvent.objects.filter(payment_request=world["payment_request"]).first()
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [event.pk])
    assert PaymentEvent.objects.get(pk=event.pk).to_status == event.to_status
