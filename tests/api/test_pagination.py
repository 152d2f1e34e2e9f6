"""Cursor pagination: every row that existed when a client started paging appears exactly once, even while
other requests are being created at the same time."""

from __future__ import annotations

import threading
import uuid

import pytest

from api import keys
from payments.models import PaymentRequest
from tests.api.conftest import ApiClient
from tests.factories import AgentFactory, ConversationFactory
from tests.payments.conftest import make_request, send

LIST = "/api/v1/payment-requests"


def all_pages(client: ApiClient, **params) -> list[int]:
    ids, cursor = [], None
    while True:
        body = client.get(LIST, {**params, **({"cursor": cursor} if cursor else {})}).json()
        ids += [row["id"] for row in body["data"]]
        if not body["has_more"]:
            return ids
        cursor = body["next_cursor"]


def test_pages_follow_one_another_without_gaps_or_repeats(oms, alice):
    rows = [make_request(agent=alice) for _ in range(7)]

    ids = all_pages(oms, limit=3)

    assert ids == [row.pk for row in sorted(rows, key=lambda row: (row.sent_at, row.pk), reverse=True)]


def test_rows_sent_in_the_same_instant_are_ordered_by_id(oms, alice):
    first = make_request(agent=alice)
    twins = [make_request(agent=alice, sent_at=first.sent_at) for _ in range(4)]

    assert all_pages(oms, limit=2) == sorted([first.pk, *(twin.pk for twin in twins)], reverse=True)


@pytest.mark.django_db(transaction=True)
def test_paging_is_stable_while_requests_are_being_sent_concurrently():
    key = keys.create_api_key(name="Warehouse", scope="read")[1]
    alice = AgentFactory(username="alice")
    conversation = ConversationFactory(status="open", assigned_agent=alice)
    existing = {send(conversation, alice).pk for _ in range(25)}
    stop = threading.Event()
    inserted: list[int] = []

    def keep_sending():
        from django.db import connections

        try:
            while not stop.is_set():
                inserted.append(send(conversation, alice, idempotency_key=uuid.uuid4().hex).pk)
        finally:
            connections.close_all()

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        client = ApiClient(key)
        seen, cursor = [], None
        while True:
            body = client.get(LIST, {"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
            seen += [row["id"] for row in body["data"]]
            if not body["has_more"]:
                break
            cursor = body["next_cursor"]
    finally:
        stop.set()
        sender.join()

    assert inserted, "the sender thread inserted nothing while we paged"
    assert len(seen) == len(set(seen)), "a row appeared twice"
    assert existing <= set(seen), "a row that existed before paging started was skipped"
    assert set(seen) <= existing | set(inserted)
    assert PaymentRequest.objects.count() == len(existing) + len(inserted)
