"""WSGI entry point, for serving plain HTTP (pages, the API, webhooks) from a WSGI server such as gunicorn
while Daphne serves the websockets (docs/performance.md, "WSGI for HTTP"). `chatdesk.asgi` serves both."""

import os

from django.core.wsgi import get_wsgi_application

from chatdesk.gc_tuning import tune_garbage_collector

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatdesk.settings")

application = get_wsgi_application()
tune_garbage_collector()
