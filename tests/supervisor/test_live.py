"""An open Supervisor Desk follows every transition live, whichever process made it."""

import pytest
from channels.db import database_sync_to_async

from payments import actions
from tests.factories import PaymentRequestFactory, SupervisorFactory
from tests.websockets import connect, drain, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_status_change_made_elsewhere_refreshes_the_supervisor_list_and_detail():
    supervisor = await database_sync_to_async(SupervisorFactory)()
    payment_request = await database_sync_to_async(PaymentRequestFactory)()
    socket = await connect("/ws/desk/", await session_cookie(supervisor))
    await drain(socket)

    result = await database_sync_to_async(actions.cancel_payment_request)(
        payment_request.pk, agent=payment_request.agent
    )

    assert result.ok
    ops = await drain(socket)
    assert {"op": "refresh", "target": "transactions"} in ops
    assert {"op": "refresh", "target": f"transaction-{payment_request.pk}-detail"} in ops
    await socket.disconnect()
