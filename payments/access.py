"""Who may do what with payment requests: the permission-checked fetches every view and consumer uses.

Agents act only in conversations assigned to them (another agent's conversation or request is a 403, one
that does not exist a 404); supervisors and everyone else get 403 for sending and canceling. Customers reach
a request only through its unguessable token.
"""

from __future__ import annotations

import re

from django.core.exceptions import PermissionDenied
from django.http import Http404

from desk import access as desk_access
from desk.models import Conversation

from .models import PaymentRequest, hash_token


def get_conversation_for_sending(user, conversation_id: int) -> Conversation:
    """The agent's own open conversation, where they may send a payment request (403/404 otherwise)."""
    conversation = desk_access.get_conversation_for_agent(user, conversation_id)
    if conversation.assigned_agent_id != user.pk or conversation.status != Conversation.Status.OPEN:
        raise PermissionDenied
    return conversation


def get_payment_request_for_agent(user, payment_request_id: int) -> PaymentRequest:
    """A request in one of the agent's own conversations: 403 for non-agents and for another agent's request,
    404 for one that does not exist."""
    if not desk_access.is_agent(user):
        raise PermissionDenied
    payment_request = (
        PaymentRequest.objects.select_related("conversation").filter(pk=payment_request_id).first()
    )
    if payment_request is None:
        raise Http404("No such payment request.")
    if payment_request.conversation.assigned_agent_id != user.pk:
        raise PermissionDenied(desk_access.ANOTHER_AGENTS_CONVERSATION)
    return payment_request


def get_payment_request_for_customer(token: str) -> PaymentRequest | None:
    """The request behind a customer's link, or None: callers show one page for every unknown token."""
    return PaymentRequest.objects.filter(token_hash=hash_token(token)).first()


# Fetchers that draw link previews or scan links (B2). They run no script, so they never reach the click POST
# anyway; refusing them there too is only a supplement, since a user agent can be forged.
_LINK_PREVIEW_AGENTS = re.compile(
    r"whatsapp|facebookexternalhit|facebot|slackbot|slack-imgproxy|telegrambot|twitterbot|discordbot|"
    r"linkedinbot|skypeuripreview|applebot|bingpreview|googlebot|embedly|redditbot|preview|crawler|spider|bot\b",
    re.IGNORECASE,
)


def looks_like_link_preview(user_agent: str) -> bool:
    return bool(_LINK_PREVIEW_AGENTS.search(user_agent or ""))
