"""Interleaved A/B of two revisions of the code: `make bench` in checkout A, then in checkout B, `--pairs`
times (A B A B ...), then the median of every figure per side and B ÷ A, as `--ab` does for a setting.

    git worktree add /tmp/bench-a <before> && git worktree add /tmp/bench-b <after>
    .venv/bin/python -m bench.compare_revisions /tmp/bench-a /tmp/bench-b --pairs 5 -- --only B1,B3 --hold 2000

Each checkout installs itself (`make bench` does) and runs against the same DATABASE_URL/REDIS_URL, one
after the other, so both sides see the same machine. Every run's results file is kept under
var/bench/revisions/ of the checkout this runs from, and the table also goes to revisions-ab.json there.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from bench.common import LOG_DIR
from bench.run import median_table, numeric_figures


def run_bench(checkout: Path, bench_args: list[str], keep_as: Path) -> dict[str, float]:
    """One `make bench` in `checkout`; its flattened figures (and a copy of its results file)."""
    command = ["make", "-C", str(checkout), "bench", f"BENCH_ARGS={shlex.join(bench_args)}"]
    print(f"$ {shlex.join(command)}", flush=True)
    subprocess.run(command, check=True)
    results = checkout / "var" / "bench" / "results-quick.json"
    keep_as.write_text(results.read_text())
    return numeric_figures(json.loads(results.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, help="checkout of the revision before (A)")
    parser.add_argument("b", type=Path, help="checkout of the revision after (B)")
    parser.add_argument("--pairs", type=int, default=5)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    bench_args = argv[split + 1 :]  # after --: make bench's BENCH_ARGS
    kept = LOG_DIR / "revisions"
    kept.mkdir(parents=True, exist_ok=True)
    sides = {"A": args.a.resolve(), "B": args.b.resolve()}
    revisions = {
        side: subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for side, path in sides.items()
    }
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for pair in range(1, args.pairs + 1):
        for side, path in sides.items():
            print(f"--- pair {pair}/{args.pairs}: {side} = {revisions[side]} ({path})", flush=True)
            runs[side].append(run_bench(path, bench_args, kept / f"{pair}-{side}-{revisions[side]}.json"))
    print(
        f"A/B of revisions: A={revisions['A']}, B={revisions['B']}, {args.pairs} interleaved pairs, medians"
    )
    table = median_table(runs["A"], runs["B"])
    (LOG_DIR / "revisions-ab.json").write_text(
        json.dumps(
            {"A": revisions["A"], "B": revisions["B"], "bench_args": bench_args, "figures": table}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
