"""The Foundation's browser acceptance: a customer and agents chat live through real Daphne and Chromium."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from desk import actions
from tests.browser.pages import (
    call_in_thread,
    drop_websockets,
    expect_live,
    expect_not_reloaded,
    log_in,
    mark_page_as_not_reloaded,
    record_websockets,
    restore_network,
    start_web_chat,
)

pytestmark = pytest.mark.browser

CUSTOMER = "Thandi Nkosi"
SCRIPT = "<script>alert(1)</script>"


def queue(page: Page):
    return page.get_by_role("list", name="Queue")


def transcript(page: Page):
    return page.get_by_role("list", name="Transcript")


def send(page: Page, text: str) -> None:
    """Type into the composer ("Message") and press "Send": the same words for agent and customer."""
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_role("button", name="Send", exact=True).click()


def _save_screenshot(page: Page, name: str) -> None:
    """With CHATDESK_SCREENSHOT_DIR set, keep a screenshot for a person to look at."""
    if directory := os.environ.get("CHATDESK_SCREENSHOT_DIR"):
        page.screenshot(path=Path(directory) / f"{name}.png", full_page=True)


def test_a_customer_and_an_agent_chat_live_while_the_other_agents_queue_drops_it(
    customer_page: Page, agent1_page: Page, agent2_page: Page
):
    # Given two agents watching their desks (live, and never reloaded from here on)
    mark_page_as_not_reloaded(agent2_page)

    # When a customer starts a chat
    start_web_chat(
        customer_page, name=CUSTOMER, phone="082 555 0199", message="Hello, I need help with order 1001."
    )

    # Then the customer lands on their own chat page, waiting, with their message
    expect(customer_page).to_have_url(re.compile(r"/chat/[\w-]{40,}/$"))
    expect_live(customer_page)
    expect(customer_page.get_by_text("Waiting for an agent")).to_be_visible()
    expect(transcript(customer_page)).to_contain_text("Hello, I need help with order 1001.")
    mark_page_as_not_reloaded(customer_page)

    # And it appears live in both agents' queues
    for agent_page in (agent1_page, agent2_page):
        expect(queue(agent_page).get_by_role("link", name=CUSTOMER)).to_be_visible()

    # When agent1 opens it by the customer's name and accepts it
    queue(agent1_page).get_by_role("link", name=CUSTOMER).click()
    expect(transcript(agent1_page)).to_contain_text("Hello, I need help with order 1001.")
    agent1_page.get_by_role("button", name="Accept chat").click()

    # Then agent1 can reply, the chat is in agent1's own list, and it leaves agent2's queue live
    expect(agent1_page.get_by_role("button", name="Accept chat")).to_have_count(0)
    expect(agent1_page.get_by_label("Message", exact=True)).to_be_editable()
    mine = agent1_page.get_by_role("list", name="My conversations")
    expect(mine.get_by_role("link", name=CUSTOMER)).to_be_visible()
    expect(queue(agent2_page).get_by_role("link", name=CUSTOMER)).to_have_count(0)
    expect(queue(agent2_page)).to_contain_text("No one is waiting.")
    # And the customer sees that an agent joined
    expect(customer_page.get_by_text("You are chatting with Agent.")).to_be_visible()
    expect(transcript(customer_page)).to_contain_text("Agent One joined the chat.")
    expect_live(agent1_page)
    mark_page_as_not_reloaded(agent1_page)

    # When they exchange messages, each side sees the other's live
    send(agent1_page, "Hi Thandi, I can help with that.")
    expect(transcript(customer_page)).to_contain_text("Hi Thandi, I can help with that.")
    send(customer_page, "Thanks! It is the blue one.")
    expect(transcript(agent1_page)).to_contain_text("Thanks! It is the blue one.")
    send(agent1_page, "Got it.")
    expect(transcript(customer_page)).to_contain_text("Got it.")
    # And their own messages show on their own page once, cleared from the composer
    expect(transcript(agent1_page).get_by_text("Got it.", exact=True)).to_have_count(1)
    expect(customer_page.get_by_label("Message", exact=True)).to_have_value("")

    # When the customer sends markup, both sides show it as text (an alert would fail the test at teardown)
    send(customer_page, SCRIPT)
    for page in (customer_page, agent1_page):
        expect(transcript(page).get_by_text(SCRIPT, exact=True)).to_be_visible()

    # And nobody's page was reloaded for any of it
    for page in (customer_page, agent1_page, agent2_page):
        expect_not_reloaded(page)
    _save_screenshot(agent1_page, "agent-desk")
    _save_screenshot(customer_page, "customer-chat")

    # When agent1 closes the chat, the customer's page says so live and stops offering a reply
    agent1_page.get_by_role("button", name="Close chat").click()
    expect(customer_page.get_by_text("This chat has ended.").first).to_be_visible()
    expect(customer_page.get_by_role("button", name="Send")).to_have_count(0)
    expect_not_reloaded(customer_page)


def _accepted_conversation(agent, name: str = CUSTOMER):
    conversation = call_in_thread(actions.start_conversation, name=name, phone="+27825550199", body="Hello?")
    return call_in_thread(actions.accept_conversation, conversation.pk, agent=agent)


def test_an_agent_looking_at_a_pending_chat_sees_it_taken_by_another(new_page, agent1, agent2):
    # Given agent2 looking at a chat that is waiting in the queue
    conversation = call_in_thread(actions.start_conversation, name=CUSTOMER, phone="+27825550199", body="Hi")
    page = new_page("agent2")
    log_in(page, agent2.username)
    page.goto(f"/desk/conversations/{conversation.pk}/")
    expect_live(page)
    expect(page.get_by_role("button", name="Accept chat")).to_be_visible()

    # When agent1 accepts it first
    call_in_thread(actions.accept_conversation, conversation.pk, agent=agent1)

    # Then agent2's page stops offering it, by itself (the server decides what agent2 may still see)
    expect(page.get_by_role("button", name="Accept chat")).to_have_count(0)
    expect(page.get_by_role("list", name="Transcript")).to_have_count(0)


def test_a_customer_message_moves_the_conversation_to_the_top_of_the_agents_list(new_page, agent1):
    # Given agent1 with two open conversations, the newer one on top
    older = _accepted_conversation(agent1, name="Older Customer")
    _accepted_conversation(agent1, name="Newer Customer")
    page = new_page("agent1")
    log_in(page, agent1.username)
    expect_live(page)
    mine = page.get_by_role("list", name="My conversations").get_by_role("link")
    expect(mine).to_have_text(["Newer Customer", "Older Customer"])
    mark_page_as_not_reloaded(page)

    # When the older one's customer writes, it moves to the top, live
    call_in_thread(actions.receive_customer_message, older.pk, body="Me again")
    expect(mine).to_have_text(["Older Customer", "Newer Customer"])
    expect_not_reloaded(page)


def test_a_list_refresh_asked_for_just_after_another_one_still_happens(agent1_page):
    # Given the desk's conversation list (pushes often come in twos: message.created, conversation.changed)
    agent1_page.wait_for_load_state("networkidle")  # the refresh every (re)connect starts with is done

    # When a refresh is asked for the moment the previous one's answer arrives
    fetched = agent1_page.evaluate(
        """() => new Promise((resolve) => {
            let fetched = 0;
            const refresh = () => htmx.trigger(document.getElementById("conversation-list"), "desk:refresh");
            document.body.addEventListener("htmx:beforeRequest", (event) => {
                if (event.detail.elt.id === "conversation-list") fetched += 1;
            });
            document.body.addEventListener("htmx:afterRequest", refresh, { once: true });
            refresh();
            setTimeout(() => resolve(fetched), 1000);
        })"""
    )

    # Then it is not lost while htmx swaps the list in: the list is fetched twice
    assert fetched == 2


def test_an_idle_desk_keeps_its_connection(new_page, agent1):
    # Given agent1 on the desk, live
    page = new_page("agent1")
    record_websockets(page)
    log_in(page, agent1.username)
    expect_live(page)

    # When nothing happens for longer than the channel layer's blocking read (5 s)
    page.wait_for_timeout(7_000)

    # Then the first socket is still the only one: the server did not drop it
    assert page.evaluate("window.__chatdeskSockets.map((socket) => socket.readyState)") == [1]  # OPEN


def test_messages_sent_while_the_agents_socket_was_down_appear_after_it_reconnects(new_page, agent1):
    # Given agent1 looking at their open conversation, live
    conversation = _accepted_conversation(agent1)
    page = new_page("agent1")
    record_websockets(page)
    log_in(page, agent1.username)
    page.goto(f"/desk/conversations/{conversation.pk}/")
    expect_live(page)
    mark_page_as_not_reloaded(page)

    # When the socket drops and the customer writes meanwhile (the pushes go nowhere)
    drop_websockets(page)
    call_in_thread(actions.receive_customer_message, conversation.pk, body="Are you still there?")
    call_in_thread(actions.receive_customer_message, conversation.pk, body="Hello again")

    # Then after the page reconnects by itself the messages are there, in order, without a reload
    restore_network(page)
    expect_live(page)
    expect(transcript(page)).to_contain_text("Are you still there?")
    expect(transcript(page).locator(".message .body")).to_have_text(
        ["Hello?", "Agent One joined the chat.", "Are you still there?", "Hello again"]
    )
    expect_not_reloaded(page)


def test_the_desk_catches_up_after_the_server_restarts(new_page, agent1, daphne_server):
    # Given agent1 looking at their open conversation, live
    conversation = _accepted_conversation(agent1)
    page = new_page("agent1")
    log_in(page, agent1.username)
    page.goto(f"/desk/conversations/{conversation.pk}/")
    expect_live(page)
    mark_page_as_not_reloaded(page)

    # When Daphne stops, a message arrives while it is down, and Daphne comes back
    daphne_server.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    call_in_thread(actions.receive_customer_message, conversation.pk, body="Sent while the server was down")
    daphne_server.start()

    # Then the page reconnects by itself and shows it
    expect_live(page)
    expect(transcript(page)).to_contain_text("Sent while the server was down")
    expect_not_reloaded(page)
