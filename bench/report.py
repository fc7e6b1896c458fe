"""Figures and their output: one JSON object per line on stdout, also appended to
``var/bench/<scale>.jsonl`` so that docs/performance.md can be written from a run."""

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

RESULTS_DIR = Path(__file__).resolve().parent.parent / "var" / "bench"


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(math.ceil(share / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def ratio(project: float, raw: float) -> float | None:
    return round(project / raw, 3) if raw else None


class Report:
    def __init__(self, scale: str) -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.path = RESULTS_DIR / f"{scale}.jsonl"
        self.path.write_text("")

    def emit(self, measure: str, **figures: Any) -> None:
        """One line; ``load_1m`` is the machine's load average as the measure ends."""
        line = json.dumps({"measure": measure, **figures, "load_1m": round(psutil.getloadavg()[0], 2)})
        print(line, flush=True)
        with self.path.open("a") as out:
            out.write(line + "\n")


def machine(pg_version: str) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": _cpu_model(),
        "python": sys.version.split()[0],
        # Other work on the machine: the figures are only comparable at a similar load.
        "load_average": [round(n, 2) for n in psutil.getloadavg()],
        "postgresql": pg_version,
        "os": platform.platform(),
        "python_loop_ms": python_loop_ms(),
    }


def python_loop_ms() -> float:
    """The machine's speed for one Python thread: the best of five runs of a fixed loop.
    The absolute targets (milliseconds) depend on it; the ratios much less."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for n in range(1_000_000):
            total += n
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def _cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()
