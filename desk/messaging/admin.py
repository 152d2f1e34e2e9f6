"""Admin for the messaging outbox and inbox. Both are history of what was sent and received: view only, for
everyone (no add, change or delete); the outbox's own tasks are the only writers."""

from django.contrib import admin

from chatdesk.admin_views import ReadOnlyMixin

from .models import InboundWebhookEvent, OutboundDelivery


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "message",
        "channel",
        "provider",
        "purpose",
        "state",
        "attempts",
        "delivery_status",
        "provider_message_id",
    ]
    list_filter = ["state", "delivery_status", "channel", "provider", "purpose"]
    search_fields = ["provider_message_id", "to", "message__conversation__customer__name"]
    list_select_related = ["message"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-pk"]


@admin.register(InboundWebhookEvent)
class InboundWebhookEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["received_at", "provider", "kind", "event_id"]
    list_filter = ["provider", "kind"]
    search_fields = ["event_id"]
    date_hierarchy = "received_at"
    ordering = ["-received_at", "-pk"]
