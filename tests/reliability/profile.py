"""The suite's two profiles and its figures.

`make test` runs the quick profile (small N, inside CI's budget); `make reliability` sets
CHATDESK_PROFILE=long (the issue's N) and writes every figure the run printed to docs/reliability.md, with the
versions and the machine, so a reviewer can re-run one command and compare.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
import re
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

PROFILE = os.environ.get("CHATDESK_PROFILE", "quick").strip().lower()
if PROFILE not in {"quick", "long"}:
    raise RuntimeError("CHATDESK_PROFILE must be quick or long")
LONG = PROFILE == "long"
ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "reliability.md"


def n(quick: int, long: int) -> int:
    """The size of a run in this profile."""
    return long if LONG else quick


# --- Figures ------------------------------------------------------------------------------------------------

_figures: dict[str, list[tuple[str, str]]] = defaultdict(list)
_environment: dict[str, str] = {}
_lock = threading.Lock()


def record(section: str, name: str, value) -> None:
    """Print one figure and keep it for the report."""
    text = str(value)
    with _lock:
        _figures[section].append((name, text))
    print(f"[figure] {section} | {name}: {text}", flush=True)  # noqa: T201  (the figures are printed)


def note_environment(name: str, value: str) -> None:
    _environment[name] = value


def _versions() -> dict[str, str]:
    versions = {"Python": sys.version.split()[0]}
    for package in (
        "Django",
        "channels",
        "channels-redis",
        "celery",
        "psycopg",
        "hypothesis",
        "django-ratelimit",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _commit() -> str:
    """The commit the run tested, and whether the tree had changes on top of it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes" if changed else head


def write_report(duration_seconds: float, outcome: str, pytest_args: Sequence[str] = ()) -> None:
    if not _figures:
        return
    lines = [
        "# Reliability and security figures",
        "",
        "Written by `make reliability` (CHATDESK_PROFILE=long: `tests/reliability/` and `tests/security/`).",
        "Every number below is one the run printed as a `[figure]` line; re-run the command to check them.",
        "",
        f"- Run: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, profile `{PROFILE}`, "
        f"{duration_seconds:.0f} s, pytest outcome: {outcome}",
        f"- Command: `CHATDESK_PROFILE={PROFILE} python -m chatdesk.embedded test {' '.join(pytest_args)}`",
        f"- Commit: {_commit()}",
        f"- Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}",
    ]
    for name, value in {**_versions(), **_environment}.items():
        lines.append(f"- {name}: {value}")
    for section in sorted(_figures):
        lines += ["", f"## {section}", "", "| figure | value |", "|---|---|"]
        for name, value in _figures[section]:
            lines.append(f"| {name} | {value} |")
    lines.append("")
    REPORT.write_text("\n".join(lines))
    print(f"\nFigures written to {REPORT}", flush=True)  # noqa: T201


# --- Logs of the whole run ----------------------------------------------------------------------------------


class _Capture(logging.Handler):
    """Keeps every line the configured console handler would print (after its filters), for the scan."""

    def __init__(self, console: logging.Handler | None) -> None:
        super().__init__(level=logging.DEBUG)
        self.console = console
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.console is not None and not self.console.filter(record):
            return
        formatter = self.console.formatter if self.console and self.console.formatter else logging.Formatter()
        try:
            self.lines.append(formatter.format(record))
        except Exception:  # a record that cannot be formatted would fail the console too
            self.lines.append(repr(record.__dict__))


_capture: _Capture | None = None


def captured_log_lines() -> list[str]:
    return list(_capture.lines) if _capture else []


def start_log_capture() -> None:
    """Attach (once) a handler to the root logger that mirrors the console handler of settings.LOGGING."""
    global _capture
    if _capture is not None:
        return
    root = logging.getLogger()
    console = next((h for h in root.handlers if isinstance(h, logging.StreamHandler)), None)
    _capture = _Capture(console)
    root.addHandler(_capture)
    # Everything, including DEBUG lines of libraries, must be free of secrets too.
    for name in ("django.request", "django.security", "payments", "desk", "api", "chatdesk"):
        logging.getLogger(name).setLevel(logging.DEBUG)


# 13-19 digits, optionally grouped by spaces or dashes; not the digits of a decimal fraction (a task's run
# time, "0.0157608560002699s") nor a negative id in a URL (the API fuzzer asks for /payment-requests/-6509…).
_PAN = re.compile(r"(?<![\d.])(?<!/-)(?:\d[ -]?){12,18}\d(?!\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# UUIDs (Celery task ids, event ids) have digit runs joined by dashes that can pass the Luhn check by chance.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def card_numbers_in(text: str) -> list[str]:
    found = []
    for match in _PAN.finditer(_UUID.sub("<uuid>", text)):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and len(set(digits)) > 1:
            found.append(digits)
    return found


# Secrets handed out during the run (link tokens, chat tokens, phone numbers), for the scan.
issued_secrets: set[str] = set()


def record_issued_tokens() -> None:
    """Remember every payment link token the actions hand out (once per session), for the log scan."""
    from payments import actions

    original = actions.new_payment_token
    if getattr(original, "_records_tokens", False):
        return

    def new_payment_token() -> str:
        token = original()
        issued_secrets.add(token)
        return token

    new_payment_token._records_tokens = True
    actions.new_payment_token = new_payment_token
