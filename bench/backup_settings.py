"""Settings for bench_backups.py: the bundled project, with the benchmark's SFTP server as the
off-host storage ("offsite", given as JSON in BENCH_OFFSITE_STORAGE)."""

import json
import os

from django.conf import global_settings

from config.settings import *  # noqa: F403

# The bundled project keeps Django's default STORAGES; the benchmark adds its own.
STORAGES = {**global_settings.STORAGES, "offsite": json.loads(os.environ["BENCH_OFFSITE_STORAGE"])}
