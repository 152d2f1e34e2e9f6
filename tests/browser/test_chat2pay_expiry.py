"""Chat 2 Pay windows running out, live: with short windows (set through the environment), beat's sweep
expires the request and both the agent's card and the customer's open pay page show it without a reload."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from desk import actions as desk_actions
from payments import actions
from tests.browser.pages import (
    call_in_thread,
    card,
    expect_live,
    expect_not_reloaded,
    mark_page_as_not_reloaded,
)

pytestmark = pytest.mark.browser

CLICK_WINDOW, PAY_WINDOW = 3, 5
# The sweep runs every second; allow for its lateness, the push, and a loaded test machine.
EXPIRED_WITHIN_MS = (max(CLICK_WINDOW, PAY_WINDOW) + 5) * 1000


@pytest.fixture(scope="module")
def live_server_env():
    return {
        "CHAT2PAY_CLICK_WINDOW_SECONDS": str(CLICK_WINDOW),
        "CHAT2PAY_PAY_WINDOW_SECONDS": str(PAY_WINDOW),
    }


@pytest.fixture(autouse=True)
def _same_windows_here(settings):
    """Requests sent from this test process follow the live servers' windows."""
    settings.CHAT2PAY_CLICK_WINDOW_SECONDS = CLICK_WINDOW
    settings.CHAT2PAY_PAY_WINDOW_SECONDS = PAY_WINDOW


def send_in_new_chat(agent, site_url: str, order_number: str):
    conversation = call_in_thread(
        desk_actions.start_conversation, name="Lerato Mokoena", phone="+27831234568", body="Hi"
    )
    call_in_thread(desk_actions.accept_conversation, conversation.pk, agent=agent)
    payment_request = call_in_thread(
        actions.send_payment_request,
        conversation.pk,
        agent=agent,
        phone="+27831234568",
        amount=Decimal("1500"),
        currency="JPY",
        order_number=order_number,
        description="",
        idempotency_key=uuid.uuid4().hex,
        site_url=site_url + "/",
    )
    return conversation, re.search(r"https?://\S+/pay/[\w-]+/", payment_request.message.body)[0]


def test_an_unopened_link_expires_live_on_the_agents_card(
    agent1_page: Page, agent1, daphne_server, celery_worker_and_beat
):
    # Given agent1 watching a card for a link nobody opens
    conversation, _link = send_in_new_chat(agent1, daphne_server.url, "E-1")
    agent1_page.goto(f"/desk/conversations/{conversation.pk}/")
    expect_live(agent1_page)
    expect(card(agent1_page, "E-1")).to_have_attribute("data-status", "sent")
    mark_page_as_not_reloaded(agent1_page)

    # When the click window runs out, the card turns expired by itself and stops offering Cancel
    expect(card(agent1_page, "E-1")).to_have_attribute("data-status", "expired", timeout=EXPIRED_WITHIN_MS)
    expect(card(agent1_page, "E-1").get_by_role("button", name="Cancel payment")).to_have_count(0)
    expect_not_reloaded(agent1_page)


def test_an_opened_link_expires_live_on_the_pay_page_and_the_card(
    agent1_page: Page, customer_page: Page, agent1, daphne_server, celery_worker_and_beat
):
    # Given the customer opened the link (so the pay window runs) and agent1 watches the card
    conversation, link = send_in_new_chat(agent1, daphne_server.url, "E-2")
    agent1_page.goto(f"/desk/conversations/{conversation.pk}/")
    expect_live(agent1_page)
    customer_page.goto(link)
    expect(customer_page.get_by_label("Card number")).to_be_visible()
    expect(customer_page.get_by_role("button", name="Pay JPY 1,500")).to_be_visible()
    expect(card(agent1_page, "E-2")).to_have_attribute("data-status", "clicked")
    expect_live(customer_page)
    mark_page_as_not_reloaded(customer_page)

    # When the pay window runs out without a payment
    # Then the customer's open page says so and drops the form, and the agent's card turns expired, all live
    heading = customer_page.get_by_role("heading", name="Payment link expired")
    expect(heading).to_be_visible(timeout=EXPIRED_WITHIN_MS)
    expect(customer_page.get_by_label("Card number")).to_have_count(0)
    expect(card(agent1_page, "E-2")).to_have_attribute("data-status", "expired")
    expect_not_reloaded(customer_page)
