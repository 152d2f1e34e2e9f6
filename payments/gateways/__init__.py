"""Payment gateways behind one interface (`base.Gateway`); which one a deployment uses is configuration."""

from django.conf import settings

from .base import Gateway
from .sandbox import SandboxGateway
from .stripe import StripeGateway

_GATEWAYS: dict[str, Gateway] = {"sandbox": SandboxGateway(), "stripe": StripeGateway()}


def get_gateway(name: str | None = None) -> Gateway:
    """The gateway called `name` (a request's own), or the deployment's default (CHAT2PAY_GATEWAY)."""
    return _GATEWAYS[name or settings.CHAT2PAY_GATEWAY]


def gateway_names() -> list[str]:
    return list(_GATEWAYS)
