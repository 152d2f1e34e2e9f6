"""API keys: made by admins (command or admin), stored hashed, scoped, revocable, rate limited."""

from __future__ import annotations

import io

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from api import keys
from api.models import ApiKey
from payments.lifecycle import Status
from payments.models import PaymentRequest
from tests.api.conftest import ApiClient, create_body
from tests.payments.conftest import send

LIST = "/api/v1/payment-requests"


class TestCreatingKeys:
    def test_the_command_prints_the_key_alone_on_its_last_line_and_stores_only_its_hash(self, db):
        out = io.StringIO()

        call_command("create_api_key", "--name", "OMS production", "--scope", "write", stdout=out)

        key = out.getvalue().strip().splitlines()[-1]
        api_key = ApiKey.objects.get()
        assert key.startswith("cdk_")
        assert len(key) > 40
        assert api_key.name == "OMS production"
        assert api_key.scope == "write"
        assert api_key.prefix == key[:12]
        assert api_key.key_hash == keys.hash_key(key)
        assert key not in str(ApiKey.objects.values().get())
        assert ApiClient(key).get(LIST).status_code == 200

    def test_an_admin_creates_a_key_and_sees_it_once(self, admin_client):
        response = admin_client.post("/admin/api/apikey/add/", {"name": "CRM", "scope": "read"}, follow=True)

        message = next(str(m) for m in response.context["messages"])
        key = message.rsplit(" ", 1)[-1]
        api_key = ApiKey.objects.get()
        assert api_key.key_hash == keys.hash_key(key)
        assert api_key.created_by.username == "admin"
        assert key not in admin_client.get(f"/admin/api/apikey/{api_key.pk}/change/").content.decode()

    def test_an_admin_revokes_a_key_and_its_next_request_is_refused(self, admin_client, read_key):
        api_key = ApiKey.objects.get()

        admin_client.post(
            "/admin/api/apikey/", {"action": "revoke", "_selected_action": [api_key.pk]}, follow=True
        )

        api_key.refresh_from_db()
        assert api_key.revoked_at is not None
        assert api_key.revoked_by.username == "admin"
        response = ApiClient(read_key).get(LIST)
        assert response.status_code == 401
        assert response.json()["code"] == "api_key_revoked"

    def test_last_use_is_recorded(self, read_key):
        ApiClient(read_key).get(LIST)

        assert ApiKey.objects.get().last_used_at is not None


class TestPermissions:
    @pytest.mark.parametrize(
        ("headers", "code"),
        [
            ({}, "authentication_required"),
            ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, "authentication_required"),
            ({"Authorization": "Bearer cdk_not-a-key"}, "invalid_api_key"),
            ({"Authorization": "Bearer "}, "authentication_required"),
        ],
    )
    def test_without_a_valid_key_every_endpoint_answers_401_json(self, client, db, headers, code):
        for method, path in [
            ("get", LIST),
            ("get", f"{LIST}/1"),
            ("post", LIST),
            ("post", f"{LIST}/1/cancel"),
        ]:
            response = getattr(client, method)(path, headers=headers, content_type="application/json")

            assert response.status_code == 401, (method, path)
            assert response.json()["code"] == code
            assert response.json()["message"]

    def test_a_revoked_key_is_refused(self, write_key, alices_conversation, alice):
        keys.revoke_api_key(ApiKey.objects.get().pk)

        response = ApiClient(write_key).post_json(LIST, create_body(alices_conversation, alice))

        assert response.status_code == 401
        assert response.json() == {"code": "api_key_revoked", "message": "This API key has been revoked."}
        assert not PaymentRequest.objects.exists()

    def test_a_read_only_key_reads_but_cannot_create_or_cancel(self, warehouse, alices_conversation, alice):
        payment_request = send(alices_conversation, alice)

        assert warehouse.get(LIST).status_code == 200
        created = warehouse.post_json(LIST, create_body(alices_conversation, alice))
        canceled = warehouse.post_json(f"{LIST}/{payment_request.pk}/cancel")

        for response in (created, canceled):
            assert response.status_code == 403
            assert response.json()["code"] == "insufficient_scope"
        assert PaymentRequest.objects.count() == 1
        payment_request.refresh_from_db()
        assert payment_request.status == Status.SENT

    def test_each_key_is_rate_limited_on_its_own(self, read_key, write_key, settings):
        settings.API_RATE_LIMIT_PER_MINUTE = 3
        reader, writer = ApiClient(read_key), ApiClient(write_key)

        with time_machine.travel(timezone.now().replace(second=20), tick=False):  # well inside one window
            answers = [reader.get(LIST) for _ in range(4)]

        assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
        assert answers[0]["X-RateLimit-Remaining"] == "2"
        assert answers[3].json()["code"] == "rate_limited"
        assert 1 <= int(answers[3]["Retry-After"]) <= 60
        assert writer.get(LIST).status_code == 200

    def test_keys_carry_no_secret_in_their_string(self, read_key):
        api_key = ApiKey.objects.get()

        assert read_key not in str(api_key)
        assert api_key.prefix in str(api_key)
        assert api_key.created_at <= timezone.now()
