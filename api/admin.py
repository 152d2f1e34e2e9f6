"""Admin for integrations: API keys (shown once, revoked, never edited), webhook endpoints, and the delivery
log with its "resend" action. Writes go through `api.keys` and `api.webhooks`."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from chatdesk.admin_views import ReadOnlyMixin

from . import keys, webhooks
from .models import ApiKey, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "scope"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scope", "created_at", "created_by", "last_used_at", "active"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by"]
    actions = ["revoke"]
    form = ApiKeyForm

    def get_readonly_fields(self, request, obj=None):
        # Scope and name are chosen when the key is made; a key is replaced, not edited.
        return [*self.readonly_fields, "name", "scope"] if obj else self.readonly_fields

    @admin.display(boolean=True, description="active")
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request, obj: ApiKey, form, change) -> None:
        if change:
            return
        api_key, key = keys.create_api_key(name=obj.name, scope=obj.scope, created_by=request.user)
        obj.pk = api_key.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"API key created. Copy it now, it is not shown again: {key}",
            messages.SUCCESS,
        )

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset) -> None:
        revoked = sum(keys.revoke_api_key(api_key.pk, by=request.user) for api_key in queryset)
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the record says who made it, when it was used and who revoked it


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "description", "is_enabled", "failing_since", "disabled_at", "disabled_reason"]
    list_filter = ["is_enabled"]
    search_fields = ["url", "description"]
    readonly_fields = [
        "previous_secret_expires_at",
        "failing_since",
        "disabled_at",
        "disabled_reason",
        "created_at",
    ]
    actions = ["roll_secret", "enable"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "event_types":
            return forms.TypedMultipleChoiceField(
                choices=WebhookEndpoint.EventType.choices,
                widget=forms.CheckboxSelectMultiple,
                label="Event types",
                help_text=db_field.help_text,
            )
        if db_field.name == "url":
            kwargs["assume_scheme"] = "https"  # a URL typed without a scheme (Django 6's default, stated now)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.action(description="Roll the signing secret (the old one keeps signing for 24 hours)")
    def roll_secret(self, request, queryset) -> None:
        for endpoint in queryset:
            webhooks.rotate_secret(endpoint.pk)
        self.message_user(request, "New secrets made: copy each from its endpoint page.", messages.SUCCESS)

    @admin.action(description="Enable selected endpoints (and send their pending events)")
    def enable(self, request, queryset) -> None:
        for endpoint in queryset:
            webhooks.enable_endpoint(endpoint.pk)
        self.message_user(request, "Enabled.", messages.SUCCESS)

    def changelist_view(self, request, extra_context=None):
        disabled = WebhookEndpoint.objects.filter(is_enabled=False, disabled_at__isnull=False).count()
        if disabled:
            self.message_user(
                request,
                f"{disabled} endpoint(s) were disabled because every delivery failed; pending events wait.",
                messages.WARNING,
            )
        return super().changelist_view(request, extra_context)


class WebhookAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = WebhookAttempt
    fields = ["attempted_at", "response_status", "duration_ms", "error", "response_body"]
    readonly_fields = fields
    extra = 0


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_response_status",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["state", "endpoint", "event__type"]
    search_fields = ["event__public_id", "event__payment_request__order_number", "endpoint__url"]
    list_select_related = ["event", "endpoint"]
    inlines = [WebhookAttemptInline]
    actions = ["resend"]

    @admin.display(description="event")
    def event_type(self, obj: WebhookDelivery) -> str:
        return obj.event.type

    @admin.action(description="Resend selected deliveries now", permissions=["view"])
    def resend(self, request, queryset) -> None:
        count = webhooks.resend(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Queued {count} deliveries at {timezone.now():%H:%M:%S}.")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["created_at", "type", "event_id", "payment_request"]
    list_filter = ["type"]
    search_fields = ["public_id", "payment_request__order_number"]
    list_select_related = ["payment_request"]
    readonly_fields = ["public_id", "type", "payment_request", "payment_event", "created_at", "body"]
