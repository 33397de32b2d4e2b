"""Settings for bench_health.py: the bundled project, served with the bench-only URLconf."""

import os

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.health_urls"
# The stock Storage check writes a probe file under MEDIA_ROOT; keep it in the bench's folder.
MEDIA_ROOT = os.environ["BENCH_MEDIA_ROOT"]
