"""`manage.py seed_demo`: the demo people, customers and conversations that `make run` starts with."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from desk.access import is_agent, is_supervisor
from desk.models import Conversation, Customer, Message

pytestmark = pytest.mark.django_db

DEMO_PASSWORD = "chatdesk-demo"
DEMO_DESKS = {"agent1": "/desk/", "agent2": "/desk/", "supervisor": "/supervisor/", "admin": "/admin/"}


def _seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {
        "users": get_user_model().objects.count(),
        "memberships": get_user_model().groups.through.objects.count(),
        "customers": Customer.objects.count(),
        "conversations": Conversation.objects.count(),
        "messages": Message.objects.count(),
    }


@pytest.fixture
def debug(settings):
    settings.DEBUG = True


@pytest.mark.usefixtures("debug")
class TestWithDebugOn:
    def test_it_creates_the_demo_people_with_their_names_and_roles(self):
        _seed()

        users = {user.username: user for user in get_user_model().objects.all()}
        assert set(users) == {"agent1", "agent2", "supervisor", "admin"}
        assert users["agent1"].get_full_name() == "Agent One"
        assert users["agent2"].get_full_name() == "Agent Two"
        assert users["supervisor"].get_full_name() == "Sam Supervisor"
        assert is_agent(users["agent1"])
        assert is_agent(users["agent2"])
        assert not is_supervisor(users["agent1"])
        assert is_supervisor(users["supervisor"])
        assert not is_agent(users["supervisor"])
        assert users["admin"].is_superuser
        assert users["admin"].is_staff
        assert not any(users[name].is_staff for name in ("agent1", "agent2", "supervisor"))

    def test_each_demo_person_logs_in_with_the_demo_password_and_lands_on_their_desk(self):
        _seed()

        for username, desk in DEMO_DESKS.items():
            response = Client().post(
                "/accounts/login/", {"username": username, "password": DEMO_PASSWORD}, follow=True
            )

            assert response.status_code == 200, username
            assert response.redirect_chain[-1][0] == desk, username

    def test_it_creates_customers_and_conversations_in_the_queue_and_on_agent1s_desk(self):
        _seed()

        assert Customer.objects.count() >= 2
        assert Conversation.objects.filter(status=Conversation.Status.PENDING).exists()
        open_conversation = Conversation.objects.get(status=Conversation.Status.OPEN)
        assert open_conversation.assigned_agent.username == "agent1"
        assert list(open_conversation.messages.values_list("direction", flat=True)) == [
            Message.Direction.INBOUND,
            Message.Direction.INTERNAL,
            Message.Direction.OUTBOUND,
        ]
        for customer in Customer.objects.all():
            assert customer.phone.startswith("+")  # E.164

    def test_running_it_again_creates_nothing_new(self):
        _seed()
        before = _counts()

        _seed()

        assert _counts() == before

    def test_it_keeps_a_password_someone_has_changed_since(self):
        _seed()
        agent1 = get_user_model().objects.get(username="agent1")
        agent1.set_password("a-new-secret-password")
        agent1.save()

        _seed()

        agent1.refresh_from_db()
        assert agent1.check_password("a-new-secret-password")

    def test_it_says_what_it_made(self):
        output = _seed()

        assert "agent1" in output
        assert DEMO_PASSWORD in output


class TestWithDebugOff:
    def test_it_refuses_and_creates_nothing(self, settings):
        settings.DEBUG = False

        with pytest.raises(CommandError, match="--force"):
            _seed()

        assert not get_user_model().objects.exists()
        assert not Conversation.objects.exists()

    def test_force_runs_it_anyway(self, settings):
        settings.DEBUG = False

        _seed(force=True)

        assert get_user_model().objects.get(username="agent1").check_password(DEMO_PASSWORD)
        assert Conversation.objects.exists()
