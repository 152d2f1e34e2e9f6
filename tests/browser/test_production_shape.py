"""The production shape of docker-compose.yml: nginx with the repository's deploy/nginx.conf in front of
gunicorn (plain HTTP) and Daphne (websockets). A customer pays through it while the agent's card follows
live, and the rate limits tell clients apart by the address the proxy passes on.

Needs Debian's nginx (`apt-get install -y nginx`, as .ci/run does): skipped without it, failed when
CHATDESK_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from tests.browser.live_processes import GunicornServer, NginxProxy, live_environment
from tests.browser.pages import card, expect_live, pay_with_good_test_card, start_web_chat

CUSTOMER = "Naledi Dube"


def nginx_executable() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if path:
        return path
    message = "Debian nginx not found: apt-get install -y nginx"
    if os.environ.get("CHATDESK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CHATDESK_REQUIRE_BROWSER=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def live_server_env() -> dict[str, str]:
    return {"RATELIMIT_IP_META_KEY": "HTTP_X_REAL_IP"}  # as docker-compose.yml sets it behind its proxy


@pytest.fixture(scope="module")
def proxy(daphne_server, live_server_env, _live_log_dir) -> Iterator[NginxProxy]:
    nginx = nginx_executable()
    gunicorn = GunicornServer(env=live_environment(live_server_env), log_path=_live_log_dir / "gunicorn.log")
    proxy = NginxProxy(
        nginx,
        http_port=gunicorn.port,
        websocket_port=daphne_server.port,
        run_dir=_live_log_dir / "nginx",
        log_path=_live_log_dir / "nginx.log",
    )
    try:
        gunicorn.start()
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
        gunicorn.stop()


@pytest.fixture(scope="module")
def site_url(proxy: NginxProxy) -> str:
    return proxy.url


def test_a_customer_pays_through_the_proxy_while_the_agents_card_follows_live(
    customer_page: Page, agent1_page: Page, proxy: NginxProxy, celery_worker_and_beat
):
    # Given a customer's web chat, accepted by agent1, both pages live through the proxy's /ws/
    start_web_chat(
        customer_page, name=CUSTOMER, phone="082 555 0142", message="Can I pay for order P-77 here?"
    )
    expect_live(customer_page)
    agent1_page.get_by_role("list", name="Queue").get_by_role("link", name=CUSTOMER).click()
    expect_live(agent1_page)
    agent1_page.get_by_role("button", name="Accept chat").click()

    # When agent1 sends a Chat 2 Pay link
    agent1_page.get_by_role("button", name="Extensions").click()
    agent1_page.get_by_role("button", name="Chat 2 Pay").click()
    dialog = agent1_page.get_by_role("dialog", name="Chat 2 Pay")
    dialog.get_by_label("Amount").fill("77.70")
    dialog.get_by_label("Order number").fill("P-77")
    dialog.get_by_role("button", name="Send").click()
    expect(card(agent1_page, "P-77")).to_have_attribute("data-status", "sent")

    # Then the customer's link points at the proxy (its Host, port included, reached Django)
    transcript = customer_page.get_by_role("list", name="Transcript")
    expect(transcript).to_contain_text("Payment request for order P-77: ZAR 77.70")
    link = transcript.get_by_role("link").last.get_attribute("href")
    assert re.fullmatch(rf"{re.escape(proxy.url)}/pay/[\w-]{{43,}}/", link)

    # When the customer opens it and pays with the good test card
    customer_page.goto(link)
    expect(card(agent1_page, "P-77")).to_have_attribute("data-status", "clicked")
    expect_live(customer_page)
    pay_with_good_test_card(customer_page)

    # Then the gateway's webhook (through the proxy, to gunicorn) makes it paid on both screens, live
    expect(customer_page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(card(agent1_page, "P-77")).to_have_attribute("data-status", "paid")
    expect(agent1_page.get_by_role("list", name="Transcript")).to_contain_text(
        "Payment received for order P-77: ZAR 77.70"
    )


def status_through(proxy: NginxProxy, path: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"{proxy.url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_rate_limits_tell_clients_apart_by_the_address_the_proxy_passes_on(proxy, transactional_db):
    # Given two clients behind a load balancer on a private network (it sends X-Forwarded-For), with fresh
    # addresses from the benchmarking range so that no earlier run's counters apply
    guesser, neighbour = (f"198.{net}.{random.randrange(256)}.{random.randrange(1, 255)}" for net in (18, 19))
    allowed = int(settings.RATELIMIT_UNKNOWN_TOKENS.split("/")[0])

    # When the guesser tries unknown payment links up to the limit, then once more
    guesses = [f"/pay/not-a-token-{n}/" for n in range(allowed + 1)]
    answers = [status_through(proxy, path, {"X-Forwarded-For": guesser}) for path in guesses]

    # Then each miss is a 404 until the limit, and then it is refused
    assert answers == [404] * allowed + [429]
    # And forging the header the limit reads does not help: the proxy overwrites it
    assert status_through(proxy, "/pay/x/", {"X-Forwarded-For": guesser, "X-Real-IP": neighbour}) == 429
    # While the neighbour behind the same balancer is still answered
    assert status_through(proxy, "/pay/not-a-token/", {"X-Forwarded-For": neighbour}) == 404
