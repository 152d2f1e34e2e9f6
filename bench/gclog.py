"""The bench's garbage-collector probe: every collection's pause, logged from inside a process.

A full collection stops a whole process (Daphne: every socket it holds) for as long as it scans the heap, so
a card's latency tail can be a pause rather than a slow path. The bench starts Daphne through this module
(`python -m bench.gclog LOG daphne-args...`) and logs its own collections too; each B3 run then prints the
pauses that fell inside it. Timestamps are `time.monotonic()`, one clock for every process on the machine.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path


def log_collections(path: Path) -> None:
    """Append `<monotonic end> <generation> <pause ms> <objects collected>` for every collection to `path`."""
    log = Path(path).open("a", buffering=1)
    started = 0.0

    def on_collection(phase: str, info: dict) -> None:
        nonlocal started
        if phase == "start":
            started = time.monotonic()
        else:
            ended = time.monotonic()
            log.write(
                f"{ended:.6f} {info['generation']} {(ended - started) * 1000:.3f} {info['collected']}\n"
            )

    gc.callbacks.append(on_collection)


def pauses(path: Path, start: float, end: float) -> list[tuple[int, float]]:
    """(generation, pause ms) of the collections logged in `path` that ended between `start` and `end`."""
    found = []
    if not Path(path).exists():
        return found
    for line in Path(path).read_text().splitlines():
        ended, generation, ms, _ = line.split()
        if start <= float(ended) <= end:
            found.append((int(generation), float(ms)))
    return found


def summary(found: list[tuple[int, float]]) -> dict[str, float]:
    """Full collections and the pauses: what a latency tail can be compared with."""
    full = [ms for generation, ms in found if generation == 2]
    return {
        "full_collections": len(full),
        "full_max_ms": max(full, default=0.0),
        "max_ms": max((ms for _, ms in found), default=0.0),
        "total_ms": sum(ms for _, ms in found),
    }


def describe(found: list[tuple[int, float]]) -> str:
    figures = summary(found)
    return (f"{figures['full_collections']} full collections (longest {figures['full_max_ms']:.0f} ms), "
            f"longest pause {figures['max_ms']:.0f} ms, {figures['total_ms']:.0f} ms in all")  # fmt: skip


if __name__ == "__main__":  # python -m bench.gclog LOG <daphne arguments>
    log_collections(Path(sys.argv[1]))
    sys.argv = ["daphne", *sys.argv[2:]]
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()
