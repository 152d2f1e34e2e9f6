"""Chat 2 Pay end to end in Chromium, against live Daphne, a Celery worker and beat: the agent sends a link,
the customer opens and pays it with the sandbox's test cards, and every card changes live."""

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
    pay_with_good_test_card,
    start_web_chat,
)

pytestmark = pytest.mark.browser

CUSTOMER = "Thandi Nkosi"


def transcript(page: Page):
    return page.get_by_role("list", name="Transcript")


def open_conversation(page: Page, conversation_id: int) -> None:
    page.goto(f"/desk/conversations/{conversation_id}/")
    expect_live(page)


def accepted_conversation(agent):
    conversation = call_in_thread(
        desk_actions.start_conversation,
        name=CUSTOMER,
        phone="+27825550199",
        body="I'd like to pay for my order.",
    )
    return call_in_thread(desk_actions.accept_conversation, conversation.pk, agent=agent)


def sent_request(conversation, agent, site_url: str, order_number: str):
    return call_in_thread(
        actions.send_payment_request,
        conversation.pk,
        agent=agent,
        phone="+27825550199",
        amount=Decimal("120.50"),
        currency="ZAR",
        order_number=order_number,
        description="",
        idempotency_key=uuid.uuid4().hex,
        site_url=site_url + "/",
    )


def pay_link(page: Page) -> str:
    """The link the customer received, read from their own chat page."""
    return transcript(page).get_by_role("link").last.get_attribute("href")


def test_the_agent_sends_a_link_and_the_customer_pays_it_while_the_card_follows_live(
    customer_page: Page, agent1_page: Page, celery_worker_and_beat
):
    # Given a customer chatting with agent1 (started from the web chat, accepted on the desk)
    start_web_chat(
        customer_page, name=CUSTOMER, phone="082 555 0199", message="I'd like to pay for order A-1001."
    )
    expect_live(customer_page)
    agent1_page.get_by_role("list", name="Queue").get_by_role("link", name=CUSTOMER).click()
    expect(transcript(agent1_page)).to_contain_text("I'd like to pay for order A-1001.")
    expect_live(agent1_page)
    agent1_page.get_by_role("button", name="Accept chat").click()
    expect(agent1_page.get_by_role("button", name="Extensions")).to_be_visible()
    expect_live(agent1_page)
    mark_page_as_not_reloaded(agent1_page)

    # When agent1 opens Extensions, picks Chat 2 Pay and fills in the pop-up (the phone is already there)
    agent1_page.get_by_role("button", name="Extensions").click()
    agent1_page.get_by_role("button", name="Chat 2 Pay").click()
    dialog = agent1_page.get_by_role("dialog", name="Chat 2 Pay")
    expect(dialog.get_by_label("Phone number")).to_have_value("+27825550199")
    expect(dialog.get_by_label("Currency")).to_have_value("ZAR")
    dialog.get_by_label("Amount").fill("120.50")
    dialog.get_by_label("Order number").fill("A-1001")
    dialog.get_by_label("Description").fill("Blue jacket, size M")
    dialog.get_by_role("button", name="Send").click()

    # Then the pop-up closes, a toast confirms, and the card is in the conversation as sent
    expect(agent1_page.get_by_role("dialog")).to_have_count(0)
    expect(agent1_page.get_by_role("status").filter(has_text="A-1001")).to_be_visible()
    expect(card(agent1_page, "A-1001")).to_have_attribute("data-status", "sent")
    expect(card(agent1_page, "A-1001")).to_contain_text("ZAR 120.50")
    expect(card(agent1_page, "A-1001").get_by_role("button", name="Cancel payment")).to_be_visible()

    # And the customer has the link in their chat, naming order and amount
    expect(transcript(customer_page)).to_contain_text("Payment request for order A-1001: ZAR 120.50")

    # When the customer opens it
    link = pay_link(customer_page)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/pay/[\w-]{43,}/", link)
    pay_page = customer_page
    pay_page.goto(link)

    # Then the page shows the order and the gateway's form, and agent1's card turns clicked, live
    expect(pay_page.get_by_text("A-1001").first).to_be_visible()
    expect(pay_page.get_by_label("Card number")).to_be_visible()
    expect(card(agent1_page, "A-1001")).to_have_attribute("data-status", "clicked")
    expect(card(agent1_page, "A-1001").get_by_role("button", name="Cancel payment")).to_have_count(0)

    # When the customer pays with the good test card
    expect_live(pay_page)
    pay_with_good_test_card(pay_page)

    # Then the gateway's webhook makes it paid: on the pay page and on agent1's card, both live
    expect(pay_page.get_by_role("heading", name="Payment received")).to_be_visible()
    expect(card(agent1_page, "A-1001")).to_have_attribute("data-status", "paid")
    # And both sides get the payment confirmation in the conversation
    confirmation = "Payment received for order A-1001: ZAR 120.50"
    expect(transcript(agent1_page)).to_contain_text(confirmation)
    pay_page.go_back()
    expect(transcript(pay_page)).to_contain_text(confirmation)
    expect_not_reloaded(agent1_page)


def test_a_cancel_shows_a_toast_tells_the_customer_and_kills_the_link(
    customer_page: Page, agent1_page: Page, agent1, daphne_server
):
    # Given a link the customer has not opened, on agent1's screen and in the customer's chat
    conversation = accepted_conversation(agent1)
    sent_request(conversation, agent1, daphne_server.url, "B-2002")
    open_conversation(agent1_page, conversation.pk)
    customer_page.goto(f"/chat/{conversation.customer_token}/")
    expect_live(customer_page)
    link = pay_link(customer_page)

    # When agent1 presses "Cancel payment"
    card(agent1_page, "B-2002").get_by_role("button", name="Cancel payment").click()

    # Then a toast says it is canceled, and the card shows it without the button
    expect(
        agent1_page.get_by_role("status").filter(has_text="Payment request for order B-2002 canceled.")
    ).to_be_visible()
    expect(card(agent1_page, "B-2002")).to_have_attribute("data-status", "canceled")
    expect(card(agent1_page, "B-2002").get_by_role("button", name="Cancel payment")).to_have_count(0)
    # And the customer is told in the vendor's words, live
    expect(transcript(customer_page)).to_contain_text("The B-2002 has been canceled by the Agent")
    # And the link is dead: no form, and nothing about the customer
    customer_page.goto(link)
    expect(customer_page.get_by_role("heading", name="Payment link canceled")).to_be_visible()
    expect(customer_page.get_by_label("Card number")).to_have_count(0)
    expect(customer_page.get_by_text(CUSTOMER)).to_have_count(0)


def test_a_cancel_after_the_customer_clicked_is_refused_with_a_toast(
    new_page, customer_page: Page, agent1, daphne_server
):
    # Given agent1's page whose live updates are lost (its socket reaches nothing), still offering Cancel
    conversation = accepted_conversation(agent1)
    payment_request = sent_request(conversation, agent1, daphne_server.url, "C-3003")
    page = new_page("agent1")
    page.route_web_socket(re.compile(r".*/ws/.*"), lambda socket: None)  # a socket that never hears anything
    from tests.browser.pages import log_in

    log_in(page, agent1.username)
    page.goto(f"/desk/conversations/{conversation.pk}/")
    expect(card(page, "C-3003").get_by_role("button", name="Cancel payment")).to_be_visible()

    # When the customer opens the link first
    customer_page.goto(re.search(r"https?://\S+/pay/[\w-]+/", payment_request.message.body)[0])
    expect(customer_page.get_by_label("Card number")).to_be_visible()

    # Then agent1's Cancel is refused with the spec's reason, and the card shows the truth
    card(page, "C-3003").get_by_role("button", name="Cancel payment").click()
    expect(
        page.get_by_role("status").filter(has_text="The customer has already clicked the link.")
    ).to_be_visible()
    expect(card(page, "C-3003")).to_have_attribute("data-status", "clicked")
    expect(customer_page.get_by_label("Card number")).to_be_visible()  # nothing changed for the customer
