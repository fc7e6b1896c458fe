"""The portal's own settings, plus the benchmark's timing middleware when
``BENCH_SERVER_TIMING=1`` (the bench sets it for the gunicorn it starts)."""

import os

from fulfillment.settings import *  # noqa: F403
from fulfillment.settings import LOGGING, MIDDLEWARE

if os.environ.get("BENCH_SERVER_TIMING") == "1":
    MIDDLEWARE = ["bench.middleware.ServerTimingMiddleware", *MIDDLEWARE]

LOGGING = {**LOGGING, "root": {**LOGGING["root"], "level": "WARNING"}}
