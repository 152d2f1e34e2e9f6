from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from .actions import EMPTY_MESSAGE_ERROR, clean_message_body, normalize_phone
from .models import Conversation

EMPTY_MESSAGE = {"required": EMPTY_MESSAGE_ERROR}


class StartChatForm(forms.Form):
    """The customer's pre-chat form at /chat/."""

    name = forms.CharField(label="Name", max_length=120)
    phone = forms.CharField(label="Phone number", max_length=32)
    body = forms.CharField(
        label="Message", strip=False, error_messages=EMPTY_MESSAGE, widget=forms.Textarea(attrs={"rows": 3})
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].replace("\x00", "").strip()
        if not name:
            raise ValidationError("Tell us your name.")
        return name

    def clean_phone(self) -> str:
        return normalize_phone(self.cleaned_data["phone"])

    def clean_body(self) -> str:
        return clean_message_body(self.cleaned_data["body"])


class MessageForm(forms.Form):
    """A reply in a conversation, by the agent or the customer."""

    body = forms.CharField(
        label="Message",
        strip=False,
        error_messages=EMPTY_MESSAGE,
        widget=forms.Textarea(attrs={"rows": 2, "maxlength": settings.DESK_MESSAGE_MAX_LENGTH}),
    )

    def clean_body(self) -> str:
        return clean_message_body(self.cleaned_data["body"])


class ConversationFilterForm(forms.Form):
    """Search, filter and sort for the agent's conversation list."""

    SORTS = {"recent": "-last_activity_at", "oldest": "last_activity_at"}

    q = forms.CharField(label="Search name or phone", required=False, max_length=100)
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "All statuses"), *Conversation.Status.choices]
    )
    sort = forms.ChoiceField(
        label="Sort",
        required=False,
        choices=[("recent", "Latest activity first"), ("oldest", "Oldest activity first")],
    )

    def order_by(self) -> str:
        return self.SORTS.get(self.cleaned_data.get("sort") or "recent", "-last_activity_at")
