"""The agent desk over HTTP: what an agent sees and can do, and what others cannot."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from desk.models import Conversation, Message
from tests.factories import ConversationFactory, CustomerFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


class TestDeskList:
    def test_the_queue_and_my_conversations_are_listed(self, alice_client, alice, bob):
        waiting = ConversationFactory(customer__name="Waiting Wendy")
        mine = ConversationFactory(customer__name="Mine Mandla", status="open", assigned_agent=alice)
        ConversationFactory(customer__name="Bobs Bongani", status="open", assigned_agent=bob)

        response = alice_client.get(reverse("desk:index"))

        assert response.status_code == 200
        assert list(response.context["queue"]) == [waiting]
        assert list(response.context["mine"]) == [mine]
        assert b"Bobs Bongani" not in response.content

    def test_search_by_name_or_phone_and_filter_by_status(self, alice_client, alice):
        ConversationFactory(customer__name="Thandi Nkosi", customer__phone="+27821110000")
        ConversationFactory(customer__name="John Smith", customer__phone="+14155550123")
        closed = ConversationFactory(customer__name="Closed Carl", status="closed", assigned_agent=alice)

        by_name = alice_client.get(reverse("desk:conversation_list"), {"q": "thandi"})
        by_phone = alice_client.get(reverse("desk:conversation_list"), {"q": "415555"})
        by_status = alice_client.get(reverse("desk:conversation_list"), {"status": "closed"})

        assert [c.customer.name for c in by_name.context["queue"]] == ["Thandi Nkosi"]
        assert [c.customer.name for c in by_phone.context["queue"]] == ["John Smith"]
        assert by_status.context["queue"] == []
        assert by_status.context["mine"] == [closed]

    def test_sort_by_last_activity(self, alice_client):
        from datetime import timedelta

        from django.utils import timezone

        now = timezone.now()
        old = ConversationFactory(last_activity_at=now - timedelta(hours=1))
        new = ConversationFactory(last_activity_at=now)

        recent_first = alice_client.get(reverse("desk:conversation_list"), {"sort": "recent"})
        oldest_first = alice_client.get(reverse("desk:conversation_list"), {"sort": "oldest"})

        assert recent_first.context["queue"] == [new, old]
        assert oldest_first.context["queue"] == [old, new]

    def test_a_thousand_conversations_render_with_a_bounded_number_of_queries(self, alice_client, alice):
        customers = CustomerFactory.create_batch(50)
        for i in range(1000):
            ConversationFactory(
                customer=customers[i % 50], **({"status": "open", "assigned_agent": alice} if i % 2 else {})
            )

        with CaptureQueriesContext(connection) as queries:
            response = alice_client.get(reverse("desk:index"))

        assert response.status_code == 200
        assert len(queries) <= 8, [q["sql"] for q in queries]


class TestConversationPage:
    def test_user_text_is_escaped(self, alice_client, alices_conversation):
        MessageFactory(conversation=alices_conversation, body="<script>alert(1)</script>")
        response = alice_client.get(reverse("desk:conversation", args=[alices_conversation.pk]))
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content
        assert b"<script>alert(1)</script>" not in response.content

    def test_another_agents_conversation_is_forbidden(self, client, bob, alices_conversation):
        client.force_login(bob)
        page = client.get(reverse("desk:conversation", args=[alices_conversation.pk]))
        assert page.status_code == 403
        assert "This conversation is assigned to another agent." in page.content.decode()
        response = client.post(reverse("desk:send_message", args=[alices_conversation.pk]), {"body": "hi"})
        assert response.status_code == 403
        assert not alices_conversation.messages.exists()

    def test_a_conversation_that_does_not_exist_is_not_found(self, alice_client):
        assert alice_client.get(reverse("desk:conversation", args=[987654])).status_code == 404
        response = alice_client.post(reverse("desk:accept", args=[987654]), HTTP_HX_REQUEST="true")
        assert response.status_code == 404

    def test_a_queued_conversation_can_be_previewed_and_accepted(self, alice_client, pending_conversation):
        page = alice_client.get(reverse("desk:conversation", args=[pending_conversation.pk]))
        assert b"Accept chat" in page.content

        response = alice_client.post(
            reverse("desk:accept", args=[pending_conversation.pk]), HTTP_HX_REQUEST="true"
        )

        assert response.status_code == 200
        assert response["HX-Redirect"] == reverse("desk:conversation", args=[pending_conversation.pk])
        pending_conversation.refresh_from_db()
        assert pending_conversation.status == Conversation.Status.OPEN

    def test_accepting_a_taken_chat_shows_a_toast_and_changes_nothing(
        self, client, bob, alice, pending_conversation
    ):
        from desk import actions

        actions.accept_conversation(pending_conversation.pk, agent=alice)
        client.force_login(bob)
        response = client.post(reverse("desk:accept", args=[pending_conversation.pk]), HTTP_HX_REQUEST="true")
        # Bob was too late: a toast tells him so, and the chat stays Alice's.
        assert response.status_code == 409
        assert "Another agent has already accepted this chat." in response.content.decode()
        pending_conversation.refresh_from_db()
        assert pending_conversation.assigned_agent == alice

    def test_sending_a_reply(self, alice_client, alices_conversation):
        response = alice_client.post(
            reverse("desk:send_message", args=[alices_conversation.pk]),
            {"body": "Hello!"},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 200
        assert list(alices_conversation.messages.values_list("body", flat=True)) == ["Hello!"]
        assert b'class="live-upsert"' in response.content

    def test_an_empty_reply_is_a_field_error_and_nothing_is_written(self, alice_client, alices_conversation):
        response = alice_client.post(
            reverse("desk:send_message", args=[alices_conversation.pk]),
            {"body": "   "},
            HTTP_HX_REQUEST="true",
        )
        assert response.status_code == 422
        assert b"Type a message first." in response.content
        assert not alices_conversation.messages.exists()

    def test_closing(self, alice_client, alices_conversation):
        alice_client.post(reverse("desk:close", args=[alices_conversation.pk]), HTTP_HX_REQUEST="true")
        alices_conversation.refresh_from_db()
        assert alices_conversation.status == Conversation.Status.CLOSED


class TestRoles:
    @pytest.mark.parametrize("name", ["desk:accept", "desk:send_message", "desk:close"])
    def test_supervisors_cannot_act_on_conversations(self, client, sam, alices_conversation, name):
        client.force_login(sam)
        assert client.post(reverse(name, args=[alices_conversation.pk]), {"body": "x"}).status_code == 403

    def test_a_user_without_a_role_gets_the_403_page(self, client, outsider):
        client.force_login(outsider)
        response = client.get(reverse("desk:index"))
        assert response.status_code == 403
        assert b"Not allowed" in response.content

    def test_anonymous_users_are_sent_to_log_in(self, client):
        response = client.get(reverse("desk:index"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


class TestCustomerChat:
    def test_starting_a_chat_creates_a_pending_conversation_and_opens_its_page(self, client):
        response = client.post(
            reverse("chat:start"), {"name": "Thandi", "phone": "082 123 4567", "body": "Hello there"}
        )
        conversation = Conversation.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("chat:conversation", args=[conversation.customer_token])
        assert conversation.customer.phone == "+27821234567"
        assert conversation.status == Conversation.Status.PENDING

    @pytest.mark.parametrize(
        ("data", "error"),
        [
            ({"name": "T", "phone": "12", "body": "Hi"}, b"Enter a valid phone number"),
            ({"name": "T", "phone": "0821234567", "body": "  "}, b"Type a message first."),
            ({"name": "", "phone": "0821234567", "body": "Hi"}, b"This field is required."),
            ({"name": "T", "phone": "0821234567", "body": "x" * 5000}, b"4000 characters or fewer"),
        ],
    )
    def test_bad_input_is_a_field_error_and_creates_nothing(self, client, data, error):
        response = client.post(reverse("chat:start"), data)
        assert response.status_code == 422
        assert error in response.content
        assert not Conversation.objects.exists()

    def test_an_unknown_token_is_a_404_page(self, client):
        response = client.get(reverse("chat:conversation", args=["nope"]))
        assert response.status_code == 404
        assert b"Not found" in response.content

    def test_reload_keeps_the_history_and_the_customer_can_reply(self, client):
        conversation = ConversationFactory()
        MessageFactory(conversation=conversation, body="First message")
        url = reverse("chat:conversation", args=[conversation.customer_token])

        page = client.get(url)
        client.post(reverse("chat:send_message", args=[conversation.customer_token]), {"body": "Second"})

        assert b"First message" in page.content
        assert page["Cache-Control"] == "no-store"
        assert list(conversation.messages.values_list("direction", "body")) == [
            (Message.Direction.INBOUND, "First message"),
            (Message.Direction.INBOUND, "Second"),
        ]
