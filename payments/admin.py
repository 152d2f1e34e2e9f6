"""Admin for Chat 2 Pay. Requests and their history are read-only for everyone: the only way to change a
request is through its transitions, and history is never edited (a database trigger enforces it too).
Only the business profile is edited here; money exceptions are resolved through `actions`."""

import logging

from django.contrib import admin, messages

from chatdesk.admin_views import ReadOnlyMixin

from . import actions
from .export import csv_response
from .gateways.base import GatewayError
from .models import BusinessProfile, GatewayWebhookEvent, PaymentEvent, PaymentException, PaymentRequest

logger = logging.getLogger(__name__)


class PaymentEventInline(admin.TabularInline):
    model = PaymentEvent
    fields = ["at", "from_status", "to_status", "actor_kind", "actor_user", "reason", "details"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PaymentRequest)
class PaymentRequestAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["order_number", "display_amount", "status", "agent", "customer", "sent_at", "closed_at"]
    list_filter = ["status", "currency", "gateway"]
    search_fields = ["order_number", "customer__name", "customer__phone", "agent__username"]
    list_select_related = ["agent", "customer"]
    date_hierarchy = "sent_at"
    exclude = ["token_hash", "idempotency_key"]
    inlines = [PaymentEventInline]
    actions = ["export_csv"]

    @admin.action(description="Export selected payment requests to CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        logger.info("Admin export of %s payment requests by %s", queryset.count(), request.user.username)
        return csv_response(queryset)


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["at", "payment_request", "from_status", "to_status", "actor_kind", "actor_user", "reason"]
    list_filter = ["to_status", "actor_kind", "reason"]
    search_fields = ["payment_request__order_number"]
    list_select_related = ["payment_request", "actor_user"]
    date_hierarchy = "at"


@admin.register(GatewayWebhookEvent)
class GatewayWebhookEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The gateway inbox. `unmatched` events are flagged: no request of ours after every matching attempt."""

    list_display = [
        "received_at",
        "gateway",
        "event_type",
        "event_id",
        "outcome",
        "attempts",
        "next_attempt_at",
        "payment_request",
    ]
    list_filter = ["outcome", "gateway", "event_type"]
    date_hierarchy = "received_at"
    search_fields = ["event_id", "payment_request__order_number"]
    list_select_related = ["payment_request"]


@admin.register(PaymentException)
class PaymentExceptionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "payment_request",
        "kind",
        "amount",
        "currency",
        "resolution",
        "resolved_by",
        "refund_refusals",
        "last_refund_error",
    ]
    list_filter = ["resolution", "kind"]
    search_fields = ["payment_request__order_number", "gateway_reference"]
    list_select_related = ["payment_request", "resolved_by"]
    actions = ["refund"]

    @admin.action(description="Refund the selected money through the gateway", permissions=["refund"])
    def refund(self, request, queryset) -> None:
        for exception in queryset:
            try:
                exception = actions.refund_payment_exception(exception.pk, by=request.user)
            except GatewayError as error:  # still open: never reported as refunded
                self.message_user(request, f"{exception}: not refunded ({error})", messages.ERROR)
                continue
            self.message_user(request, f"{exception}: {exception.get_resolution_display()}", messages.SUCCESS)

    def has_refund_permission(self, request) -> bool:
        return request.user.is_superuser


@admin.register(BusinessProfile)
class BusinessProfileAdmin(admin.ModelAdmin):
    """The merchant name customers see on payment pages. One row: no add once it exists, no delete."""

    list_display = ["name"]

    def has_add_permission(self, request) -> bool:
        return not BusinessProfile.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
