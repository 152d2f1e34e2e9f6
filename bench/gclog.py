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
    """Append `<monotonic end> <generation> <pause ms> <CPU ms> <objects collected>` for every collection to
    `path`. The pause is wall-clock time: on a busy core it includes time the process waited for the CPU,
    which the collection's own CPU time does not."""
    log = Path(path).open("a", buffering=1)
    started = started_cpu = 0.0

    def on_collection(phase: str, info: dict) -> None:
        nonlocal started, started_cpu
        if phase == "start":
            started, started_cpu = time.monotonic(), time.thread_time()
        else:
            ended, cpu = time.monotonic(), time.thread_time() - started_cpu
            log.write(
                f"{ended:.6f} {info['generation']} {(ended - started) * 1000:.3f} {cpu * 1000:.3f} "
                f"{info['collected']}\n"
            )

    gc.callbacks.append(on_collection)


def pauses(path: Path, start: float, end: float) -> list[tuple[int, float, float]]:
    """(generation, pause ms, CPU ms) of the collections logged in `path` that ended between `start` and
    `end`."""
    found = []
    if not Path(path).exists():
        return found
    for line in Path(path).read_text().splitlines():
        ended, generation, ms, cpu_ms, _ = line.split()
        if start <= float(ended) <= end:
            found.append((int(generation), float(ms), float(cpu_ms)))
    return found


def summary(found: list[tuple[int, float, float]]) -> dict[str, float]:
    """Full collections and the pauses: what a latency tail can be compared with."""
    full = [ms for generation, ms, _ in found if generation == 2]
    return {
        "collections": len(found),
        "full_collections": len(full),
        "full_max_ms": max(full, default=0.0),
        "max_ms": max((ms for _, ms, _ in found), default=0.0),
        "max_cpu_ms": max((cpu_ms for _, _, cpu_ms in found), default=0.0),
        "total_ms": sum(ms for _, ms, _ in found),
    }


def describe(found: list[tuple[int, float, float]]) -> str:
    figures = summary(found)
    return (f"{figures['collections']} collections, {figures['full_collections']} of them full (longest "
            f"{figures['full_max_ms']:.0f} ms); longest pause {figures['max_ms']:.0f} ms "
            f"({figures['max_cpu_ms']:.0f} ms of CPU), {figures['total_ms']:.0f} ms in all")  # fmt: skip


if __name__ == "__main__":  # python -m bench.gclog LOG <daphne arguments>
    log_collections(Path(sys.argv[1]))
    sys.argv = ["daphne", *sys.argv[2:]]
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()
