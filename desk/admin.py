"""Admin for customers, conversations and messages. Transcripts are history: read-only here."""

from django import forms
from django.contrib import admin

from . import actions

# The messaging outbox and inbox (desk.messaging is not an app of its own) register their admin on import.
from .messaging import admin as messaging_admin  # noqa: F401
from .models import Conversation, Customer, Message


class CustomerAdminForm(forms.ModelForm):
    """A phone number typed the way people write it (`082 123 4567`) is stored in E.164, as the web chat does;
    one that is not a valid number is a field error (the model's E.164 validator backs this up)."""

    class Meta:
        model = Customer
        fields = ["name", "phone"]

    def clean_phone(self) -> str:
        return actions.normalize_phone(self.cleaned_data["phone"])


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    form = CustomerAdminForm
    list_display = ["name", "phone", "created_at"]
    search_fields = ["name", "phone"]
    date_hierarchy = "created_at"


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created_at", "direction", "kind", "author", "body"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["pk", "customer", "channel", "status", "assigned_agent", "last_activity_at"]
    list_filter = ["status", "channel", "assigned_agent"]
    search_fields = ["customer__name", "customer__phone", "assigned_agent__username"]
    list_select_related = ["customer", "assigned_agent"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "customer",
        "channel",
        "status",
        "assigned_agent",
        "created_at",
        "accepted_at",
        "closed_at",
        "last_activity_at",
        "version",
    ]
    exclude = ["customer_token"]
    inlines = [MessageInline]

    def has_add_permission(self, request):
        return False  # conversations start from a channel, through desk.actions

    def has_change_permission(self, request, obj=None):
        return False  # a view page: conversations change only through desk.actions

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "conversation", "direction", "kind", "author", "short_body"]
    list_filter = ["direction", "kind"]
    search_fields = ["body", "conversation__customer__name", "conversation__customer__phone"]
    list_select_related = ["conversation__customer", "author"]
    date_hierarchy = "created_at"

    @admin.display(description="Body")
    def short_body(self, obj: Message) -> str:
        return obj.body[:80]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
