"""Measure 8: peak resident memory of the web workers (gunicorn's) and of the background
worker's processes (the qcluster's), sampled twice a second for the whole run."""

import threading
from typing import Any

import psutil


class Sampler:
    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.roots: dict[str, list[int]] = {"web": [], "background": []}
        self.peak: dict[str, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def watch(self, role: str, pid: int) -> None:
        self.roots[role].append(pid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for role, pids in self.roots.items():
                for pid in list(pids):
                    self._sample(role, pid)

    def _sample(self, role: str, pid: int) -> None:
        try:
            root = psutil.Process(pid)
            # The web's workers are the gunicorn master's children; the background worker
            # is the whole qcluster (sentinel, workers, monitor, pusher).
            processes = root.children(recursive=role == "background") or [root]
            for process in processes:
                rss = process.memory_info().rss
                if rss > self.peak.get(role, (0, ""))[0]:
                    self.peak[role] = (rss, " ".join(process.cmdline()[:4]))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return

    def figures(self) -> dict[str, Any]:
        return {
            f"{role}_worker_peak_rss_mb": round(rss / 2**20, 1)
            for role, (rss, _) in sorted(self.peak.items())
        }


BARE = (
    "import django, os, psutil; django.setup(); from django.db import connection; "
    "connection.cursor().execute('SELECT 1'); print(psutil.Process().memory_info().rss)"
)


def baseline_rss_mb(url: str) -> float:
    """The baseline: a bare interpreter that set Django up and ran one query."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "bench.settings"}
    out = subprocess.run([sys.executable, "-c", BARE], env=env, capture_output=True, text=True, check=True)
    return round(int(out.stdout.strip()) / 2**20, 1)
