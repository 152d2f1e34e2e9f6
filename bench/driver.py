"""B3's transition driver: changes payment requests through the real action at a fixed rate (open loop).

    python -m bench.driver --ids 1,2,3 --rate 200 --seconds 10 --start <monotonic> --out file.jsonl

Each scheduled change calls `payments.actions.record_payment_attempt` (clicked → clicked, a new version and
a history row, published on commit exactly as the pay page's POST does). The commit time is taken when the
first on-commit hook starts (the publish), by wrapping every hook `transaction.on_commit` registers; the
driver never sleeps to catch up, so a slow server shows up as latency from the scheduled time, not as a
lower rate. One JSON line per change: scheduled, call, commit, sent (monotonic seconds), id, version.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatdesk.settings")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402

from payments import actions  # noqa: E402

_commit_at: list[float] = []
_on_commit = transaction.on_commit


def _timed_on_commit(func, using=None, robust=False):
    def timed():
        _commit_at.append(time.monotonic())
        func()

    _on_commit(timed, using=using, robust=robust)


transaction.on_commit = _timed_on_commit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ids", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--start", type=float, required=True, help="time.monotonic() of the first change")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ids = [int(pk) for pk in args.ids.split(",")]
    total = int(args.rate * args.seconds)
    method = {"brand": "visa", "last4": "4242"}
    with open(args.out, "w") as out:
        for i in range(total):
            scheduled = args.start + i / args.rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _commit_at.clear()
            called = time.monotonic()
            result = actions.record_payment_attempt(ids[i % len(ids)], payment_method=method)
            sent = time.monotonic()
            record = {
                "id": result.payment_request.pk,
                "version": result.payment_request.version,
                "ok": result.ok,
                "scheduled": scheduled,
                "called": called,
                "commit": _commit_at[0] if _commit_at else None,
                "sent": sent,
            }
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
