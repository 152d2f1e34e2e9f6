"""ASGI entry point: HTTP through Django, websockets through Channels (session cookie, Origin checked).

Websockets get the session but not channels' AuthMiddleware: that would spend a trip to the database
thread every socket of the process shares on each connect, customers' too. The desk consumer reads who is
asking in the same trip as the groups it may join (desk/consumers.py).
"""

import os

from django.core.asgi import get_asgi_application

from chatdesk.gc_tuning import tune_garbage_collector
from chatdesk.logredact import redact_daphne_access_log

# Daphne's access log prints request paths (pay and chat tokens) straight to stdout, past settings.LOGGING:
# redact them like every other log line.
redact_daphne_access_log()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatdesk.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402

from desk.routing import websocket_urlpatterns as desk_websockets  # noqa: E402
from payments.routing import websocket_urlpatterns as payments_websockets  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            SessionMiddlewareStack(URLRouter(desk_websockets + payments_websockets))
        ),
    }
)


tune_garbage_collector()
