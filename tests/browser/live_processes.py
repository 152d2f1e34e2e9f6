"""The real processes that browser tests drive: Daphne, and a Celery worker with beat.

They run exactly as in production (`daphne chatdesk.asgi:application`, `celery -A chatdesk worker|beat`), as
subprocesses of pytest, against the *test* database that pytest-django created and the same Redis the test
process uses. Each process writes its output to a log file; a failing browser test shows the tail of each.
Fixtures in `tests/browser/conftest.py` create and stop them; this module only knows how to run them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

from django.conf import settings
from django.core.cache import cache
from django.db import connection

from chatdesk.celery import BEAT_HEARTBEAT_KEY, WORKER_HEARTBEAT_KEY
from chatdesk.celery import app as celery_app
from chatdesk.embedded import ROOT, _die_with_parent, _free_port, _terminate, celery_beat_command

BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 30


def database_url_for_tests() -> str:
    """A DATABASE_URL for the database this test session uses (pytest-django's `test_…` database).

    Built from the live connection settings, so it works for a TCP server, a Unix socket directory (the
    embedded PostgreSQL) and any OPTIONS such as sslmode.
    """
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or ""
    options = {key: value for key, value in (db.get("OPTIONS") or {}).items() if isinstance(value, str | int)}
    if host.startswith("/"):  # a socket directory goes in the query string
        options.setdefault("host", host)
        host = ""
    netloc = f"{auth}@" if auth else ""
    netloc += host + (f":{db['PORT']}" if db["PORT"] and host else "")
    query = f"?{urlencode(options)}" if options else ""
    return f"postgres://{netloc}/{quote(db['NAME'], safe='')}{query}"


def live_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every live process: the test database, the same Redis, a local DEBUG desk.

    DEBUG serves the static files through WhiteNoise's finders (no collectstatic); `extra` (e.g. shorter
    Chat 2 Pay windows) is applied last. DJANGO_ALLOW_ASYNC_UNSAFE, which only the test process needs while
    Playwright runs, is never passed on: the servers must keep Django's async-safety checks.
    """
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE="chatdesk.settings",
        DATABASE_URL=database_url_for_tests(),
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="true",
        WHITENOISE_USE_FINDERS="true",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CSRF_TRUSTED_ORIGINS="",
        SECURE_SSL_REDIRECT="false",
        PYTHONUNBUFFERED="1",
    )
    env.update({key: str(value) for key, value in (extra or {}).items()})
    return env


class LiveProcess:
    """One supervised subprocess (in its own process group, killed if pytest dies) with a log file."""

    def __init__(self, name: str, command: list[str], *, env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n--- starting {' '.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after a few seconds."""
        if self.process is not None:
            _terminate([self.process], timeout=10)
            self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def wait_until(
        self, ready: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_SECONDS
    ) -> None:
        """Poll `ready()` until it is true; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.running:
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no {what} within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.1)


def login_page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/accounts/login/", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class DaphneServer(LiveProcess):
    """Daphne serving `chatdesk.asgi:application` on 127.0.0.1:<free port>; `url` is its base URL."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "chatdesk.asgi:application"]
        super().__init__("daphne", command, env=env, log_path=log_path)

    def start(self) -> None:
        """Start Daphne and return once the login page answers 200."""
        super().start()
        self.wait_until(lambda: login_page_answers(self.url), "HTTP answer")

    def restart(self) -> None:
        """Stop Daphne and start it again on the same port (open pages lose their sockets and reconnect)."""
        self.stop()
        self.start()


class GunicornServer(LiveProcess):
    """gunicorn serving `chatdesk.wsgi:application` with threads, as docker-compose.yml's `http` does."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(BIN / "gunicorn"), "chatdesk.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
                   "--worker-class", "gthread", "--workers", "1", "--threads", "8"]  # fmt: skip
        super().__init__("gunicorn", command, env=env, log_path=log_path)

    def start(self) -> None:
        """Start gunicorn and return once the login page answers 200."""
        super().start()
        self.wait_until(lambda: login_page_answers(self.url), "HTTP answer")


class NginxProxy(LiveProcess):
    """nginx with the repository's `deploy/nginx.conf`, as docker-compose.yml's `proxy`: only the upstreams'
    addresses (`http:8000`, `web:8000`) and the listening port are rewritten. `url` is its base URL."""

    def __init__(
        self, nginx: str, *, http_port: int, websocket_port: int, run_dir: Path, log_path: Path
    ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        for production, here in (
            ("server http:8000;", f"server 127.0.0.1:{http_port};"),
            ("server web:8000;", f"server 127.0.0.1:{websocket_port};"),
            ("listen 8000;", f"listen 127.0.0.1:{self.port};"),
        ):
            if production not in site:
                raise RuntimeError(f"deploy/nginx.conf no longer has {production!r}: update NginxProxy")
            site = site.replace(production, here)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "site.conf").write_text(site)
        # The image's main config, reduced: the proxy's own files under run_dir, its errors to the log file.
        temp_paths = "".join(
            f"  {kind}_temp_path {run_dir}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (run_dir / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes 1;\npid {run_dir}/nginx.pid;\nerror_log stderr warn;\ndaemon off;\n"
            + f"events {{}}\nhttp {{\n  access_log {run_dir}/access.log;\n{temp_paths}"
            + f"  include {run_dir}/site.conf;\n}}\n"
        )
        command = [nginx, "-p", str(run_dir), "-c", str(run_dir / "nginx.conf")]
        super().__init__("nginx", command, env=os.environ, log_path=log_path)

    def start(self) -> None:
        """Start nginx and return once the login page answers 200 through it."""
        super().start()
        self.wait_until(lambda: login_page_answers(self.url), "HTTP answer")


class CeleryProcesses:
    """A Celery worker (`--pool solo`) and beat, started together; `stop()` stops both."""

    def __init__(self, *, env: Mapping[str, str], log_dir: Path) -> None:
        self.worker_name = f"browser-tests-{os.getpid()}@{socket.gethostname()}"
        celery = [str(BIN / "celery"), "-A", "chatdesk"]
        self.worker = LiveProcess(
            "celery worker",
            [
                *celery,
                *"worker --pool solo -l info --without-mingle --without-gossip".split(),
                "-n",
                self.worker_name,
            ],
            env=env,
            log_path=log_dir / "celery-worker.log",
        )
        self.beat = LiveProcess(
            "celery beat",
            celery_beat_command(log_dir / "celerybeat-schedule"),
            env=env,
            log_path=log_dir / "celery-beat.log",
        )

    def start(self) -> None:
        """Start both; return once the worker answers a control ping and beat has written its heartbeat."""
        cache.delete_many([WORKER_HEARTBEAT_KEY, BEAT_HEARTBEAT_KEY])  # a stale one must not count as ready
        self.worker.start()
        self.beat.start()
        self.worker.wait_until(self._worker_answers, "reply to a control ping")
        self.beat.wait_until(lambda: cache.get(BEAT_HEARTBEAT_KEY) is not None, "heartbeat")

    def _worker_answers(self) -> bool:
        return bool(celery_app.control.ping([self.worker_name], timeout=0.5))

    def stop(self) -> None:
        self.beat.stop()
        self.worker.stop()

    @property
    def processes(self) -> list[LiveProcess]:
        return [self.worker, self.beat]
