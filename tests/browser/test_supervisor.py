"""A supervisor follows Chat 2 Pay transactions in a real browser: filter, open, read the history, live."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from payments import actions
from tests.browser.pages import call_in_thread, expect_live, log_in
from tests.factories import PaymentRequestFactory, SupervisorFactory, paid_request_with_history

pytestmark = pytest.mark.browser


@pytest.fixture
def supervisor_page(new_page, transactional_db):
    SupervisorFactory(username="supervisor", first_name="Sam", last_name="Supervisor")
    page = new_page("supervisor")
    log_in(page, "supervisor")
    expect(page).to_have_url(re.compile(r"/supervisor/$"))
    return page


def test_a_supervisor_filters_by_agent_and_reads_a_transactions_history(supervisor_page, agent1, agent2):
    t0 = timezone.now() - timedelta(minutes=30)
    paid_request_with_history(agent=agent1, order_number="ORD-PAID-1", sent_at=t0)
    PaymentRequestFactory(agent=agent2, order_number="ORD-OTHER-2", sent_at=t0)
    page = supervisor_page
    page.reload()
    expect(page.get_by_role("link", name="ORD-OTHER-2")).to_be_visible()

    page.get_by_label("Agent", exact=True).select_option(label="Agent One")

    expect(page.get_by_role("link", name="ORD-OTHER-2")).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"agent={agent1.pk}"))
    page.get_by_role("link", name="ORD-PAID-1").click()

    history = page.locator("table.history tbody tr")
    expect(history).to_have_count(3)
    expect(history.nth(0)).to_have_attribute("data-to-status", "sent")
    expect(history.nth(1)).to_have_attribute("data-to-status", "clicked")
    expect(history.nth(2)).to_have_attribute("data-to-status", "paid")
    expect(history.nth(2)).to_contain_text("Gateway")


def test_a_status_change_made_elsewhere_appears_without_reload(supervisor_page, agent1):
    payment_request = PaymentRequestFactory(agent=agent1, order_number="ORD-LIVE-1")
    page = supervisor_page
    page.reload()
    expect_live(page)
    row = page.locator('tr[data-order-number="ORD-LIVE-1"]')
    expect(row).to_have_attribute("data-status", "sent")

    result = call_in_thread(actions.cancel_payment_request, payment_request.pk, agent=agent1)

    assert result.ok
    expect(row).to_have_attribute("data-status", "canceled")
    expect(page.get_by_text("Export CSV")).to_be_visible()
