"""Site-wide views: the role-based landing page and the health probe."""

import time

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from desk.access import is_agent, is_supervisor

from . import throttling
from .celery import BEAT_HEARTBEAT_KEY, WORKER_HEARTBEAT_KEY


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each person to their desk: agents to /desk/, supervisors to /supervisor/, admins to /admin/."""
    if is_agent(request.user):
        return redirect("desk:index")
    if is_supervisor(request.user):
        return redirect("supervisor:index")
    if request.user.is_staff:
        return redirect("admin:index")
    raise PermissionDenied


def _database_up() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _heartbeats() -> tuple[bool, float | None, float | None]:
    """(redis up, worker heartbeat, beat heartbeat) in one round trip."""
    try:
        beats = cache.get_many([WORKER_HEARTBEAT_KEY, BEAT_HEARTBEAT_KEY])
    except Exception:
        return False, None, None
    return True, beats.get(WORKER_HEARTBEAT_KEY), beats.get(BEAT_HEARTBEAT_KEY)


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis, the Celery worker and beat are all up; else 503 naming what is down."""
    redis_up, worker_beat, beat_beat = _heartbeats()
    fresh_after = time.time() - settings.HEARTBEAT_STALE_AFTER_SECONDS
    checks = {
        "database": _database_up(),
        "redis": redis_up,
        "worker": worker_beat is not None and worker_beat >= fresh_after,
        "beat": beat_beat is not None and beat_beat >= fresh_after,
    }
    body = {name: "up" if ok else "down" for name, ok in checks.items()}
    down = [name for name, ok in checks.items() if not ok]
    body["status"] = "ok" if not down else "down: " + ", ".join(down)
    return JsonResponse(body, status=200 if not down else 503)


class LoginView(auth_views.LoginView):
    """Django's login page; once an IP or username has failed too often it answers 429 with the form and a
    message (the authentication backend refuses such attempts anyway, on the admin's login too)."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if throttling.login_blocked(request, request.POST.get("username", "")):
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, throttling.TOO_MANY)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)
