import pytest
from django.core.exceptions import ValidationError

from desk import actions
from desk.models import Conversation, Message, validate_e164


@pytest.mark.django_db
class TestStartConversation:
    def test_it_creates_a_pending_conversation_with_the_first_message(
        self, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as callbacks:
            conversation = actions.start_conversation(name="Thandi", phone="+27821234567", body="Hello")

        assert conversation.status == Conversation.Status.PENDING
        assert list(conversation.messages.values_list("direction", "body")) == [("inbound", "Hello")]
        assert len(callbacks) == 2  # conversation.changed + message.created, only after commit

    def test_an_empty_message_creates_nothing(self):
        with pytest.raises(ValidationError):
            actions.start_conversation(name="Thandi", phone="+27821234567", body="   ")
        assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+27 82 123 4567", "+27821234567"),
        ("082 123 4567", "+27821234567"),
        ("+1 415 555 0123", "+14155550123"),
    ],
)
def test_phone_numbers_are_stored_in_e164(raw, expected):
    assert actions.normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", ["", "abc", "+27 12", "+999 1234567", "1" * 40])
def test_invalid_phone_numbers_are_refused(raw):
    with pytest.raises(ValidationError):
        actions.normalize_phone(raw)


@pytest.mark.parametrize("raw", ["+27821234567", "+14155550123"])
def test_the_customer_model_accepts_e164(raw):
    validate_e164(raw)


@pytest.mark.parametrize("raw", ["", "abc", "0821234567", "+27 82 123 4567", "+27821234567 ", "+999 1234567"])
def test_the_customer_model_refuses_anything_but_a_valid_e164_number(raw):
    with pytest.raises(ValidationError):
        validate_e164(raw)


@pytest.mark.django_db
class TestAccept:
    def test_the_first_agent_wins_and_the_second_is_told(self, pending_conversation, alice, bob):
        actions.accept_conversation(pending_conversation.pk, agent=alice)

        with pytest.raises(actions.Refusal, match="already accepted"):
            actions.accept_conversation(pending_conversation.pk, agent=bob)
        pending_conversation.refresh_from_db()
        assert pending_conversation.assigned_agent == alice
        assert pending_conversation.status == Conversation.Status.OPEN

    def test_accepting_bumps_the_version(self, pending_conversation, alice):
        before = pending_conversation.version
        conversation = actions.accept_conversation(pending_conversation.pk, agent=alice)
        assert conversation.version > before


@pytest.mark.django_db
class TestMessages:
    def test_an_agent_replies_in_their_own_open_conversation(self, alices_conversation, alice):
        message = actions.send_agent_message(alices_conversation.pk, agent=alice, body="Hi!")
        assert message.direction == Message.Direction.OUTBOUND
        assert message.author == alice

    def test_another_agent_cannot_reply(self, alices_conversation, bob):
        with pytest.raises(actions.Refusal):
            actions.send_agent_message(alices_conversation.pk, agent=bob, body="Hi!")
        assert not alices_conversation.messages.exists()

    def test_an_over_long_message_is_refused(self, alices_conversation, alice, settings):
        with pytest.raises(ValidationError):
            actions.send_agent_message(
                alices_conversation.pk, agent=alice, body="x" * (settings.DESK_MESSAGE_MAX_LENGTH + 1)
            )

    def test_a_customer_cannot_write_into_a_closed_chat(self, alices_conversation, alice):
        actions.close_conversation(alices_conversation.pk, agent=alice)
        with pytest.raises(actions.Refusal):
            actions.receive_customer_message(alices_conversation.pk, body="Hello?")

    def test_new_activity_moves_a_conversation_up(self, alice):
        from tests.factories import ConversationFactory

        older = ConversationFactory(status="open", assigned_agent=alice)
        ConversationFactory(status="open", assigned_agent=alice)
        actions.receive_customer_message(older.pk, body="Still there?")
        assert Conversation.objects.filter(assigned_agent=alice).first() == older
