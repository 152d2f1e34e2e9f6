"""Supervisor Desk page times on a large data set (issue: 100k requests / 500k events, each page < 300 ms).

    make manage ARGS="generate_transactions"     # once, into the database you point DATABASE_URL at
    DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/supervisor_pages.py [--rounds 20]

Each page is fetched in-process through Django's test client (full middleware, templates and queries), and
interleaved with a trivial page (the login form) as the baseline, so figures can be read as ratios on a noisy
machine. Prints median, p95 and max per page, the query count, and the ratio of medians to the baseline.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatdesk.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
if "testserver" not in os.environ["ALLOWED_HOSTS"].split(","):  # the test client's host
    os.environ["ALLOWED_HOSTS"] += ",testserver"

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from payments.models import PaymentRequest  # noqa: E402
from tests.factories import SupervisorFactory  # noqa: E402


def timed(client: Client, url: str) -> tuple[float, int]:
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            for _ in response.streaming_content:
                pass
        elapsed = time.perf_counter() - start
    assert response.status_code == 200, (url, response.status_code)
    return elapsed * 1000, len(queries)


def explain(client: Client, name: str, url: str) -> None:
    """The plan of every payments query a page runs (session and user lookups left out), as Markdown."""
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    print(f"\n### {name}: `GET {url}` ({len(queries)} queries in all)\n")
    for query in queries.captured_queries:
        if "payments_" not in query["sql"]:
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query["sql"])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        sql = query["sql"] if len(query["sql"]) < 400 else query["sql"][:400] + " …"
        print(f"```\n{sql}\n\n{plan}\n```\n")


def page_urls() -> dict[str, str]:
    """The pages measured (the first is the baseline), for the busiest agent and a paid request."""
    busiest = PaymentRequest.objects.order_by("-pk").values_list("agent", flat=True).first()
    sample = PaymentRequest.objects.filter(status="paid").order_by("-pk").values_list("pk", flat=True).first()
    return {
        "baseline: login page": reverse("login"),
        "list (newest first, totals)": reverse("supervisor:index"),
        "list filtered by status": reverse("supervisor:index") + "?status=paid",
        "list filtered by agent": reverse("supervisor:index") + f"?agent={busiest}",
        "list searched by order number": reverse("supervisor:index") + "?q=BENCH-00123",
        "list searched by customer name": reverse("supervisor:index") + "?q=customer+012345",
        "list searched, every customer matches": reverse("supervisor:index") + "?q=customer",
        "list sorted by amount, page 200": reverse("supervisor:index") + "?sort=-amount&page=200",
        "live fragment (list + totals)": reverse("supervisor:transaction_results"),
        "transaction detail": reverse("supervisor:transaction", args=[sample]),
    }


def query_counts(pages: dict[str, str]) -> dict[str, int]:
    """SQL queries per page, fetched once in-process as a supervisor (bench/run.py's B6 prints them)."""
    client = Client()
    client.force_login(SupervisorFactory(username=f"bench-counter-{os.getpid()}-{time.monotonic_ns()}"))
    return {name: timed(client, url)[1] for name, url in pages.items() if not name.startswith("baseline")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--explain", action="store_true", help="Print EXPLAIN ANALYZE of each page's queries."
    )
    args = parser.parse_args()

    count = PaymentRequest.objects.count()
    events = PaymentRequest.events.rel.related_model.objects.count()
    supervisor = SupervisorFactory(username="bench-supervisor")
    client = Client()
    client.force_login(supervisor)
    pages = page_urls()
    if args.explain:
        for name, url in pages.items():
            if not name.startswith("baseline"):
                explain(client, name, url)
        return
    samples: dict[str, list[float]] = {name: [] for name in pages}
    queries: dict[str, int] = {}
    anonymous = Client()  # the login page redirects people who are already logged in

    def fetch(name: str, url: str) -> tuple[float, int]:
        return timed(anonymous if name.startswith("baseline") else client, url)

    for name, url in pages.items():  # warm caches once
        fetch(name, url)
    for _ in range(args.rounds):
        for name, url in pages.items():  # interleaved: every page sees the same machine noise
            ms, n = fetch(name, url)
            samples[name].append(ms)
            queries[name] = n
    baseline = statistics.median(samples["baseline: login page"])
    print(f"data set: {count:,} payment requests, {events:,} events; {args.rounds} rounds, interleaved")
    print(f"{'page':36} {'median':>9} {'p95':>9} {'max':>9} {'queries':>8} {'÷ baseline':>11}")
    for name, values in samples.items():
        values.sort()
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        median = statistics.median(values)
        print(
            f"{name:36} {median:8.1f}ms {p95:8.1f}ms {values[-1]:8.1f}ms {queries[name]:8d}"
            f" {median / baseline:10.1f}x"
        )


if __name__ == "__main__":
    main()
