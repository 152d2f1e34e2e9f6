"""The customer's /pay/<token>/: what it shows, what never counts as a click, and paying with test cards."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone

from desk.models import Message
from payments import actions
from payments.lifecycle import Status
from payments.models import BusinessProfile, GatewayWebhookEvent, PaymentEvent, SandboxCheckout
from tests.payments.conftest import reload, send, token_of

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
PREVIEW_FETCHERS = [
    "WhatsApp/2.23.20.0 A",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "TelegramBot (like TwitterBot)",
    "Twitterbot/1.0",
    # iMessage's preview fetcher
    "Mozilla/5.0 (Macintosh) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 "
    "facebookexternalhit/1.1 Facebot Twitterbot/1.0",
]
CARDS = {"ok": "4242 4242 4242 4242", "declined": "4000 0000 0000 0002", "no_funds": "4000 0000 0000 9995"}


@pytest.fixture
def link(alice, alices_conversation):
    """(request, its token) for a fresh link from alice."""
    payment_request = send(alices_conversation, alice, order_number="A-500")
    return payment_request, token_of(payment_request)


def customer(**headers) -> Client:
    return Client(headers={"User-Agent": BROWSER, **headers})


def open_link(browser: Client, token: str):
    return browser.post(f"/pay/{token}/open/")


def pay(browser: Client, token: str, card: str, expiry: str = "12/40", cvc: str = "123"):
    return browser.post(f"/pay/{token}/payment/", {"card_number": card, "expiry": expiry, "cvc": cvc})


def assert_private(response) -> None:
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response["X-Robots-Tag"]


class TestOpeningTheLink:
    def test_the_page_shows_merchant_order_amount_and_nothing_personal(self, link, alices_conversation):
        payment_request, token = link
        BusinessProfile.objects.update_or_create(pk=1, defaults={"name": "Acme Tickets"})
        response = customer().get(f"/pay/{token}/")
        html = response.content.decode()
        assert response.status_code == 200
        assert "Acme Tickets" in html
        assert "A-500" in html
        assert "ZAR 120.50" in html
        assert alices_conversation.customer.name not in html
        assert alices_conversation.customer.phone not in html
        assert_private(response)

    def test_the_merchant_heads_the_page_not_the_desk(self, link):
        _, token = link
        BusinessProfile.objects.update_or_create(pk=1, defaults={"name": "Acme Tickets"})
        html = customer().get(f"/pay/{token}/").content.decode()
        assert '<span class="brand">Acme Tickets</span>' in html
        assert "Chat Desk" not in html  # no desk brand, and no link to the agents' home page

    def test_a_get_never_changes_anything_and_the_page_registers_the_click_itself(self, link):
        payment_request, token = link
        html = customer().get(f"/pay/{token}/").content.decode()
        assert reload(payment_request).status == Status.SENT
        assert f'hx-post="/pay/{token}/open/"' in html  # the page's own POST, once shown
        assert "Card number" not in html

    def test_head_requests_do_not_count_as_a_click(self, link):
        payment_request, token = link
        assert customer().head(f"/pay/{token}/").status_code == 200
        assert reload(payment_request).status == Status.SENT

    @pytest.mark.parametrize("user_agent", PREVIEW_FETCHERS)
    def test_link_preview_fetchers_never_count_as_a_click(self, link, user_agent):
        payment_request, token = link
        fetcher = Client(headers={"User-Agent": user_agent})
        assert fetcher.get(f"/pay/{token}/").status_code == 200
        assert fetcher.head(f"/pay/{token}/").status_code == 200
        assert fetcher.post(f"/pay/{token}/open/").status_code == 204
        assert reload(payment_request).status == Status.SENT
        assert not PaymentEvent.objects.filter(to_status=Status.CLICKED).exists()

    def test_opening_in_a_browser_is_the_click_and_shows_the_gateways_form(self, link):
        # When the customer's browser shows the page, its script posts the click
        payment_request, token = link
        response = open_link(customer(), token)

        # Then the 15-minute window starts and the sandbox's card form is shown
        assert response.status_code == 200
        after = reload(payment_request)
        assert after.status == Status.CLICKED
        assert after.pay_deadline == after.clicked_at + timedelta(minutes=15)
        html = response.content.decode()
        for label in ("Card number", "Expiry", "CVC", "Pay ZAR 120.50"):
            assert label in html
        assert after.gateway_reference == SandboxCheckout.objects.get().reference
        assert_private(response)

    def test_opening_twice_clicks_once_and_keeps_the_window(self, link):
        payment_request, token = link
        open_link(customer(), token)
        first = reload(payment_request)
        with time_machine.travel(timezone.now() + timedelta(minutes=2)):
            response = open_link(customer(), token)
        assert "Card number" in response.content.decode()
        second = reload(payment_request)
        assert (second.pay_deadline, second.gateway_reference) == (
            first.pay_deadline,
            first.gateway_reference,
        )
        assert PaymentEvent.objects.filter(to_status=Status.CLICKED).count() == 1
        assert SandboxCheckout.objects.count() == 1

    def test_the_click_needs_the_pages_csrf_token(self, link):
        payment_request, token = link
        assert Client(enforce_csrf_checks=True).post(f"/pay/{token}/open/").status_code == 403
        assert reload(payment_request).status == Status.SENT

    def test_an_unopened_link_past_its_click_window_is_expired_even_before_the_sweep(self, link):
        payment_request, token = link
        with time_machine.travel(payment_request.click_deadline, tick=False):
            page = customer().get(f"/pay/{token}/")
            response = open_link(customer(), token)
        assert page.status_code == 410
        assert "Payment link expired" in page.content.decode()
        assert "Payment link expired" in response.content.decode()
        assert reload(payment_request).status == Status.SENT  # unchanged: refused, then swept later


class TestDeadLinks:
    @pytest.mark.parametrize(
        ("make_dead", "status", "title"),
        [
            (
                lambda pr, agent: actions.cancel_payment_request(pr.pk, agent=agent),
                410,
                "Payment link canceled",
            ),
            (lambda pr, agent: actions.mark_failed(pr.pk, reason="x"), 410, "Payment link unavailable"),
        ],
    )
    def test_closed_links_say_so_without_a_form_or_personal_data(
        self, link, alice, alices_conversation, make_dead, status, title
    ):
        payment_request, token = link
        make_dead(payment_request, alice)
        for method in ("get", "post"):
            response = getattr(customer(), method)(
                f"/pay/{token}/" if method == "get" else f"/pay/{token}/open/"
            )
            html = response.content.decode()
            assert title in html
            assert "Card number" not in html
            assert alices_conversation.customer.name not in html
        assert customer().get(f"/pay/{token}/").status_code == status

    def test_an_expired_link_says_so(self, link):
        payment_request, token = link
        with time_machine.travel(payment_request.click_deadline + timedelta(seconds=1)):
            actions.expire_due_payment_requests()
            response = customer().get(f"/pay/{token}/")
        assert response.status_code == 410
        assert "Payment link expired" in response.content.decode()

    @pytest.mark.parametrize("state", ["paid", "expired"])
    def test_paid_and_expired_links_show_no_form_and_nothing_personal(
        self, link, alices_conversation, sandbox_webhooks_inline, django_capture_on_commit_callbacks, state
    ):
        # Given a link the customer opened, then paid or left until the pay window ran out
        payment_request, token = link
        browser = customer()
        open_link(browser, token)
        if state == "paid":
            with django_capture_on_commit_callbacks(execute=True):
                pay(browser, token, CARDS["ok"])
            title, text, status = "Payment received", "Order A-500 has been paid: ZAR 120.50.", 200
        else:
            title, text, status = "Payment link expired", "This payment link has expired.", 410
        with time_machine.travel(reload(payment_request).pay_deadline + timedelta(seconds=1)):
            actions.expire_due_payment_requests()
            response = browser.get(f"/pay/{token}/")

        # Then the page says so plainly, with no form and nothing about the customer
        html = response.content.decode()
        assert (reload(payment_request).status, response.status_code) == (state, status)
        assert title in html
        assert text in html
        assert "Card number" not in html
        assert alices_conversation.customer.name not in html
        assert alices_conversation.customer.phone not in html
        assert_private(response)

    @pytest.mark.parametrize("token", ["nope", "A" * 43, "1", "%00"])
    def test_an_unknown_link_is_a_plain_404(self, token, link):
        response = customer().get(f"/pay/{token}/")
        assert response.status_code == 404
        assert "Payment link not found" in response.content.decode()
        assert "A-500" not in response.content.decode()
        assert_private(response)
        assert customer().post(f"/pay/{token}/open/").status_code == 204


class TestPaying:
    def test_a_good_card_pays_and_both_sides_get_a_confirmation(
        self, link, alices_conversation, sandbox_webhooks_inline, django_capture_on_commit_callbacks
    ):
        # Given the customer opened the link
        payment_request, token = link
        browser = customer()
        open_link(browser, token)

        # When they pay with 4242 4242 4242 4242
        with django_capture_on_commit_callbacks(execute=True):
            response = pay(browser, token, CARDS["ok"])

        # Then the gateway approves at once, and its signed webhook makes the request paid
        assert "Payment approved" in response.content.decode()
        assert sandbox_webhooks_inline == [200]
        after = reload(payment_request)
        assert after.status == Status.PAID
        assert [e.reason for e in after.events.order_by("pk")] == [
            "sent",
            "clicked",
            "payment_started",
            "paid",
        ]
        # And the conversation (agent and customer alike) has a confirmation naming order and amount
        confirmation = Message.objects.latest("pk")
        assert confirmation.body == "Payment received for order A-500: ZAR 120.50. Thank you!"
        assert confirmation.conversation == alices_conversation
        # And the link now shows a receipt, not a form
        html = browser.get(f"/pay/{token}/").content.decode()
        assert "Payment received" in html
        assert "Card number" not in html

    def test_a_declined_card_may_be_retried_within_the_window(
        self, link, sandbox_webhooks_inline, django_capture_on_commit_callbacks
    ):
        payment_request, token = link
        browser = customer()
        open_link(browser, token)
        with django_capture_on_commit_callbacks(execute=True):
            declined = pay(browser, token, CARDS["declined"])
        assert "Your card was declined" in declined.content.decode()
        assert "Card number" in declined.content.decode()  # the form again, to try another card
        after = reload(payment_request)
        assert (after.status, after.last_decline) == (
            Status.CLICKED,
            "Your card was declined. Try another card.",
        )

        with django_capture_on_commit_callbacks(execute=True):
            pay(browser, token, CARDS["ok"])
        assert reload(payment_request).status == Status.PAID
        assert reload(payment_request).pay_deadline == after.pay_deadline

    def test_insufficient_funds_is_explained(
        self, link, sandbox_webhooks_inline, django_capture_on_commit_callbacks
    ):
        payment_request, token = link
        browser = customer()
        open_link(browser, token)
        with django_capture_on_commit_callbacks(execute=True):
            response = pay(browser, token, CARDS["no_funds"])
        assert "insufficient funds" in response.content.decode()
        assert reload(payment_request).status == Status.CLICKED

    @pytest.mark.parametrize(
        ("card", "expiry", "cvc", "error"),
        [
            ("4242 4242 4242 4241", "12/40", "123", "Your card number is invalid."),
            ("abcd", "12/40", "123", "Your card number is invalid."),
            ("4242 4242 4242 4242", "13/40", "123", "Enter the expiry date as MM/YY."),
            ("4242 4242 4242 4242", "01/0000", "123", "Your card has expired."),
            ("4242 4242 4242 4242", "01/20", "123", "Your card has expired."),
            ("4242 4242 4242 4242", "12/40", "1", "security code is invalid"),
        ],
    )
    def test_bad_card_details_are_refused_inline_and_not_echoed(self, link, card, expiry, cvc, error):
        payment_request, token = link
        browser = customer()
        open_link(browser, token)
        response = pay(browser, token, card, expiry, cvc)
        assert response.status_code == 422
        html = response.content.decode().replace("&#x27;", "'")
        assert error in html
        assert f'value="{card}"' not in html
        assert card.replace(" ", "") not in html
        assert reload(payment_request).payment_attempts == 0

    def test_no_payment_is_taken_after_the_pay_deadline(
        self, link, sandbox_webhooks_inline, django_capture_on_commit_callbacks
    ):
        payment_request, token = link
        browser = customer()
        open_link(browser, token)
        deadline = reload(payment_request).pay_deadline
        with time_machine.travel(deadline, tick=False), django_capture_on_commit_callbacks(execute=True):
            response = pay(browser, token, CARDS["ok"])
        assert "Payment link expired" in response.content.decode()
        assert response["HX-Retarget"] == "#payment"
        assert sandbox_webhooks_inline == []
        assert reload(payment_request).status == Status.CLICKED  # refused, the sweep will expire it

    def test_no_card_number_is_stored_or_logged(
        self, link, sandbox_webhooks_inline, django_capture_on_commit_callbacks, caplog
    ):
        payment_request, token = link
        browser = customer()
        open_link(browser, token)
        with django_capture_on_commit_callbacks(execute=True):
            pay(browser, token, CARDS["declined"])
            pay(browser, token, CARDS["ok"])
        assert reload(payment_request).status == Status.PAID
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT string_agg(t::text, ' ') FROM"
                " (SELECT row_to_json(e) AS t FROM payments_paymentevent e"
                " UNION ALL SELECT row_to_json(w) FROM payments_gatewaywebhookevent w"
                " UNION ALL SELECT row_to_json(c) FROM payments_sandboxcheckout c) rows"
            )
            everything = cursor.fetchone()[0]
        for number in ("4242424242424242", "4000000000000002"):
            assert number not in everything
            assert number not in caplog.text
        webhook = GatewayWebhookEvent.objects.get(event_type="payment.succeeded")
        assert webhook.payload["data"]["card"] == {"brand": "visa", "last4": "4242"}
        card = PaymentEvent.objects.get(reason="paid").details["card"]
        assert card == {"brand": "visa", "last4": "4242"}
