"""Logging in and out, where each role lands, and what each role may not open."""

import pytest
from django.urls import reverse

from desk.models import Conversation, Message

pytestmark = pytest.mark.django_db

PASSWORD = "chatdesk-test"  # tests.factories.UserFactory
LOGIN_URL = "/accounts/login/"


def _log_in(client, username: str, password: str = PASSWORD, **extra):
    return client.post(LOGIN_URL, {"username": username, "password": password, **extra}, follow=True)


class TestLoginPage:
    def test_it_has_username_and_password_fields_and_a_log_in_button(self, client):
        response = client.get(LOGIN_URL)

        assert response.status_code == 200
        html = response.content.decode()
        assert '<label for="id_username">Username</label>' in html
        assert '<label for="id_password">Password</label>' in html
        assert 'name="password" type="password"' in html
        assert ">Log in</button>" in html

    def test_a_wrong_password_keeps_the_user_out_with_a_readable_error(self, client, alice):
        response = _log_in(client, "alice", "not-the-password")

        assert response.status_code == 200
        assert response.redirect_chain == []
        assert "correct username and password" in response.content.decode()
        assert "_auth_user_id" not in client.session

    def test_a_logged_in_user_who_opens_it_again_goes_to_their_desk(self, client, alice):
        client.force_login(alice)

        response = client.get(LOGIN_URL, follow=True)

        assert response.redirect_chain[-1][0] == "/desk/"


class TestWhereEachRoleLands:
    def test_an_agent_lands_on_the_agent_desk(self, client, alice):
        response = _log_in(client, "alice")

        assert response.redirect_chain[-1][0] == "/desk/"
        assert response.status_code == 200

    def test_a_supervisor_lands_on_the_supervisor_desk(self, client, sam):
        response = _log_in(client, "sam")

        assert response.redirect_chain[-1][0] == "/supervisor/"
        assert response.status_code == 200

    def test_a_superuser_lands_on_the_admin(self, client, django_user_model):
        django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)

        response = _log_in(client, "root")

        assert response.redirect_chain[-1][0] == "/admin/"
        assert response.status_code == 200

    def test_a_user_without_a_role_is_told_they_are_not_allowed(self, client, outsider):
        response = _log_in(client, "olly")

        assert response.status_code == 403
        assert "Not allowed" in response.content.decode()

    def test_login_returns_to_the_page_that_asked_for_it(self, client, alice, alices_conversation):
        page = f"/desk/conversations/{alices_conversation.pk}/"

        response = _log_in(client, "alice", next=page)

        assert response.redirect_chain[-1][0] == page
        assert response.status_code == 200


class TestAnonymousUsers:
    @pytest.mark.parametrize("path", ["/", "/desk/", "/desk/conversations/", "/supervisor/"])
    def test_they_are_sent_to_the_login_page(self, client, path):
        response = client.get(path)

        assert response.status_code == 302
        assert response["Location"] == f"{LOGIN_URL}?next={path}"

    def test_they_are_sent_to_the_login_page_from_a_conversation(self, client, pending_conversation):
        path = f"/desk/conversations/{pending_conversation.pk}/"

        response = client.get(path)

        assert response.status_code == 302
        assert response["Location"] == f"{LOGIN_URL}?next={path}"

    @pytest.mark.parametrize("action", ["accept", "messages", "close"])
    def test_they_cannot_act_on_a_conversation(self, client, pending_conversation, action):
        response = client.post(f"/desk/conversations/{pending_conversation.pk}/{action}/", {"body": "hi"})

        assert response.status_code == 302
        assert response["Location"].startswith(LOGIN_URL)
        pending_conversation.refresh_from_db()
        assert pending_conversation.status == Conversation.Status.PENDING


class TestWrongRole:
    @pytest.mark.parametrize("path", ["/supervisor/", "/supervisor/conversations/"])
    def test_an_agent_gets_the_403_page_on_the_supervisor_desk(self, client, alice, path):
        client.force_login(alice)

        response = client.get(path)

        assert response.status_code == 403
        assert "Not allowed" in response.content.decode()

    def test_an_agent_gets_403_on_a_supervisor_conversation_page(self, client, alice, alices_conversation):
        client.force_login(alice)

        response = client.get(reverse("supervisor:conversation", args=[alices_conversation.pk]))

        assert response.status_code == 403

    def test_a_supervisor_gets_the_403_page_on_the_agent_desk(self, client, sam):
        client.force_login(sam)

        response = client.get("/desk/")

        assert response.status_code == 403
        assert "Not allowed" in response.content.decode()

    @pytest.mark.parametrize("action", ["accept", "messages", "close"])
    def test_a_supervisor_cannot_act_on_a_pending_conversation(
        self, client, sam, pending_conversation, action
    ):
        client.force_login(sam)

        response = client.post(f"/desk/conversations/{pending_conversation.pk}/{action}/", {"body": "hi"})

        assert response.status_code == 403
        pending_conversation.refresh_from_db()
        assert pending_conversation.status == Conversation.Status.PENDING
        assert pending_conversation.assigned_agent is None

    @pytest.mark.parametrize("action", ["messages", "close"])
    def test_a_supervisor_cannot_reply_in_or_close_an_open_conversation(
        self, client, sam, alices_conversation, action
    ):
        client.force_login(sam)

        response = client.post(f"/desk/conversations/{alices_conversation.pk}/{action}/", {"body": "hi"})

        assert response.status_code == 403
        alices_conversation.refresh_from_db()
        assert alices_conversation.status == Conversation.Status.OPEN
        assert not Message.objects.filter(conversation=alices_conversation).exists()

    def test_a_user_without_a_role_gets_403_everywhere(self, client, outsider, pending_conversation):
        client.force_login(outsider)

        for path in ["/", "/desk/", "/supervisor/", f"/desk/conversations/{pending_conversation.pk}/"]:
            assert client.get(path).status_code == 403, path

    def test_a_non_staff_user_cannot_open_the_admin(self, client, alice):
        client.force_login(alice)

        response = client.get("/admin/")

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


class TestLogout:
    def test_logging_out_ends_the_session_and_returns_to_the_login_page(self, client, alice):
        client.force_login(alice)

        response = client.post("/accounts/logout/")

        assert response.status_code == 302
        assert response["Location"] == LOGIN_URL
        assert "_auth_user_id" not in client.session
        assert client.get("/desk/")["Location"] == f"{LOGIN_URL}?next=/desk/"

    def test_logout_needs_a_post(self, client, alice):
        client.force_login(alice)

        assert client.get("/accounts/logout/").status_code == 405
        assert client.get("/desk/").status_code == 200

    def test_every_desk_page_offers_a_log_out_button(self, client, alice, sam):
        client.force_login(alice)
        assert 'action="/accounts/logout/"' in client.get("/desk/").content.decode()

        client.force_login(sam)
        assert 'action="/accounts/logout/"' in client.get("/supervisor/").content.decode()
