"""The Django admin: every record can be found and read; transcripts are history and cannot be rewritten."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from desk.models import Conversation, Message
from tests.factories import ConversationFactory, CustomerFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def thandi_conversation(alice):
    """An open conversation of Alice's with Thandi, with one message each way."""
    customer = CustomerFactory(name="Thandi Nkosi", phone="+27821234567")
    conversation = ConversationFactory(
        customer=customer, status=Conversation.Status.OPEN, assigned_agent=alice
    )
    MessageFactory(conversation=conversation, body="Where is my parcel?")
    MessageFactory(
        conversation=conversation, direction=Message.Direction.OUTBOUND, author=alice, body="On its way"
    )
    return conversation


@pytest.fixture
def other_conversation(db):
    customer = CustomerFactory(name="John Smith", phone="+14155550123")
    conversation = ConversationFactory(customer=customer)
    MessageFactory(conversation=conversation, body="Can I change my size?")
    return conversation


@pytest.fixture
def records(thandi_conversation, other_conversation, alice, sam):
    """Each admin page's model has rows, and one of them (an agent, a group, Thandi...) to search for."""
    return {
        "user": alice,
        "group": Group.objects.get(name="agents"),
        "customer": thandi_conversation.customer,
        "conversation": thandi_conversation,
        "message": thandi_conversation.messages.first(),
    }


MODELS = {
    "user": "auth_user",
    "group": "auth_group",
    "customer": "desk_customer",
    "conversation": "desk_conversation",
    "message": "desk_message",
}


@pytest.mark.parametrize("kind", MODELS)
def test_each_changelist_and_change_page_opens_for_a_superuser(admin_client, records, kind):
    changelist = admin_client.get(reverse(f"admin:{MODELS[kind]}_changelist"))
    change = admin_client.get(reverse(f"admin:{MODELS[kind]}_change", args=[records[kind].pk]))

    assert changelist.status_code == 200
    assert change.status_code == 200


def _label(obj) -> str:
    """How a search result is recognised: a conversation by its customer's name, anything else by str()."""
    return obj.customer.name if isinstance(obj, Conversation) else str(obj)


@pytest.mark.parametrize(
    ("kind", "query", "expected"),
    [
        ("user", "alice", {"alice"}),
        ("group", "superv", {"supervisors"}),
        ("customer", "Thandi", {"Thandi Nkosi (+27821234567)"}),
        ("customer", "+1415", {"John Smith (+14155550123)"}),
        ("conversation", "Thandi", {"Thandi Nkosi"}),
        ("conversation", "+14155550123", {"John Smith"}),
        ("conversation", "alice", {"Thandi Nkosi"}),  # by the assigned agent
        ("message", "parcel", {"From the customer: Where is my parcel?"}),
        ("message", "John", {"From the customer: Can I change my size?"}),  # by the customer
    ],
)
def test_searches_find_the_matching_records_only(admin_client, records, kind, query, expected):
    response = admin_client.get(reverse(f"admin:{MODELS[kind]}_changelist"), {"q": query})

    assert response.status_code == 200
    assert {_label(obj) for obj in response.context["cl"].result_list} == expected


@pytest.mark.parametrize(
    ("kind", "params", "count"),
    [
        ("conversation", {"status__exact": "open"}, 1),
        ("conversation", {"status__exact": "pending"}, 1),
        ("conversation", {"channel__exact": "whatsapp"}, 0),
        ("message", {"direction__exact": "outbound"}, 1),
        ("message", {"direction__exact": "inbound"}, 2),
    ],
)
def test_filters_narrow_the_list(admin_client, records, kind, params, count):
    response = admin_client.get(reverse(f"admin:{MODELS[kind]}_changelist"), params)

    assert response.status_code == 200
    assert response.context["cl"].result_count == count


class TestMessagesAreHistory:
    def test_they_cannot_be_added(self, admin_client, records):
        assert admin_client.get(reverse("admin:desk_message_add")).status_code == 403

    def test_the_change_page_is_read_only(self, admin_client, records):
        message = records["message"]
        url = reverse("admin:desk_message_change", args=[message.pk])

        page = admin_client.get(url)
        posted = admin_client.post(url, {"body": "rewritten", "direction": "outbound", "kind": "text"})

        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        assert posted.status_code == 403
        message.refresh_from_db()
        assert message.body == "Where is my parcel?"

    def test_they_cannot_be_deleted_one_by_one_or_in_bulk(self, admin_client, records):
        message = records["message"]

        delete_page = admin_client.get(reverse("admin:desk_message_delete", args=[message.pk]))
        changelist = admin_client.get(reverse("admin:desk_message_changelist"))
        bulk = admin_client.post(
            reverse("admin:desk_message_changelist"),
            {"action": "delete_selected", "_selected_action": [message.pk], "post": "yes"},
        )

        assert delete_page.status_code == 403
        assert 'value="delete_selected"' not in changelist.content.decode()
        assert bulk.status_code in {200, 302}
        assert Message.objects.filter(pk=message.pk).exists()

    def test_the_conversation_page_shows_the_transcript_read_only(self, admin_client, records):
        conversation = records["conversation"]

        page = admin_client.get(reverse("admin:desk_conversation_change", args=[conversation.pk]))

        html = page.content.decode()
        assert "Where is my parcel?" in html
        assert "On its way" in html
        assert 'name="messages-0-body"' not in html  # shown, not editable
        assert "<textarea" not in html
        assert "messages-__prefix__" not in html  # no blank form for adding a message


class TestConversations:
    def test_they_cannot_be_deleted(self, admin_client, records):
        conversation = records["conversation"]

        page = admin_client.get(reverse("admin:desk_conversation_delete", args=[conversation.pk]))
        posted = admin_client.post(
            reverse("admin:desk_conversation_delete", args=[conversation.pk]), {"post": "yes"}
        )

        assert page.status_code == 403
        assert posted.status_code == 403
        assert Conversation.objects.filter(pk=conversation.pk).exists()

    def test_they_cannot_be_added_outside_a_channel(self, admin_client, records):
        assert admin_client.get(reverse("admin:desk_conversation_add")).status_code == 403

    def test_the_customer_chat_token_is_not_shown(self, admin_client, records):
        conversation = records["conversation"]

        page = admin_client.get(reverse("admin:desk_conversation_change", args=[conversation.pk]))

        assert conversation.customer_token not in page.content.decode()


@pytest.mark.parametrize("kind", ["conversation", "message"])
def test_long_lists_take_a_bounded_number_of_queries(
    admin_client, django_assert_max_num_queries, alice, kind
):
    for _ in range(30):
        conversation = ConversationFactory(status=Conversation.Status.OPEN, assigned_agent=alice)
        MessageFactory(conversation=conversation, author=alice, direction=Message.Direction.OUTBOUND)

    with django_assert_max_num_queries(15):
        response = admin_client.get(reverse(f"admin:{MODELS[kind]}_changelist"))

    assert response.status_code == 200
    assert response.context["cl"].result_count == 30


class TestCustomers:
    def test_a_phone_number_typed_locally_is_stored_in_e164(self, admin_client, records):
        customer = records["customer"]

        response = admin_client.post(
            reverse("admin:desk_customer_change", args=[customer.pk]),
            {"name": "Thandi N.", "phone": "083 123 4568"},
        )

        assert response.status_code == 302
        customer.refresh_from_db()
        assert (customer.name, customer.phone) == ("Thandi N.", "+27831234568")

    @pytest.mark.parametrize("phone", ["abc", "+27 12", "+999 1234567", ""])
    def test_a_bad_phone_number_is_a_field_error_and_changes_nothing(self, admin_client, records, phone):
        customer = records["customer"]

        response = admin_client.post(
            reverse("admin:desk_customer_change", args=[customer.pk]), {"name": "Rewritten", "phone": phone}
        )

        assert response.status_code == 200
        assert response.context["adminform"].form.errors["phone"]
        customer.refresh_from_db()
        assert (customer.name, customer.phone) == ("Thandi Nkosi", "+27821234567")


def test_only_staff_can_open_the_admin(client, alice):
    client.force_login(alice)

    response = client.get(reverse("admin:desk_message_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
