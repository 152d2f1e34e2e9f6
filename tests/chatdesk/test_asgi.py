"""The web processes as Daphne (chatdesk/asgi.py) and gunicorn (chatdesk/wsgi.py) load them."""

import os
import subprocess
import sys

import pytest
from django.conf import settings


@pytest.mark.parametrize("entry_point", ["chatdesk.asgi", "chatdesk.wsgi"])
def test_the_web_process_keeps_its_loaded_app_out_of_every_later_collection(entry_point):
    """A full collection stops the process for as long as it scans; the loaded app is frozen so that scan
    covers only what came after, and the young generation is collected every 10,000 allocations."""
    script = (
        f"import gc, {entry_point}; print(gc.get_freeze_count(), len(gc.get_objects()), *gc.get_threshold())"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatdesk.settings"}
    done = subprocess.run([sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    frozen, still_scanned, young, middle, old = (int(n) for n in done.stdout.split())
    assert frozen > 50_000
    assert still_scanned < frozen / 10
    assert (young, middle, old) == (10_000, 10, 10)
