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
    return errors
