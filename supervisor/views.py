"""The Supervisor Desk: read-only views of every conversation (Chat 2 Pay transactions come next)."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from desk import access
from desk.models import Conversation

PAGE_SIZE = 100


@access.supervisor_required
@require_GET
def index(request):
    conversations = Conversation.objects.select_related("customer", "assigned_agent")[:PAGE_SIZE]
    return render(request, "supervisor/index.html", {"conversations": conversations})


@access.supervisor_required
@require_GET
def conversation_list(request):
    conversations = Conversation.objects.select_related("customer", "assigned_agent")[:PAGE_SIZE]
    return render(request, "supervisor/index.html#conversations", {"conversations": conversations})


@access.supervisor_required
@require_GET
def conversation_detail(request, pk: int):
    conversation = access.get_conversation_for_viewer(request.user, pk)
    return render(
        request,
        "supervisor/conversation.html",
        {"conversation": conversation, "messages": conversation.transcript(), "viewer": "supervisor"},
    )
