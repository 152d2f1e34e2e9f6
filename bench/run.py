"""The Chat Desk benchmark suite (issue 7): `make bench` (quick profile) and `make bench-full`.

    python -m chatdesk.embedded bench [--profile quick|full] [--only B1,B3,...]

Runs against DATABASE_URL's server but in its own database (`chatdesk_bench`, dropped and re-created every
run) and REDIS_URL's Redis. Daphne, a Celery worker (prefork, 2) and beat run exactly as in production,
DEBUG off, pinned to the server core; this process (the websocket client and HTTP load) and the B3 drivers
run on the other core. Everything is bounded in count and time and stops by itself.

Scenarios: B1 hold, B2 connect storm (a Daphne restart), B3 push latency, B4 mass expiry, B5 webhooks,
B6 supervisor pages under B3 load, and SOAK (not in the default set: `--only B1,SOAK`, an hour of held
sockets with cards flowing, for the channel layer's memory growth). Each figure is printed with its ratio
to the reference probes taken at the start of the run (Redis PING ops/s, a Python loopback echo round
trip, a trivial view's requests/s). Results also go to var/bench/results-<profile>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import random
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, gclog  # noqa: E402
from bench.common import LOAD_CPUS, LOG_DIR, ROOT, SERVER_CPUS, Proc, pct, summary_ms  # noqa: E402

PROFILES = {
    "quick": {
        "hold": [1000],
        "hold_seconds": 15,
        "ramp_rate": 50,
        "push_sockets": 1000,
        "push_rates": [50, 200],
        "push_seconds": 10,
        "expiry": [(1000, 0, True)],
        "webhook_seconds": 8,
        "webhook_open_rate": 500,
        "supervisor": (20_000, 100_000),
        "supervisor_rounds": 5,
        "soak_minutes": 60,
        "soak_rate": 20,
        "soak_warmup_minutes": 10,
    },
    "full": {
        "hold": [1000, 2000, 5000],
        "hold_seconds": 60,
        "ramp_rate": 50,
        "push_sockets": 2000,
        "push_rates": [50, 200, 1000],
        "push_seconds": 20,
        "expiry": [(1000, 0, True), (10_000, 0, True), (1000, 200, True)],
        "webhook_seconds": 15,
        "webhook_open_rate": 500,
        "supervisor": (100_000, 500_000),
        "supervisor_rounds": 20,
        "soak_minutes": 60,
        "soak_rate": 20,
        "soak_warmup_minutes": 10,
    },
}
PING_SECONDS = 25  # static/desk/realtime.js PING_MS
CARD_RE = re.compile(r'id="payment-request-(\d+)"[^>]*?data-version="(\d+)"\s+data-status="(\w+)"')
REFS: dict[str, float] = {}
DAPHNE_GC_LOG = LOG_DIR / "gc-daphne.log"
CLIENT_GC_LOG = LOG_DIR / "gc-client.log"
RESULTS: dict[str, object] = {}


def say(line: str = "") -> None:
    print(line, flush=True)


def record(key: str, value) -> None:
    RESULTS[key] = value


def vs_echo(ms: float) -> str:
    return f"{ms * 1000 / REFS['echo_us']:.0f}× echo RTT"


async def in_thread(function, *args):
    """`asyncio.to_thread`, then the thread's database connection goes back to the pool: the executor's threads
    outlive the call, and each would otherwise hold a pooled connection for the rest of the run (an A/B of ten
    runs exhausted the pool)."""

    def call():
        from django.db import connections

        try:
            return function(*args)
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)


# --- Setup ------------------------------------------------------------------------------------------------


def prepare_environment() -> tuple[str, str]:
    database_url = common.bench_database_url(os.environ["DATABASE_URL"])
    os.environ.update(common.server_environment({"DATABASE_URL": database_url}))
    os.environ["ALLOWED_HOSTS"] += ",testserver"  # B6 counts queries in-process with the test client
    return database_url, os.environ["REDIS_URL"]


def manage(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=True,
                   preexec_fn=common.pin(LOAD_CPUS))  # fmt: skip


def http_server(env: Mapping[str, str]) -> str:
    """Which server answers plain HTTP in this run: gunicorn, as in production, unless BENCH_HTTP_SERVER says."""
    return env.get("BENCH_HTTP_SERVER", "gunicorn")


class Servers:
    """Daphne + gunicorn + Celery worker + beat, pinned to the server core; restartable (B2) and
    re-configurable (A/B).

    As in production (product change 20), gunicorn serves plain HTTP (B5's webhooks, B6's pages: `http_port`)
    and Daphne the websockets. BENCH_HTTP_SERVER=daphne (e.g. `--ab BENCH_HTTP_SERVER=daphne,gunicorn`) has
    Daphne serve everything, as `make run` does."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.port = common.free_port()
        self.env = common.server_environment(extra_env)
        self.http_server = http_server(self.env)
        if self.http_server not in {"daphne", "gunicorn"}:
            raise SystemExit(f"BENCH_HTTP_SERVER must be daphne or gunicorn, not {self.http_server!r}")
        self.http_port = common.free_port() if self.http_server == "gunicorn" else self.port
        self.daphne: Proc | None = None
        self.gunicorn: Proc | None = None
        self.worker: Proc | None = None
        self.beat: Proc | None = None

    def start_daphne(self) -> None:
        # Daphne as in production, with the GC probe (bench/gclog.py) logging its collections' pauses.
        cmd = [
            sys.executable,
            "-m",
            "bench.gclog",
            str(DAPHNE_GC_LOG),
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            # Daphne drops a websocket whose handshake (our connect, up to accept) takes longer; default 5 s
            "--websocket_connect_timeout",
            self.env.get("BENCH_DAPHNE_CONNECT_TIMEOUT", "5"),
            "chatdesk.asgi:application",
        ]
        self.daphne = Proc("daphne", cmd, env=self.env, cpus=SERVER_CPUS)
        common.wait_for(lambda: common.port_answers(self.port), "Daphne", procs=[self.daphne])

    def start_gunicorn(self) -> None:
        """Threads rather than processes: one core, and each request mostly waits on PostgreSQL and Redis. The
        app is loaded before the workers fork (--preload) and a page must answer before the run goes on: the
        master listens at once, and workers still importing Django would eat the core during B1's ramp."""
        cmd = [str(common.BIN / "gunicorn"), "-b", f"127.0.0.1:{self.http_port}", "--worker-class", "gthread",
               "--workers", "2", "--threads", "8", "--preload", "--log-level", "warning",
               "chatdesk.wsgi:application"]  # fmt: skip
        self.gunicorn = Proc("gunicorn", cmd, env=self.env, cpus=SERVER_CPUS)
        common.wait_for(lambda: common.page_answers(self.http_port, "/accounts/login/"), "gunicorn",
                        procs=[self.gunicorn])  # fmt: skip

    def start(self) -> None:
        self.start_daphne()
        if self.http_server == "gunicorn":
            self.start_gunicorn()
        celery = [str(common.BIN / "celery"), "-A", "chatdesk"]
        name = f"bench-{os.getpid()}-{secrets.token_hex(3)}@%h"
        self.worker = Proc("celery-worker", [*celery, "worker", "-l", "warning", "--concurrency", "2",
                                             "--without-mingle", "--without-gossip", "-n", name],
                           env=self.env, cpus=SERVER_CPUS)  # fmt: skip
        self.beat = Proc("celery-beat", [*celery, "beat", "-l", "warning", "-s", str(LOG_DIR / "celerybeat")],
                         env=self.env, cpus=SERVER_CPUS)  # fmt: skip
        from django.core.cache import cache

        from chatdesk.celery import BEAT_HEARTBEAT_KEY, WORKER_HEARTBEAT_KEY

        cache.delete_many([WORKER_HEARTBEAT_KEY, BEAT_HEARTBEAT_KEY])
        common.wait_for(lambda: cache.get(WORKER_HEARTBEAT_KEY) and cache.get(BEAT_HEARTBEAT_KEY),
                        "worker and beat heartbeats", procs=[self.worker, self.beat])  # fmt: skip

    def restart_daphne(self) -> None:
        self.daphne.stop()
        self.start_daphne()

    def stop(self) -> None:
        for proc in (self.beat, self.worker, self.gunicorn, self.daphne):
            if proc is not None:
                proc.stop()


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import psycopg
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    info = redis.Redis.from_url(os.environ["REDIS_URL"]).info("server")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    found = {
        "commit": commit.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else ""),
        "python": platform.python_version(),
        "postgresql": pg,
        "redis": info.get("redis_version", "?"),
        "psycopg": psycopg.__version__,
        "redis-py": redis.__version__,
    }
    for name in ("Django", "channels", "channels-redis", "daphne", "celery", "websockets", "Twisted"):
        found[name] = version(name)
    found["cpus"] = f"{os.cpu_count()} (server on {sorted(SERVER_CPUS)}, load on {sorted(LOAD_CPUS)})"
    return found


# --- Fixtures (bulk: the suite measures the desk, not the set-up) ------------------------------------------


def create_agents(count: int) -> list[dict]:
    """`count` agents, each logged in (a session row) with one open conversation holding a clicked request."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from desk.access import AGENTS_GROUP
    from desk.models import Conversation, Customer

    User = get_user_model()
    now = timezone.now()
    group, _ = Group.objects.get_or_create(name=AGENTS_GROUP)
    users = User.objects.bulk_create(
        User(username=f"bench-desk-{n:05d}", first_name="Desk", last_name=f"{n:05d}",
             password="!" + get_random_string(40))
        for n in range(count)
    )  # fmt: skip
    User.groups.through.objects.bulk_create(
        User.groups.through(user_id=u.pk, group_id=group.pk) for u in users
    )
    store = SessionStore()
    keys = [get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789") for _ in users]
    Session.objects.bulk_create(
        Session(session_key=key, expire_date=now + timedelta(days=1), session_data=store.encode({
            "_auth_user_id": str(u.pk), "_auth_user_backend": settings.AUTHENTICATION_BACKENDS[0],
            "_auth_user_hash": u.get_session_auth_hash()}))
        for key, u in zip(keys, users, strict=True)
    )  # fmt: skip
    customers = Customer.objects.bulk_create(
        Customer(name=f"Bench customer {n}", phone="+27821234567") for n in range(count)
    )
    conversations = Conversation.objects.bulk_create(
        Conversation(customer=c, status=Conversation.Status.OPEN, assigned_agent=u, accepted_at=now,
                     last_activity_at=now)
        for c, u in zip(customers, users, strict=True)
    )  # fmt: skip
    requests = create_requests(conversations, status="clicked", prefix="HOLD")
    return [
        {"user": u.pk, "session": key, "conversation": conv.pk, "request": pr.pk}
        for u, key, conv, pr in zip(users, keys, conversations, requests, strict=True)
    ]


def held_conversations(agents: list[dict], count: int) -> list:
    """`count` picks, round robin, of the conversations the held desks have open."""
    from desk.models import Conversation

    conversations = list(Conversation.objects.filter(pk__in=[a["conversation"] for a in agents]))
    return [conversations[n % len(conversations)] for n in range(count)]


def unwatched_conversations(agents: list[dict], count: int) -> list:
    """`count` new open conversations, assigned round robin to the agents, that no desk has open."""
    from django.utils import timezone

    from desk.models import Conversation, Customer

    now = timezone.now()
    customers = Customer.objects.bulk_create(
        Customer(name=f"Campaign customer {n}", phone="+27821234567") for n in range(count)
    )
    return Conversation.objects.bulk_create(
        Conversation(customer=c, status=Conversation.Status.OPEN, accepted_at=now, last_activity_at=now,
                     assigned_agent_id=agents[n % len(agents)]["user"])
        for n, c in enumerate(customers)
    )  # fmt: skip


def create_requests(conversations, *, status: str, prefix: str, deadline=None) -> list:
    """Payment requests (with their link messages) as `payments.actions` would have left them."""
    from django.utils import timezone

    from desk.models import Message
    from payments.models import PaymentEvent, PaymentRequest

    now = timezone.now()
    far = now + timedelta(hours=6)
    run = secrets.token_hex(3)
    messages = Message.objects.bulk_create(
        Message(conversation=c, direction=Message.Direction.OUTBOUND, kind=Message.Kind.PAYMENT,
                author_id=c.assigned_agent_id, body="Payment request")
        for c in conversations
    )  # fmt: skip
    requests = PaymentRequest.objects.bulk_create(
        PaymentRequest(
            conversation=c, customer_id=c.customer_id, agent_id=c.assigned_agent_id, message=m, phone="+27821234567",
            amount="100.00", currency="ZAR", order_number=f"{prefix}-{run}-{n:06d}",
            token_hash=secrets.token_hex(32), idempotency_key=secrets.token_hex(16), status=status, sent_at=now,
            click_deadline=deadline or far, clicked_at=now if status == "clicked" else None,
            pay_deadline=far if status == "clicked" else None, gateway="sandbox",
        )
        for n, (c, m) in enumerate(zip(conversations, messages, strict=True))
    )  # fmt: skip
    PaymentEvent.objects.bulk_create(
        PaymentEvent(payment_request=pr, from_status="", to_status=pr.status, at=now, actor_kind="agent",
                     actor_user_id=pr.agent_id, reason="sent")
        for pr in requests
    )  # fmt: skip
    return requests


def supervisor_cookie() -> str:
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore

    from desk.access import SUPERVISORS_GROUP
    from tests.factories import SupervisorFactory

    user = SupervisorFactory(username=f"bench-supervisor-{secrets.token_hex(3)}")
    user.groups.add(Group.objects.get_or_create(name=SUPERVISORS_GROUP)[0])
    store = SessionStore()
    store["_auth_user_id"] = str(user.pk)
    # The configured backend: a session naming a backend the settings no longer list is anonymous.
    store["_auth_user_backend"] = settings.AUTHENTICATION_BACKENDS[0]
    store["_auth_user_hash"] = user.get_session_auth_hash()
    store.save()
    return f"sessionid={store.session_key}"


# --- The websocket side: one simulated desk tab per agent --------------------------------------------------


class Arrivals:
    """Every payment card any desk received: (monotonic time, request id, version, status)."""

    def __init__(self) -> None:
        self.cards: list[tuple[float, int, int, str]] = []

    def record(self, cards: list[tuple[int, int, str]], now: float) -> None:
        self.cards += [(now, pk, version, status) for pk, version, status in cards]


def cards_in(raw: str) -> list[tuple[int, int, str]]:
    """The payment cards in one message from the desk socket: (request id, version, status)."""
    if "payment-request-" not in raw:
        return []
    html = json.loads(raw).get("html", "")
    return [(int(match[1]), int(match[2]), match[3]) for match in CARD_RE.finditer(html)]


class Desk:
    def __init__(self, port: int, agent: dict, arrivals: Arrivals) -> None:
        self.agent = agent
        self.url = f"ws://127.0.0.1:{port}/ws/desk/conversations/{agent['conversation']}/"
        self.headers = {"Cookie": f"sessionid={agent['session']}", "Origin": f"http://127.0.0.1:{port}"}
        self.arrivals = arrivals
        self.ws = None
        self.tasks: list[asyncio.Task] = []
        self.shown: dict[
            str, int
        ] = {}  # {request id: version} of the cards on this page, sent with each ping

    async def connect(self) -> tuple[float, float] | str:
        """Open the socket and wait for the snapshot; returns (handshake ms, resync ms) or an error."""
        from websockets.asyncio.client import connect

        start = time.monotonic()
        try:
            self.ws = await connect(self.url, additional_headers=self.headers, compression=None,
                                    ping_interval=None, open_timeout=30, max_queue=None)  # fmt: skip
            handshake = time.monotonic() - start
            async with asyncio.timeout(30):
                while True:  # the snapshot ends with the transcript
                    raw = await self.ws.recv()
                    self._show(cards_in(raw))
                    if json.loads(raw).get("op") == "replace":
                        break
        except Exception as error:  # noqa: BLE001 - every failure is a connect error, counted by kind
            return type(error).__name__
        resynced = time.monotonic() - start
        self.tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._ping())]
        return handshake * 1000, resynced * 1000

    def _show(self, cards: list[tuple[int, int, str]]) -> None:
        for pk, version, _ in cards:
            self.shown[str(pk)] = max(version, self.shown.get(str(pk), 0))

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                cards = cards_in(raw)
                self.arrivals.record(cards, time.monotonic())
                self._show(cards)
        except Exception:  # noqa: BLE001, S110 - a closed socket ends the reader
            pass

    async def _ping(self) -> None:
        """Like realtime.js: a ping every 25 s with the card versions the page shows (the consumer re-joins its
        groups, sends again only the cards that are newer, and re-reads the user every
        DESK_ACCESS_RECHECK_SECONDS)."""
        await asyncio.sleep(random.uniform(0, PING_SECONDS))
        while True:
            try:
                await self.ws.send(json.dumps({"type": "ping", "cards": self.shown}))
            except Exception:  # noqa: BLE001
                return
            await asyncio.sleep(PING_SECONDS)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.ws is not None:
            try:
                await self.ws.close()
            except Exception:  # noqa: BLE001, S110
                pass


RECONNECT_BACKOFF_S = (
    0.5,
    15.0,
)  # static/desk/realtime.js: 500 ms doubling to MAX_BACKOFF_MS, + up to 250 ms
RECONNECT_GIVE_UP_S = 120


async def ramp(
    desks: list[Desk], rate: float, window: float | None = None, *, reconnect: bool = False
) -> tuple[list, list, dict]:
    """Connect every desk, at `rate` per second (or spread uniformly over `window` seconds).

    `errors` counts failed attempts by kind. With `reconnect`, a desk whose attempt fails tries again the way
    realtime.js does (backoff 0.5 s doubling to 15 s, with jitter) for up to two minutes, so `resyncs` says
    when each desk was back; without it a failed desk stays disconnected."""
    start = time.monotonic()
    handshakes, resyncs, errors = [], [], {}

    async def one(desk: Desk, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        backoff, give_up = RECONNECT_BACKOFF_S[0], time.monotonic() + RECONNECT_GIVE_UP_S
        while isinstance(outcome := await desk.connect(), str):
            errors[outcome] = errors.get(outcome, 0) + 1
            await desk.close()
            desk.ws = None
            if not reconnect or time.monotonic() > give_up:
                return
            await asyncio.sleep(backoff + random.uniform(0, 0.25))
            backoff = min(backoff * 2, RECONNECT_BACKOFF_S[1])
        handshakes.append(outcome[0])
        resyncs.append(time.monotonic() - start)

    if window is not None:
        offsets = sorted(random.uniform(0, window) for _ in desks)
    else:
        offsets = [n / rate for n in range(len(desks))]
    await asyncio.gather(*(one(desk, start + offset) for desk, offset in zip(desks, offsets, strict=True)))
    return handshakes, resyncs, errors


def daphne_usage(pid: int) -> tuple[float, float]:
    """(RSS in bytes, CPU seconds so far) of the Daphne process."""
    import psutil

    process = psutil.Process(pid)
    cpu = process.cpu_times()
    return process.memory_info().rss, cpu.user + cpu.system


# --- Scenarios ---------------------------------------------------------------------------------------------


async def b1_hold(servers: Servers, agents: list[dict], profile: dict, arrivals: Arrivals) -> list[Desk]:
    n = len(agents)
    # Warm Daphne (imports, templates, first connections), then take the baseline.
    warm = [Desk(servers.port, agent, arrivals) for agent in agents[:20]]
    await ramp(warm, rate=100)
    await asyncio.gather(*(desk.close() for desk in warm))
    await asyncio.sleep(2)
    rss0, _ = daphne_usage(servers.daphne.pid)
    desks = [Desk(servers.port, agent, arrivals) for agent in agents]
    started = time.monotonic()
    handshakes, resyncs, errors = await ramp(desks, rate=profile["ramp_rate"])
    ramp_seconds = time.monotonic() - started
    await asyncio.sleep(3)  # let the last snapshots and pings settle
    rss1, cpu1 = daphne_usage(servers.daphne.pid)
    await asyncio.sleep(profile["hold_seconds"])
    rss2, cpu2 = daphne_usage(servers.daphne.pid)
    alive = sum(1 for desk in desks if desk.ws is not None and desk.ws.state.name == "OPEN")
    per_socket_kb = (rss2 - rss0) / max(1, n - sum(errors.values())) / 1024
    idle_cpu = (cpu2 - cpu1) / profile["hold_seconds"] * 100
    say(f"B1 hold {n} sockets: {sum(errors.values())} connect errors {errors or ''}; ramp {ramp_seconds:.1f} s "
        f"at {profile['ramp_rate']}/s; {alive} still open after {profile['hold_seconds']} s")  # fmt: skip
    say(f"   handshake {summary_ms(handshakes)} = p99 {vs_echo(pct(handshakes, 99))}")
    say(f"   server RSS {rss0 / 2**20:.0f} MB -> {rss2 / 2**20:.0f} MB: {per_socket_kb:.1f} KB per socket"
        f" (target ≤ 64 KB); idle CPU {idle_cpu:.1f} % of a core = {idle_cpu / max(1, alive) * 1000:.2f} % per 1k open sockets"
        f" (pings every {PING_SECONDS} s)")  # fmt: skip
    record(f"B1.{n}", {"errors": errors, "handshake_p50_ms": pct(handshakes, 50), "handshake_p99_ms": pct(handshakes, 99),
                       "kb_per_socket": per_socket_kb, "idle_cpu_pct": idle_cpu, "alive": alive,
                       "ramp_seconds": ramp_seconds})  # fmt: skip
    return desks


async def b2_storm(servers: Servers, desks: list[Desk], agents: list[dict], arrivals: Arrivals) -> list[Desk]:
    """A deploy: Daphne restarts (every socket drops) and all desks reconnect within 5 s."""
    await in_thread(servers.restart_daphne)
    await asyncio.gather(*(desk.close() for desk in desks))
    fresh = [Desk(servers.port, agent, arrivals) for agent in agents]
    started = time.monotonic()
    handshakes, resyncs, errors = await ramp(fresh, rate=0, window=5.0, reconnect=True)
    total = time.monotonic() - started
    back = len(resyncs)
    said_all = "every desk" if back == len(agents) else f"{back} of {len(agents)} desks"
    say(f"B2 storm {len(agents)} desks reconnect within 5 s after a Daphne restart, retrying like realtime.js: "
        f"{sum(errors.values())} failed attempts {errors or ''}; {said_all} resynced after "
        f"{max(resyncs, default=float('nan')):.1f} s (all done {total:.1f} s)")  # fmt: skip
    say(f"   handshake under the storm {summary_ms(handshakes)}")
    record(f"B2.{len(agents)}", {"errors": errors, "resynced": back, "all_resynced_s": max(resyncs, default=None),
                                 "handshake_p99_ms": pct(handshakes, 99)})  # fmt: skip
    return fresh


def start_drivers(ids: list[int], rate: float, seconds: float, tag: str, start_in: float = 1.0):
    """Open-loop B3 drivers (one per 100 changes/s: a sync caller manages ~110/s), pinned to the load core."""
    count = max(1, min(math.ceil(rate / 100), len(ids)))  # never a driver with no requests to change
    start = time.monotonic() + start_in + 1.5  # Django start-up
    procs, files = [], []
    for k in range(count):
        out = LOG_DIR / f"driver-{tag}-{k}.jsonl"
        share = ids[k::count]
        cmd = [sys.executable, "-m", "bench.driver", "--ids", ",".join(map(str, share)), "--rate", str(rate / count),
               "--seconds", str(seconds), "--start", str(start + k / rate), "--out", str(out)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=ROOT, preexec_fn=common.pin(LOAD_CPUS)))
        files.append(out)
    return procs, files, start


def read_driver(files) -> list[dict]:
    changes = []
    for path in files:
        with open(path) as lines:
            changes += [json.loads(line) for line in lines]
    return changes


def match_cards(changes: list[dict], arrivals: Arrivals, since: float) -> dict:
    by_key: dict[tuple[int, int], float] = {}
    seen_max: dict[int, int] = {}
    out_of_order = 0
    for at, pk, version, _ in arrivals.cards:
        if at < since:
            continue
        if version < seen_max.get(pk, 0):
            out_of_order += 1
        seen_max[pk] = max(seen_max.get(pk, 0), version)
        by_key.setdefault((pk, version), at)
    from_commit, from_schedule, lost = [], [], 0
    for change in changes:
        at = by_key.get((change["id"], change["version"]))
        if at is None:
            lost += 1
            continue
        from_commit.append((at - change["commit"]) * 1000)
        from_schedule.append((at - change["scheduled"]) * 1000)
    return {
        "from_commit": from_commit,
        "from_schedule": from_schedule,
        "lost": lost,
        "out_of_order": out_of_order,
    }


async def b3_push(desks_agents: list[dict], rate: float, seconds: float, arrivals: Arrivals) -> dict:
    ids = [agent["request"] for agent in desks_agents]
    since = time.monotonic()
    procs, files, _ = start_drivers(ids, rate, seconds, f"b3-{rate}")
    for proc in procs:
        await in_thread(proc.wait)
    await asyncio.sleep(2)  # stragglers
    daphne_gc = gclog.pauses(DAPHNE_GC_LOG, since, time.monotonic())
    client_gc = gclog.pauses(CLIENT_GC_LOG, since, time.monotonic())
    changes = read_driver(files)
    matched = match_cards(changes, arrivals, since)
    achieved = len(changes) / (max(c["sent"] for c in changes) - min(c["scheduled"] for c in changes))
    commit_cost = [(c["sent"] - c["called"]) * 1000 for c in changes]
    late = [(c["called"] - c["scheduled"]) * 1000 for c in changes]
    publish_cost = [(c["sent"] - c["commit"]) * 1000 for c in changes if c["commit"]]
    lc = matched["from_commit"]
    say(f"B3 push {len(desks_agents)} sockets, {rate:.0f} changes/s for {seconds:.0f} s (achieved {achieved:.0f}/s, "
        f"{len(procs)} driver{'s' if len(procs) > 1 else ''}): {matched['lost']} lost, {matched['out_of_order']} out of order")  # fmt: skip
    say(f"   commit -> card {summary_ms(lc)}; p50 = {vs_echo(pct(lc, 50))}, p99 = {vs_echo(pct(lc, 99))}")
    say(f"   schedule -> card {summary_ms(matched['from_schedule'])}; driver call (tx + publish) p50 "
        f"{pct(commit_cost, 50):.1f} ms of which publish (group_send from sync code) p50 {pct(publish_cost, 50):.1f} ms;"
        f" start lag p99 {pct(late, 99):.1f} ms")  # fmt: skip
    say(f"   garbage collection during the run: Daphne {gclog.describe(daphne_gc)}; "
        f"this client {gclog.describe(client_gc)}")  # fmt: skip
    result = {"rate": rate, "achieved": achieved, "lost": matched["lost"], "out_of_order": matched["out_of_order"],
              "p50_ms": pct(lc, 50), "p99_ms": pct(lc, 99), "max_ms": max(lc, default=None),
              "sched_p99_ms": pct(matched["from_schedule"], 99), "driver_call_p50_ms": pct(commit_cost, 50),
              "publish_p50_ms": pct(publish_cost, 50), "daphne_gc": gclog.summary(daphne_gc),
              "client_gc": gclog.summary(client_gc)}  # fmt: skip
    record(
        f"B3.{rate:.0f}", {"sockets": len(desks_agents), **result}
    )  # one socket count per run (push_sockets)
    return result


async def soak(
    servers: Servers, desks: list[Desk], desks_agents: list[dict], profile: dict, arrivals: Arrivals
) -> None:
    """The channel layer's soak: the held desks stay connected for `soak_minutes` while cards flow at
    `soak_rate`/s; Daphne's RSS is sampled every minute, and its growth after the warm-up is the figure
    (target < 5 %). Every card must still arrive, and every desk must still be open at the end."""
    minutes, rate, warmup = profile["soak_minutes"], profile["soak_rate"], profile["soak_warmup_minutes"]
    ids = [agent["request"] for agent in desks_agents]
    since = time.monotonic()
    procs, files, start = start_drivers(ids, rate, minutes * 60, "soak")
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    samples = []
    for minute in range(minutes + 1):
        rss, _ = daphne_usage(servers.daphne.pid)
        samples.append(rss)
        if minute % 10 == 0:
            say(f"   soak minute {minute}: Daphne RSS {rss / 2**20:.1f} MB")
        if minute < minutes:
            await asyncio.sleep(max(0.0, start + (minute + 1) * 60 - time.monotonic()))
    for proc in procs:
        await in_thread(proc.wait)
    await asyncio.sleep(2)  # stragglers
    matched = match_cards(read_driver(files), arrivals, since)
    alive = sum(1 for desk in desks if desk.ws is not None and desk.ws.state.name == "OPEN")
    warm, end = samples[warmup], samples[-1]
    growth = (end - warm) / warm * 100
    lc = matched["from_commit"]
    say(f"SOAK {len(ids)} sockets for {minutes} min, {rate:g} changes/s: Daphne RSS {samples[0] / 2**20:.1f} MB at "
        f"the start, {warm / 2**20:.1f} MB after {warmup} min of warm-up, {end / 2**20:.1f} MB at the end: "
        f"{growth:+.1f} % after warm-up (target < 5 %); peak {max(samples) / 2**20:.1f} MB")  # fmt: skip
    say(f"   {alive} of {len(desks)} desks still open; cards: {len(lc)} arrived, {matched['lost']} lost, {matched['out_of_order']} out of order; "
        f"commit -> card {summary_ms(lc)}")  # fmt: skip
    record(f"SOAK.{len(ids)}", {"minutes": minutes, "rate": rate, "rss_mb": [round(r / 2**20, 1) for r in samples],
                                "growth_after_warmup_pct": growth, "lost": matched["lost"],
                                "out_of_order": matched["out_of_order"], "p99_ms": pct(lc, 99), "alive": alive})  # fmt: skip


async def b4_expiry(
    agents: list[dict], count: int, load_rate: float, arrivals: Arrivals, *, watched: bool = True
) -> None:
    """`count` sent requests with the same click deadline: spread over the held conversations (every card has
    a desk to reach), or, unwatched, one each in new conversations no desk has open (a campaign's links: the
    figure is then the rows')."""
    from django.utils import timezone

    from payments.models import PaymentRequest

    def make() -> list[int]:
        picked = held_conversations(agents, count) if watched else unwatched_conversations(agents, count)
        return [pr.pk for pr in create_requests(picked, status="sent", prefix="EXP")]

    ids = await in_thread(make)
    lead = 3.0 + count / 5000
    deadline_wall = timezone.now() + timedelta(seconds=lead)
    deadline_mono = time.monotonic() + lead

    def set_deadline() -> None:
        PaymentRequest.objects.filter(pk__in=ids).update(click_deadline=deadline_wall)

    await in_thread(set_deadline)
    drivers = []
    if load_rate:
        drivers, files, _ = start_drivers(
            [a["request"] for a in agents], load_rate, lead + 10, f"b4-{count}", 0
        )
    wanted = set(ids) if watched else set()  # unwatched: no card to wait for, only the rows
    first_expired: dict[int, float] = {}
    give_up = deadline_mono + 60

    def still_open() -> bool:
        return PaymentRequest.objects.filter(pk__in=ids).exclude(status="expired").exists()

    if watched:
        scanned = 0
        while len(first_expired) < len(wanted) and time.monotonic() < give_up:
            await asyncio.sleep(0.2)
            cards = arrivals.cards
            for at, pk, _, status in cards[scanned:]:
                if status == "expired" and pk in wanted and pk not in first_expired:
                    first_expired[pk] = at
            scanned = len(cards)
    else:
        while time.monotonic() < give_up and await in_thread(still_open):
            await asyncio.sleep(0.2)
    for proc in drivers:
        await in_thread(proc.wait)

    def closed_lateness() -> tuple[list[float], int]:
        rows = PaymentRequest.objects.filter(pk__in=ids).values_list("status", "closed_at")
        late = [
            (closed - deadline_wall).total_seconds() * 1000 for status, closed in rows if status == "expired"
        ]
        return late, sum(1 for status, _ in rows if status != "expired")

    db_late, not_expired = await in_thread(closed_lateness)
    lateness = [(at - deadline_mono) * 1000 for at in first_expired.values()]
    missing = len(wanted) - len(first_expired)
    last = max(lateness, default=float("nan")) / 1000
    label = f"B4 expiry {count:,} requests, one deadline" + (
        f", under {load_rate:.0f} changes/s" if load_rate else ""
    )
    if not watched:
        last_row = max(db_late, default=float("nan")) / 1000
        say(f"{label}, in conversations no desk has open: last row expired {last_row:.2f} s after the deadline; "
            f"{not_expired} rows not expired")  # fmt: skip
        say(f"   row lateness (closed_at − deadline) {summary_ms(db_late)}")
        record(f"B4-unwatched.{count}.{int(load_rate)}", {"last_row_s": last_row, "not_expired": not_expired,
                                                          "row_p50_ms": pct(db_late, 50), "row_p99_ms": pct(db_late, 99)})  # fmt: skip
        return
    say(f"{label}: last expired card {last:.2f} s after the deadline (target ≤ 5 s); {missing} cards missing, "
        f"{not_expired} rows not expired")  # fmt: skip
    say(f"   card lateness {summary_ms(lateness)}; row lateness (closed_at − deadline) {summary_ms(db_late)}")
    record(f"B4.{count}.{int(load_rate)}", {"last_card_s": last, "missing_cards": missing, "not_expired": not_expired,
                                            "card_p50_ms": pct(lateness, 50), "card_p99_ms": pct(lateness, 99),
                                            "row_p99_ms": pct(db_late, 99)})  # fmt: skip


WEBHOOK_DRAIN_SECONDS = 180  # how long B5 waits for the worker to apply what the endpoint stored


async def b5_webhooks(servers: Servers, agents: list[dict], profile: dict) -> None:
    """Signed sandbox webhooks for clicked requests: 10 % duplicates, 5 % bad signatures. The endpoint stores
    and answers; the Celery worker applies (spec C3 #28), so B5 also times how long until all are applied."""
    from django.db.models import Count
    from django.utils import timezone

    from payments.gateways.sandbox import SIGNATURE_HEADER, sign
    from payments.models import GatewayWebhookEvent, PaymentEvent

    seconds = profile["webhook_seconds"]
    wanted = int(seconds * (profile["webhook_open_rate"] + 800))
    worker_elsewhere = profile["webhook_worker"] == "elsewhere"

    def make() -> list[int]:
        # With the worker beside the server, each apply's card reaches a held desk. With it elsewhere the
        # figure is the endpoint's alone: new conversations, so that the held ones (and the next run's
        # B1 snapshots, in an A/B) do not grow by thousands of cards.
        picked = (
            unwatched_conversations(agents, wanted)
            if worker_elsewhere
            else held_conversations(agents, wanted)
        )
        return [pr.pk for pr in create_requests(picked, status="clicked", prefix="HOOK")]

    ids = await in_thread(make)
    rng = random.Random(7)
    fresh = iter(ids)
    sent_bodies: list[bytes] = []
    unique_valid: set[str] = set()
    expected = {"bad": 0, "dup": 0}
    started_at = timezone.now().isoformat()
    run = f"evt_bench_{secrets.token_hex(3)}_"  # this run's events (an A/B runs B5 several times)

    def make_request(_: int):
        roll = rng.random()
        if roll < 0.10 and sent_bodies:
            body = rng.choice(sent_bodies)
            expected["dup"] += 1
            signature = sign(body)
        else:
            pk = next(fresh, None) or rng.choice(ids)
            event_id = f"{run}{secrets.token_hex(8)}"
            body = json.dumps({"id": event_id, "type": "payment.succeeded", "created": int(time.time()), "data": {
                "checkout": f"cs_bench_{pk}", "client_reference": str(pk), "payment": f"pay_bench_{event_id}",
                "amount": "100.00", "currency": "ZAR", "started_at": started_at,
                "card": {"brand": "visa", "last4": "4242"}}}).encode()  # fmt: skip
            if roll < 0.15:
                expected["bad"] += 1
                signature = sign(body, secret="not-the-secret")
            else:
                unique_valid.add(event_id)
                sent_bodies.append(body)
                signature = sign(body)
        return (
            "POST",
            "/webhooks/sandbox/",
            body,
            {"Content-Type": "application/json", SIGNATURE_HEADER: signature},
        )

    trivial_rps = await trivial_view(servers.http_port)  # this run's baseline, on the server B5 uses
    if worker_elsewhere:  # as if on another host: it takes nothing from the web core while the requests run
        servers.worker.pause()
    rate = profile["webhook_open_rate"]
    try:
        first_sent = time.monotonic()
        rps, closed_lat, closed_status = await common.closed_loop(
            servers.http_port, make_request, concurrency=16, seconds=seconds
        )
        open_lat, open_status = await common.open_loop(
            servers.http_port, make_request, rate=rate, seconds=seconds
        )
        last_sent = time.monotonic()
    finally:
        if worker_elsewhere:
            servers.worker.resume()

    def unapplied() -> int:
        return GatewayWebhookEvent.objects.filter(event_id__startswith=run, outcome="received").count()

    while (left := await in_thread(unapplied)) and time.monotonic() < last_sent + WEBHOOK_DRAIN_SECONDS:
        await asyncio.sleep(0.2)
    drained = time.monotonic()

    def check() -> tuple[int, int]:
        stored = GatewayWebhookEvent.objects.filter(event_id__startswith=run).count()
        twice = (PaymentEvent.objects.filter(reason="paid").values("payment_request")
                 .annotate(n=Count("pk")).filter(n__gt=1).count())  # fmt: skip
        return stored, twice

    stored, twice = await in_thread(check)
    # A paused worker starts applying when the requests end; a running one when they begin.
    applied_rate = (stored - left) / (drained - (last_sent if worker_elsewhere else first_sent))
    statuses = {k: closed_status.get(k, 0) + open_status.get(k, 0) for k in {*closed_status, *open_status}}
    worker_where = "paused until the last request" if worker_elsewhere else "running beside the server"
    say(f"B5 webhooks on {servers.http_server}, worker {worker_where} (10 % duplicates, 5 % bad signatures): "
        f"closed loop {rps:.0f} req/s "
        f"(16 connections, {rps / trivial_rps:.2f}× the trivial view's {trivial_rps:.0f} rps on the same server; "
        f"target ≥ 1,000), {summary_ms(closed_lat)}")  # fmt: skip
    say(
        f"   open loop {rate} req/s: {summary_ms(open_lat)} (target p99 ≤ 50 ms) = p99 {vs_echo(pct(open_lat, 99))}"
    )
    say(f"   statuses {dict(sorted(statuses.items()))}; {expected['bad']} bad signatures sent, "
        f"{expected['dup']} duplicates; inbox rows {stored} for {len(unique_valid)} distinct valid events; "
        f"requests paid twice: {twice} (must be 0)")  # fmt: skip
    say(f"   applied by the worker: {stored - left} of {stored} stored events, the last {drained - last_sent:.1f} s "
        f"after the last request ({applied_rate:.0f} events/s from the "
        f"{'last' if worker_elsewhere else 'first'} request); "
        f"not applied: {left}")  # fmt: skip
    record("B5", {"worker": profile["webhook_worker"], "trivial_rps": trivial_rps, "closed_rps": rps,
                  "closed_p99_ms": pct(closed_lat, 99), "open_rate": rate,
                  "open_p50_ms": pct(open_lat, 50), "open_p99_ms": pct(open_lat, 99), "statuses": statuses,
                  "inbox_rows": stored, "distinct_valid": len(unique_valid), "paid_twice": twice,
                  "applied_per_s": applied_rate, "drain_s": drained - last_sent, "not_applied": left})  # fmt: skip


async def trivial_view(port: int, seconds: float = 4) -> float:
    rps, latencies, _ = await common.closed_loop(
        port, lambda _: ("GET", "/accounts/login/", b"", {}), concurrency=16, seconds=seconds
    )
    return rps


async def b6_supervisor(servers: Servers, agents: list[dict], profile: dict) -> None:
    """The Supervisor Desk over HTTP (the full stack, on the server that serves plain HTTP) with B3 running at
    200 changes/s."""

    from bench.supervisor_pages import page_urls, query_counts
    from payments.models import PaymentRequest

    cookie = await in_thread(supervisor_cookie)
    pages = await in_thread(page_urls)
    counts = await in_thread(query_counts, pages)
    total = await in_thread(PaymentRequest.objects.count)
    rounds = profile["supervisor_rounds"]
    # Enough driver time for the rounds; the drivers stop by themselves.
    procs, _, start = start_drivers([a["request"] for a in agents], 200, 30 + rounds * 6, "b6")
    await asyncio.sleep(max(0, start - time.monotonic()) + 1)
    conn = common.HttpConnection(servers.http_port, cookie=cookie)
    anonymous = common.HttpConnection(servers.http_port)
    samples: dict[str, list[float]] = {name: [] for name in pages}
    for name, url in pages.items():  # warm
        await (anonymous if name.startswith("baseline") else conn).request("GET", url)
    for _ in range(rounds):
        for name, url in pages.items():
            client = anonymous if name.startswith("baseline") else conn
            t0 = time.monotonic()
            status, _ = await client.request("GET", url)
            samples[name].append((time.monotonic() - t0) * 1000)
            assert status == 200, (url, status)
    for proc in procs:
        proc.terminate()
        await in_thread(proc.wait)
    conn.close()
    anonymous.close()
    base = common.median(samples[next(iter(pages))])
    say(f"B6 supervisor pages, {total:,} requests in the table, under 200 changes/s, {rounds} rounds interleaved "
        "(target p99 ≤ 300 ms)")  # fmt: skip
    result = {}
    for name, values in samples.items():
        med = common.median(values)
        say(f"   {name:34} p50 {med:7.1f} ms  p99 {pct(values, 99):7.1f} ms  max {max(values):7.1f} ms  "
            f"{counts.get(name, 0):3d} queries  {med / base:5.1f}× baseline")  # fmt: skip
        result[name] = {"p50_ms": med, "p99_ms": pct(values, 99), "queries": counts.get(name)}
    record("B6", result)


# --- Main --------------------------------------------------------------------------------------------------


async def socket_phase(servers: Servers, agents_all: list[dict], profile: dict, only: set[str]) -> None:
    arrivals = Arrivals()
    for n in profile["hold"]:
        agents = agents_all[:n]
        if n != profile["hold"][0]:
            await in_thread(servers.restart_daphne)  # each size starts from a fresh process
        desks = await b1_hold(servers, agents, profile, arrivals)
        if "B2" in only:
            desks = await b2_storm(servers, desks, agents, arrivals)
        if n == profile["push_sockets"]:
            await asyncio.sleep(2)
            # Only desks that are connected can receive their cards: "lost" counts pushes to open sockets.
            connected = [d.agent for d in desks if d.ws is not None and d.ws.state.name == "OPEN"]
            if len(connected) < len(agents):
                say(f"   (B3-B6 drive the {len(connected)} desks that are connected)")
            agents = connected or agents
            if "SOAK" in only:
                await soak(servers, desks, agents, profile, arrivals)
            if "B3" in only:
                for rate in profile["push_rates"]:
                    await b3_push(agents, rate, profile["push_seconds"], arrivals)
            if "B4" in only:
                for count, load, watched in profile["expiry"]:
                    await b4_expiry(agents, count, load, arrivals, watched=watched)
            if "B5" in only:
                await b5_webhooks(servers, agents, profile)
            if "B6" in only:
                await b6_supervisor(servers, agents, profile)
        await asyncio.gather(*(desk.close() for desk in desks))
        arrivals.cards.clear()


def run_servers(
    agents: list[dict], profile: dict, only: set[str], extra_env: dict[str, str] | None = None
) -> dict:
    """One run of the socket scenarios against fresh servers; returns the figures it recorded (and leaves
    RESULTS as it found it, so runs of an A/B do not overwrite each other)."""
    saved = dict(RESULTS)
    RESULTS.clear()
    servers = Servers(extra_env)
    try:
        servers.start()
        asyncio.run(socket_phase(servers, agents, profile, only))
    finally:
        servers.stop()
        figures = dict(RESULTS)
        RESULTS.clear()
        RESULTS.update(saved)
    return figures


def numeric_figures(results: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a run's figures, flattened to dotted keys (B3.1000.200.p99_ms)."""
    flat = {}
    for key, value in results.items():
        if isinstance(value, dict):
            flat.update(numeric_figures(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def ab_compare(agents: list[dict], profile: dict, only: set[str], setting: str, pairs: int) -> None:
    """Interleaved A/B of one server setting (an environment variable): A B A B ..., `pairs` times, fresh
    servers each run, then the median of each figure per side and B ÷ A. Drivers and servers see the value."""
    key, _, values = setting.partition("=")
    sides = values.split(",")
    if not key or len(sides) != 2:
        raise SystemExit("--ab takes KEY=A,B, e.g. --ab CHANNEL_LAYER=redis,redis-pubsub")
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for pair in range(1, pairs + 1):
        for side in sides:
            say(f"--- A/B pair {pair}/{pairs}: {key}={side}")
            os.environ[key] = side  # the B3 drivers publish from this environment
            runs[side].append(numeric_figures(run_servers(agents, profile, only, {key: side})))
    a, b = sides
    say(f"A/B {key}: A={a}, B={b}, {pairs} interleaved pairs, medians of each side")
    record("ab", {"setting": key, "A": a, "B": b, "pairs": pairs, "figures": median_table(runs[a], runs[b])})


def median_table(runs_a: list[dict[str, float]], runs_b: list[dict[str, float]]) -> dict[str, dict]:
    """Print the median of every figure both sides have, per side, and B ÷ A; return them with every run's."""
    figures = sorted(set.intersection(*(set(run) for run in runs_a + runs_b)))
    say(f"   {'figure':<40}{'A':>12}{'B':>12}{'B ÷ A':>9}")
    table = {}
    for figure in figures:
        median_a = statistics.median(run[figure] for run in runs_a)
        median_b = statistics.median(run[figure] for run in runs_b)
        ratio = median_b / median_a if median_a else float("nan")
        say(f"   {figure:<40}{median_a:>12.1f}{median_b:>12.1f}{ratio:>9.2f}")
        table[figure] = {"A": median_a, "B": median_b, "runs_A": [run[figure] for run in runs_a],
                         "runs_B": [run[figure] for run in runs_b]}  # fmt: skip
    return table


def parse_expiry_run(run: str) -> tuple[int, int, bool]:
    count, rate, *where = run.split(":")
    if where not in ([], ["unwatched"]):
        raise SystemExit(f"--expiry takes COUNT:RATE or COUNT:RATE:unwatched, not {run!r}")
    return int(count), int(rate), not where


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--only", default="B1,B2,B3,B4,B5,B6")
    parser.add_argument("--hold", help="override the socket counts, e.g. 1000,2000")
    parser.add_argument(
        "--ab",
        metavar="KEY=A,B",
        help="interleaved A/B of a server setting, e.g. CHANNEL_LAYER=redis,redis-pubsub",
    )
    parser.add_argument("--pairs", type=int, default=5, help="A/B pairs (default 5)")
    parser.add_argument(
        "--soak-minutes", type=int, help="override SOAK's duration (60 min; 10 of them warm-up)"
    )
    parser.add_argument(
        "--expiry",
        metavar="COUNT:RATE,...",
        help="override B4's runs: COUNT requests due at once, under RATE changes/s of B3 load, in the held "
        "conversations or (:unwatched) in conversations no desk has open (e.g. 10000:0,1000:200,10000:0:unwatched)",
    )
    parser.add_argument("--push-rates", metavar="RATE,...", help="override B3's rates in changes/s, e.g. 200")
    parser.add_argument("--push-seconds", type=float, help="override how long each B3 rate runs")
    parser.add_argument(
        "--webhook-seconds",
        type=float,
        help="override B5's duration (closed loop; the open loop sends 500/s for as long)",
    )
    parser.add_argument(
        "--webhook-rate",
        type=int,
        help="override B5's open-loop rate in req/s (500, the target's, overloads this machine; e.g. 40)",
    )
    parser.add_argument(
        "--webhook-worker",
        choices=("beside", "elsewhere"),
        default="beside",
        help="B5's Celery worker: running beside the server on its core (default), or paused while the "
        "requests run and resumed to apply them, as a worker on another host would take nothing from the web core",
    )
    args = parser.parse_args()
    profile = dict(PROFILES[args.profile], webhook_worker=args.webhook_worker)
    if args.webhook_seconds:
        profile["webhook_seconds"] = args.webhook_seconds
    if args.webhook_rate:
        profile["webhook_open_rate"] = args.webhook_rate
    if args.expiry:
        profile["expiry"] = [parse_expiry_run(run) for run in args.expiry.split(",")]
    if args.push_rates:
        profile["push_rates"] = [int(rate) for rate in args.push_rates.split(",")]
    if args.push_seconds:
        profile["push_seconds"] = args.push_seconds
    if args.soak_minutes:
        profile["soak_minutes"] = args.soak_minutes
        profile["soak_warmup_minutes"] = min(profile["soak_warmup_minutes"], args.soak_minutes // 2)
    if args.hold:
        profile["hold"] = [int(n) for n in args.hold.split(",")]
        profile["push_sockets"] = min(profile["push_sockets"], max(profile["hold"]))
        if profile["push_sockets"] not in profile["hold"]:
            profile["push_sockets"] = profile["hold"][-1]
    only = set(args.only.split(","))
    os.sched_setaffinity(0, LOAD_CPUS)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for log in (DAPHNE_GC_LOG, CLIENT_GC_LOG):
        log.unlink(missing_ok=True)
    gclog.log_collections(CLIENT_GC_LOG)
    started = time.monotonic()
    database_url, redis_url = prepare_environment()
    say(
        f"Chat Desk benchmark, profile {args.profile}: database {common.BENCH_DATABASE} (re-created), {redis_url}"
    )
    common.recreate_database(database_url)
    manage("migrate", "--noinput", "-v", "0")
    manage("collectstatic", "--noinput", "-v", "0")
    if "B6" in only:
        requests, events = profile["supervisor"]
        say(f"generating {requests:,} requests / {events:,} events for B6 ...")
        manage("generate_transactions", "--requests", str(requests), "--events", str(events), "--force")
        # Settle the new rows first (statistics, visibility map, dirty buffers written), so autovacuum and the
        # checkpointer do not work through them while the figures are taken.
        manage("shell", "-c", "from django.db import connection; c = connection.cursor(); "
               "c.execute('VACUUM ANALYZE'); c.execute('CHECKPOINT')")  # fmt: skip

    import django

    django.setup()
    for key, value in versions().items():
        say(f"  {key}: {value}")
    record("versions", versions())
    record("profile", {"name": args.profile, **{k: str(v) for k, v in profile.items()}})
    from django.conf import settings

    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    pooling = (
        f"psycopg pool {pool['min_size']}-{pool['max_size']}" if pool else "no pool (a connection per step)"
    )
    say(f"settings: DEBUG off, CONN_MAX_AGE 0, {pooling}, channels_redis {settings.CHANNEL_LAYERS['default']['BACKEND'].rsplit('.', 1)[1]}, Daphne 1 process, "
        f"plain HTTP on {http_server(os.environ)}, Celery prefork 2 + beat")  # fmt: skip
    record("database_pool", pool or None)

    REFS["echo_us"] = common.echo_round_trip_us()
    REFS["redis_ping_ops"] = common.redis_ping_ops(redis_url)
    servers = Servers()
    try:
        servers.start()
        REFS["trivial_rps"] = asyncio.run(trivial_view(servers.port))
    finally:
        servers.stop()
    say(f"reference probes: echo round trip {REFS['echo_us']:.0f} µs; Redis PING {REFS['redis_ping_ops']:,.0f} ops/s "
        f"(= {1e6 / REFS['redis_ping_ops']:.0f} µs); trivial view (login page on Daphne, 16 connections) "
        f"{REFS['trivial_rps']:.0f} req/s")  # fmt: skip
    record("refs", dict(REFS))
    agents = create_agents(max(profile["hold"]))
    # This client's own pauses are not the desk's latency: keep its set-up heap out of its collections and
    # collect its young objects less often (it holds every socket of the run; its gen1 pauses reached 100 ms).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    if args.ab:
        ab_compare(agents, profile, only, args.ab, args.pairs)
    else:
        RESULTS.update(run_servers(agents, profile, only))
    say(f"done in {time.monotonic() - started:.0f} s")
    (LOG_DIR / f"results-{args.profile}.json").write_text(json.dumps(RESULTS, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
