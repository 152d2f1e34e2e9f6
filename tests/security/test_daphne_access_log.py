"""Daphne's access log prints no full link token and no customer phone number.

Production runs `daphne chatdesk.asgi:application`, whose access log is written straight to stdout, past
settings.LOGGING and its redaction filter (so the log scan of tests/security/test_zz_logs.py cannot see it).
This runs that same command, opens a pay page, a chat page and their websockets, and reads what it printed.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.browser.live_processes import DaphneServer, live_environment
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import send, token_of
from tests.reliability import profile

pytestmark = pytest.mark.django_db(transaction=True)  # the Daphne process must see the request


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def open_and_close_socket(url: str, origin: str) -> None:
    with contextlib.suppress(InvalidStatus), connect(url, origin=origin, open_timeout=10) as socket:
        socket.close()


def test_daphne_access_log_redacts_tokens_and_phone_numbers(tmp_path):
    # Given a sent payment request, its token as the customer has it, and the customer's chat
    agent = AgentFactory(username="log-alice")
    conversation = ConversationFactory(status="open", assigned_agent=agent)
    pay_token = token_of(send(conversation, agent))
    chat_token = conversation.customer_token
    phone = conversation.customer.phone
    log_path = tmp_path / "daphne.log"
    server = DaphneServer(env=live_environment(), log_path=log_path)

    # When the customer opens the pages and their sockets on the production server, and a phone number
    # travels in a query string
    server.start()
    try:
        assert get(f"{server.url}/pay/{pay_token}/") == 200
        assert get(f"{server.url}/chat/{chat_token}/") == 200
        get(f"{server.url}/pay/{pay_token}x/")  # a 404 is logged by Django as well
        get(f"{server.url}/accounts/login/?next=/desk/%3Fq%3D{quote(phone)}&phone={quote(phone)}")
        ws_url = server.url.replace("http://", "ws://")
        open_and_close_socket(f"{ws_url}/ws/pay/{pay_token}/", origin=server.url)
        open_and_close_socket(f"{ws_url}/ws/chat/{chat_token}/", origin=server.url)
    finally:
        server.stop()

    # Then the access log has a line for each, with the tokens cut to 6 characters and the phone masked
    log = log_path.read_text(errors="replace")
    access_lines = [line for line in log.splitlines() if '] "' in line]
    assert any(f'"GET /pay/{pay_token[:6]}…/' in line for line in access_lines), log
    assert any(f'"GET /chat/{chat_token[:6]}…/' in line for line in access_lines), log
    assert any(f"WSCONNECTING /ws/pay/{pay_token[:6]}…/" in line for line in access_lines), log
    assert any(f"WSCONNECTING /ws/chat/{chat_token[:6]}…/" in line for line in access_lines), log
    leaked = [
        secret for secret in (pay_token, chat_token, phone, quote(phone), phone.lstrip("+")) if secret in log
    ]
    assert leaked == [], log
    profile.record("4. Security: logs", "Daphne access log lines scanned (real `daphne`)", len(access_lines))
    profile.record("4. Security: logs", "full tokens / phone numbers in Daphne's output", "0 / 0")
