"""The customer's web chat: the pre-chat form at /chat/ and their own chat page at /chat/<token>/."""

from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from chatdesk import throttling

from . import access, actions
from .forms import MessageForm, StartChatForm


@require_http_methods(["GET", "HEAD", "POST"])
def start(request):
    form = StartChatForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if throttling.chat_start_limited(request):  # each chat lands in every agent's queue
            return throttling.too_many_requests()
        conversation = actions.start_conversation(
            name=form.cleaned_data["name"], phone=form.cleaned_data["phone"], body=form.cleaned_data["body"]
        )
        return redirect("chat:conversation", token=conversation.customer_token)
    return render(request, "chat/start.html", {"form": form}, status=422 if form.errors else 200)


@throttling.limit_token_guessing  # an unknown token (404) counts against the client's guesses
@require_http_methods(["GET", "HEAD"])
def conversation(request, token: str):
    conversation = access.get_conversation_for_customer(token)
    context = {
        "conversation": conversation,
        "messages": conversation.transcript(),
        "viewer": "customer",
        "message_form": MessageForm(),
    }
    response = render(request, "chat/conversation.html", context)
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


@throttling.limit_token_guessing
@require_POST
def send_message(request, token: str):
    conversation = access.get_conversation_for_customer(token)
    form = MessageForm(request.POST)
    message = None
    if form.is_valid():
        try:
            message = actions.receive_customer_message(conversation.pk, body=form.cleaned_data["body"])
            form = MessageForm()
        except actions.Refusal as refusal:
            form.add_error("body", refusal.message)
    conversation.refresh_from_db()
    context = {
        "conversation": conversation,
        "message_form": form,
        "viewer": "customer",
        "new_message": message,
    }
    return render(request, "chat/_chat.html#composer", context, status=422 if form.errors else 200)
