import subprocess
import sys

from django.conf import settings


def test_the_web_worker_freezes_what_it_loaded_before_serving() -> None:
    probe = "import gc, fulfillment.wsgi; print(gc.get_freeze_count())"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) > 50_000
