"""A customer's WhatsApp reply reaches the agent's open desk page live (the real Redis channel layer)."""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from desk import actions
from desk.messaging.models import OutboundDelivery
from tests.desk.test_consumers import connect, drain, receive_until, session_cookie
from tests.factories import AgentFactory

from .conftest import post_whatsapp, wa_message, wa_status

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_whatsapp_reply_arrives_in_the_desk_live(whatsapp_api):
    alice = await database_sync_to_async(AgentFactory)()
    assert (
        await database_sync_to_async(post_whatsapp)(wa_message("+27821110000", "Hello"))
    ).status_code == 200

    @database_sync_to_async
    def accept():
        from desk.models import Conversation

        conversation = Conversation.objects.get()
        actions.accept_conversation(conversation.pk, agent=alice)
        return conversation

    conversation = await accept()
    socket = await connect(f"/ws/desk/conversations/{conversation.pk}/", await session_cookie(alice))
    await drain(socket)

    response = await database_sync_to_async(post_whatsapp)(
        wa_message("+27821110000", "Here is my <b>reply</b>"), client=Client()
    )
    assert response.status_code == 200
    op = await receive_until(socket, lambda op: op.get("op") == "upsert" and "reply" in op["html"])
    assert "Here is my &lt;b&gt;reply&lt;/b&gt;" in op["html"]
    assert op["container"] == f"transcript-{conversation.pk}"

    # The agent replies; WhatsApp's delivery receipts re-render that message on the desk, live.
    @database_sync_to_async
    def reply_and_read():
        message = actions.send_agent_message(conversation.pk, agent=alice, body="Thanks!")
        provider_id = OutboundDelivery.objects.get(message=message).provider_message_id
        assert post_whatsapp(wa_status(provider_id, "read")).status_code == 200
        return message

    message = await reply_and_read()
    op = await receive_until(
        socket, lambda op: op.get("op") == "upsert" and 'data-delivery="read"' in op["html"]
    )
    assert f'id="message-{message.pk}"' in op["html"]
    assert 'data-version="3"' in op["html"]  # accepted, then read: a later push wins on the page
    await socket.disconnect()
