"""Server time and SQL queries per request, as response headers for the bench client:
``Server-Timing: app;dur=<ms>, db;dur=<ms>`` and ``X-Bench-Queries: <n>``.

Outermost, so ``app`` covers every other middleware; enabled by ``bench.settings`` only.
"""

import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse


class ServerTimingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        queries, db_seconds = 0, 0.0

        def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal queries, db_seconds
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                queries += 1
                db_seconds += time.perf_counter() - started

        started = time.perf_counter()
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        app_ms = (time.perf_counter() - started) * 1000
        response["Server-Timing"] = f"app;dur={app_ms:.2f}, db;dur={db_seconds * 1000:.2f}"
        response["X-Bench-Queries"] = str(queries)
        return response
