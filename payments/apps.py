from django.apps import AppConfig
from django.core import checks


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Chat 2 Pay"

    def ready(self) -> None:
        checks.register(check_chat2pay_settings, checks.Tags.compatibility)


def check_chat2pay_settings(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Settings that name things the code must know: the default currency and the gateway."""
    from django.conf import settings

    from . import lifecycle
    from .gateways import gateway_names

    errors = []
    if settings.CHAT2PAY_DEFAULT_CURRENCY not in lifecycle.MINOR_UNITS:
        errors.append(
            checks.Error(
                f"CHAT2PAY_DEFAULT_CURRENCY={settings.CHAT2PAY_DEFAULT_CURRENCY} is not supported.",
                hint="Use one of: " + ", ".join(sorted(lifecycle.MINOR_UNITS)),
                id="payments.E001",
            )
        )
    if settings.CHAT2PAY_GATEWAY not in gateway_names():
        errors.append(
            checks.Error(
                f"CHAT2PAY_GATEWAY={settings.CHAT2PAY_GATEWAY} is not a known gateway.",
                hint="Use one of: " + ", ".join(gateway_names()),
                id="payments.E002",
            )
        )
    errors += check_gateway_configuration(settings)
    return errors


def check_gateway_configuration(settings) -> list[checks.CheckMessage]:
    """The sandbox takes no money, so production must not run it by accident; Stripe needs its keys."""
    errors = []
    if settings.CHAT2PAY_GATEWAY == "sandbox" and not settings.DEBUG and not settings.CHAT2PAY_ALLOW_SANDBOX:
        errors.append(
            checks.Error(
                "CHAT2PAY_GATEWAY=sandbox with DEBUG off: customers would be asked to pay with test cards.",
                hint="Set CHAT2PAY_GATEWAY=stripe with its keys, or CHAT2PAY_ALLOW_SANDBOX=true for a demo.",
                id="payments.E003",
            )
        )
    if settings.CHAT2PAY_GATEWAY == "stripe":
        missing = [
            name
            for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CHAT2PAY_PUBLIC_BASE_URL")
            if not getattr(settings, name)
        ]
        if missing:
            errors.append(
                checks.Error(
                    "CHAT2PAY_GATEWAY=stripe needs " + ", ".join(missing) + ".",
                    hint="See docs/gateways.md for the keys and the webhook endpoint to create.",
                    id="payments.E004",
                )
            )
    from .gateways.sandbox import CHAOS

    if unknown := set(settings.CHAT2PAY_SANDBOX_CHAOS) - set(CHAOS):
        errors.append(
            checks.Error(
                f"CHAT2PAY_SANDBOX_CHAOS names unknown knobs: {', '.join(sorted(unknown))}.",
                hint="Use any of: " + ", ".join(CHAOS),
                id="payments.E005",
            )
        )
    return errors
