"""Child processes with their own interpreter, Django setup and database connections.

A child runs ``target(*args, ready=...)``: it prepares (connects, loads what it needs),
calls ``ready()`` and waits until every sibling is prepared too, then does the measured
work and returns its figures, which come back to the parent in order. Arguments must
unpickle without Django (plain data): they are loaded before ``django.setup()``.
"""

import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from typing import Any

Ready = Callable[[], object]


def _child(target: str, args: tuple[Any, ...], go: Any, results: Any, index: int) -> None:
    import django

    django.setup()
    from django.utils.module_loading import import_string

    def ready() -> None:
        results.put(("ready", index, None))
        go.wait()

    try:
        results.put(("done", index, import_string(target)(*args, ready=ready)))
    except BaseException as exc:  # reported to the parent, which fails the run
        results.put(("failed", index, f"{type(exc).__name__}: {exc}"))


def _next(results: Any, children: list[Any], target: str, deadline: float) -> tuple[str, int, Any]:
    while True:
        try:
            return results.get(timeout=1)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target}: the children took too long") from None
            dead = [c.exitcode for c in children if c.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"{target}: a child died (exit code {dead[0]})") from None


def run(target: str, args_list: list[tuple[Any, ...]], *, timeout: float = 600) -> tuple[list[Any], float]:
    """Run one child per argument tuple; returns their results and the wall seconds from
    the moment all were ready until the last one finished."""
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    results = ctx.Queue()
    children = [
        ctx.Process(target=_child, args=(target, args, go, results, i), daemon=True)
        for i, args in enumerate(args_list)
    ]
    for child in children:
        child.start()
    try:
        deadline = time.monotonic() + 180
        ready = 0
        while ready < len(children):
            kind, index, payload = _next(results, children, target, deadline)
            if kind == "failed":
                raise RuntimeError(f"{target} child {index} failed: {payload}")
            ready += kind == "ready"
        go.set()
        started = time.perf_counter()
        collected: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(collected) < len(children):
            kind, index, payload = _next(results, children, target, deadline)
            if kind == "failed":
                raise RuntimeError(f"{target} child {index} failed: {payload}")
            collected[index] = payload
        wall = time.perf_counter() - started
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    return [collected[i] for i in range(len(children))], wall
