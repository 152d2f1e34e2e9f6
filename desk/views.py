"""The agent desk: thin views that fetch with permission, call one action, and render a partial."""

from django.db.models import Q
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from . import access, actions
from .forms import ConversationFilterForm, MessageForm
from .models import Conversation
from .toasts import toast_response

LIST_LIMIT = 100


def _conversation_lists(request) -> dict:
    """The queue and the agent's own conversations, searched, filtered and sorted: two queries at any size."""
    form = ConversationFilterForm(request.GET or None)
    conversations = access.conversations_visible_to(request.user).select_related("customer", "assigned_agent")
    order = "-last_activity_at"
    if form.is_valid():
        if q := form.cleaned_data["q"].strip():
            conversations = conversations.filter(
                Q(customer__name__icontains=q) | Q(customer__phone__contains=q)
            )
        if status := form.cleaned_data["status"]:
            conversations = conversations.filter(status=status)
        order = form.order_by()
    conversations = conversations.order_by(order, "-pk")
    return {
        "filter_form": form if form.is_bound else ConversationFilterForm(),
        "queue": list(conversations.filter(status=Conversation.Status.PENDING)[:LIST_LIMIT]),
        "mine": list(conversations.filter(assigned_agent=request.user)[:LIST_LIMIT]),
    }


def _conversation_url(conversation: Conversation) -> str:
    return reverse("desk:conversation", args=[conversation.pk])


@access.agent_required
@require_GET
def index(request):
    return render(request, "desk/index.html", _conversation_lists(request))


@access.agent_required
@require_GET
def conversation_list(request):
    return render(request, "desk/index.html#lists", _conversation_lists(request))


@access.agent_required
@require_GET
def conversation_detail(request, pk: int):
    conversation = access.get_conversation_for_agent(request.user, pk)
    context = {
        "conversation": conversation,
        "messages": conversation.transcript(),
        "viewer": "agent",
        "message_form": MessageForm(),
    }
    return render(request, "desk/conversation.html", {**_conversation_lists(request), **context})


@access.agent_required
@require_POST
def accept(request, pk: int):
    # Any agent may try to take a chat: one that left the queue (another agent was quicker) is the action's
    # refusal, a toast saying so, not an error page.
    conversation = get_object_or_404(Conversation, pk=pk)
    try:
        actions.accept_conversation(conversation.pk, agent=request.user)
    except actions.Refusal as refusal:
        return toast_response(request, refusal.message, level="error", status=409)
    return HttpResponseClientRedirect(_conversation_url(conversation))


@access.agent_required
@require_POST
def send_message(request, pk: int):
    conversation = access.get_conversation_for_agent(request.user, pk)
    form = MessageForm(request.POST)
    message = None
    if form.is_valid():
        try:
            message = actions.send_agent_message(
                conversation.pk, agent=request.user, body=form.cleaned_data["body"]
            )
            form = MessageForm()
        except actions.Refusal as refusal:
            form.add_error("body", refusal.message)
    conversation.refresh_from_db()
    context = {"conversation": conversation, "message_form": form, "viewer": "agent", "new_message": message}
    return render(request, "desk/_conversation.html#composer", context, status=422 if form.errors else 200)


@access.agent_required
@require_POST
def close(request, pk: int):
    conversation = access.get_conversation_for_agent(request.user, pk)
    try:
        actions.close_conversation(conversation.pk, agent=request.user)
    except actions.Refusal as refusal:
        return toast_response(request, refusal.message, level="error", status=409)
    return HttpResponseClientRedirect(_conversation_url(conversation))
