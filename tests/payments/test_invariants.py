"""Rules of the codebase checked by a test rather than by memory (style.md, habit 18)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_CODE = [
    path
    for package in ("chatdesk", "desk", "payments", "supervisor")
    for path in (ROOT / package).rglob("*.py")
    if "migrations" not in path.parts
]


def _offenders(
    pattern: str, *, only: set[str] | None = None, allowed: frozenset[str] = frozenset()
) -> list[str]:
    regex = re.compile(pattern)
    return [
        f"{name}:{number}: {line.strip()}"
        for path in APP_CODE
        if (name := str(path.relative_to(ROOT))) not in allowed and (only is None or name in only)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if regex.search(line)
    ]


def test_only_payments_actions_writes_a_payment_requests_status():
    # Reading `.status` is fine anywhere; assigning it or bulk-updating it is the actions' job alone.
    assignments = r"\b(payment_request|pr|request)\.status\s*=[^=]"
    queryset_updates = r"\)\.update\([^)]*\bstatus="
    assert _offenders(assignments, allowed=frozenset({"payments/actions.py"})) == []
    assert _offenders(queryset_updates, allowed=frozenset({"payments/actions.py", "desk/actions.py"})) == []


def test_every_row_lock_says_which_kind_it_takes():
    assert _offenders(r"select_for_update\((?![^)]*no_key=)") == []


def test_payment_views_and_consumers_fetch_requests_through_access():
    thin = {"payments/views.py", "payments/consumers.py", "desk/views.py", "desk/consumers.py"}
    assert _offenders(r"PaymentRequest\.objects", only=thin) == []
