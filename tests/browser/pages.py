"""What browser tests do on pages, in the words of the UI contract (accessible names, not CSS selectors)."""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.db import connections
from playwright.sync_api import Page, expect

# The password of every user made by tests.factories.UserFactory (and AgentFactory, SupervisorFactory).
PASSWORD = "chatdesk-test"

T = TypeVar("T")


def log_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Log in through /accounts/login/ as a person would; returns once the browser has left the login page.

    Agents land on /desk/, supervisors on /supervisor/. Factory users have the password `PASSWORD`.
    """
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))


def expect_live(page: Page) -> None:
    """Wait until the page's websocket is connected (the connection indicator says "Live")."""
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def mark_page_as_not_reloaded(page: Page) -> None:
    """Set a flag on the current document; `expect_not_reloaded` fails if a navigation has cleared it."""
    page.evaluate("window.__chatdeskNotReloaded = true")


def expect_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__chatdeskNotReloaded === true"), f"{page.url} was reloaded or navigated"


# Installed before any page script runs: keeps every WebSocket the page opens in window.__chatdeskSockets.
# Test-only: the page's sockets, and a switch that makes every new socket fail to connect (a dead network as
# far as the page can tell). Chromium's offline emulation was not used for this: applied to an open socket, it
# could hold back the closing handshake, so the page's "close" event (and its offline indicator) came late
# or not at all on a loaded machine.
_RECORD_WEBSOCKETS = """
window.__chatdeskSockets = [];
window.__chatdeskNetworkDown = false;
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (url, ...args) {
  const socket = new NativeWebSocket(window.__chatdeskNetworkDown ? "ws://127.0.0.1:9/" : url, ...args);
  window.__chatdeskSockets.push(socket);
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
"""


def record_websockets(page: Page) -> None:
    """Let `drop_websockets` find the page's sockets. Call it before the page is opened (`goto`)."""
    page.add_init_script(_RECORD_WEBSOCKETS)


def drop_websockets(page: Page) -> None:
    """Cut the page's websockets as a network drop would, and keep reconnects failing until `restore_network`
    (each new socket goes to a closed port). Returns once the page's connection indicator shows it is offline.
    """
    page.evaluate(
        "window.__chatdeskNetworkDown = true; window.__chatdeskSockets.forEach((socket) => socket.close())"
    )
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")


def restore_network(page: Page) -> None:
    """End `drop_websockets`: the page reconnects by itself (after its back-off, a few seconds at most)."""
    page.evaluate("window.__chatdeskNetworkDown = false")


def call_in_thread(function: Callable[..., T], *args, **kwargs) -> T:
    """Run Django code (e.g. a `desk.actions` call) from a browser test, outside Playwright's event loop.

    Playwright's sync API keeps an asyncio loop registered as running in the test's thread. Plain ORM calls
    work there (the browser conftest sets DJANGO_ALLOW_ASYNC_UNSAFE), but an action's on-commit publish uses
    `async_to_sync`, which refuses to run beside a running loop, so its live push would be silently lost.
    In a fresh thread there is no loop; its database connection is closed afterwards.
    """

    def call() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(call).result()


def start_web_chat(customer_page: Page, *, name: str, phone: str, message: str) -> None:
    """A customer starts a chat from the web chat form, as on the site's "Chat with us" page."""
    customer_page.goto("/chat/")
    customer_page.get_by_label("Name").fill(name)
    customer_page.get_by_label("Phone number").fill(phone)
    customer_page.get_by_label("Message").fill(message)
    customer_page.get_by_role("button", name="Start chat").click()


def card(page: Page, order_number: str):
    """The Chat 2 Pay card of an order, as the desk shows it (its `data-status` follows the request)."""
    return page.locator(f'[data-order-number="{order_number}"]')


def pay_with_good_test_card(pay_page: Page) -> None:
    """Fill the sandbox's form with the test card that is approved, and press Pay."""
    pay_page.get_by_label("Card number").fill("4242 4242 4242 4242")
    pay_page.get_by_label("Expiry").fill("12/34")
    pay_page.get_by_label("CVC").fill("123")
    pay_page.get_by_role("button", name=re.compile(r"^Pay")).click()
