"""Shared pieces of the benchmark suite: where it runs, how its processes are pinned, how it measures.

Everything stays on 127.0.0.1. The servers (Daphne, Celery worker and beat) run on SERVER_CPUS and the
load generators (this process, the websocket client, the transition drivers) on LOAD_CPUS, so neither
steals the other's core; PostgreSQL and Redis are whatever the environment provides and are not pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Its own database on DATABASE_URL's server; BENCH_DATABASE names another, so two runs can share a server.
BENCH_DATABASE = os.environ.get("BENCH_DATABASE", "chatdesk_bench")
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", BENCH_DATABASE):
    raise SystemExit("BENCH_DATABASE must be a plain lower-case PostgreSQL name, e.g. chatdesk_bench.")
LOG_DIR = ROOT / "var" / "bench"


def cpu_split() -> tuple[set[int], set[int]]:
    """(server cpus, load cpus): the first allowed core serves, the others load; one core shares."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


SERVER_CPUS, LOAD_CPUS = cpu_split()


def pin(cpus: set[int]):
    """A preexec_fn that pins the child to `cpus` (and dies with its parent, like chatdesk.embedded)."""

    def preexec() -> None:
        from chatdesk.embedded import _die_with_parent

        _die_with_parent()
        os.sched_setaffinity(0, cpus)

    return preexec


def bench_database_url(database_url: str) -> str:
    """The same server as DATABASE_URL, but the bench's own database: dev and test data are never touched."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/" + BENCH_DATABASE))


def _libpq(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql", path="/" + dbname))


def recreate_database(url: str) -> None:
    """Drop and create the bench database, so every run starts from the same empty state."""
    import psycopg

    with psycopg.connect(_libpq(url, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DATABASE}")


def server_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Production-like settings (DEBUG off, so no query log) on plain HTTP loopback."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="chatdesk.settings",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        SECURE_HSTS_SECONDS="0",
        CHAT2PAY_ALLOW_SANDBOX="true",  # B5 signs sandbox webhooks; with DEBUG off a check refuses the sandbox
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def page_answers(port: int, path: str) -> bool:
    """A 200 for `path` (a server whose port is open may not be serving yet)."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", path)
            return connection.getresponse().status == 200
        finally:
            connection.close()
    return False


class Proc:
    """A pinned subprocess in its own process group, logging to var/bench/<name>.log."""

    def __init__(self, name: str, command: Sequence[str], *, env: Mapping[str, str], cpus: set[int]) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        with self.log_path.open("ab") as log:
            log.write(f"\n--- {' '.join(command)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                list(command), cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=pin(cpus), start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pause(self) -> None:
        """Stop the whole process group (a prefork worker's children too) until resume(): it takes no CPU."""
        os.killpg(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.popen.pid, signal.SIGCONT)

    def stop(self) -> None:
        from chatdesk.embedded import _terminate

        _terminate([self.popen], timeout=10)

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n" + "\n".join(tail))


def wait_for(predicate, what: str, timeout: float = 60, procs: Sequence[Proc] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in procs:
            proc.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- Statistics -----------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary_ms(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {pct(values, 50):.1f} ms, p99 {pct(values, 99):.1f} ms, max {max(values):.1f} ms"
        f" (n={len(values)})"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- A small HTTP/1.1 keep-alive client (asyncio streams; enough for our own server) --------------------


class HttpConnection:
    def __init__(self, port: int, *, cookie: str = "") -> None:
        self.port = port
        self.cookie = cookie
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ):
        """Send one request and read the whole response; returns (status, body). Reconnects if closed.

        A kept-alive connection the server closed while idle (gunicorn keeps one 2 s) fails before any byte
        of the answer: the request is sent once more on a new connection, as HTTP clients do."""
        reused = self.writer is not None and not self.writer.is_closing()
        if not reused:
            await self._open()
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(body)}"]
        if self.cookie:
            lines.append(f"Cookie: {self.cookie}")
        lines += [f"{key}: {value}" for key, value in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            return await self._response()
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.close()
            closed_while_idle = not isinstance(error, asyncio.IncompleteReadError) or not error.partial
            if reused and closed_while_idle:
                return await self.request(method, path, body, headers)
            raise

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        else:
            body = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def closed_loop(port: int, make_request, *, concurrency: int, seconds: float, cookie: str = ""):
    """`concurrency` keep-alive connections each sending back to back for `seconds`.

    `make_request(i)` returns (method, path, body, headers). Returns (requests/s, latencies ms, statuses).
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        conn = HttpConnection(port, cookie=cookie)
        while time.monotonic() < stop_at:
            method, path, body, headers = make_request(next(counter))
            start = time.monotonic()
            try:
                status, _ = await conn.request(method, path, body, headers)
            except (OSError, asyncio.IncompleteReadError):
                status = 0
            latencies.append((time.monotonic() - start) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.monotonic() - started), latencies, statuses


async def open_loop(
    port: int, make_request, *, rate: float, seconds: float, pool: int = 64, cookie: str = ""
):
    """Requests scheduled at a fixed `rate` whatever the server does (no coordinated omission): latency is
    measured from each request's scheduled time, including any wait for a free connection."""
    free: asyncio.Queue[HttpConnection] = asyncio.Queue()
    for _ in range(pool):
        free.put_nowait(HttpConnection(port, cookie=cookie))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    total = int(rate * seconds)
    start = time.monotonic()

    async def one(i: int, scheduled: float) -> None:
        conn = await free.get()
        method, path, body, headers = make_request(i)
        try:
            status, _ = await conn.request(method, path, body, headers)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
        latencies.append((time.monotonic() - scheduled) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        free.put_nowait(conn)

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    while not free.empty():
        free.get_nowait().close()
    return latencies, statuses


# --- Reference probes -----------------------------------------------------------------------------------

ECHO_SERVER = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(1); print("ready", flush=True)
conn, _ = srv.accept(); conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(4096):
    conn.sendall(data)
"""


def echo_round_trip_us(rounds: int = 3000) -> float:
    """Median round trip of 64 bytes through a Python echo server on the server core (µs)."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, str(port)], stdout=subprocess.PIPE, preexec_fn=pin(SERVER_CPUS)
    )
    try:
        server.stdout.readline()  # "ready" once it listens
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            payload = b"x" * 64
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                sock.sendall(payload)
                received = 0
                while received < len(payload):
                    received += len(sock.recv(4096))
                samples.append((time.perf_counter() - start) * 1e6)
        return median(samples)
    finally:
        server.kill()
        server.wait()


def redis_ping_ops(url: str, seconds: float = 1.0) -> float:
    """Sequential PING round trips per second with redis-py (the layer's client library)."""
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    count, stop_at = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < stop_at:
        client.ping()
        count += 1
    elapsed = time.perf_counter() - start
    client.close()
    return count / elapsed
