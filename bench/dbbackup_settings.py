"""Settings for bench_backups.py's django-dbbackup rows: the bundled project with dbbackup in
INSTALLED_APPS and its backups stored in the benchmark's folder (BENCH_DBBACKUP_DIR)."""

import os

from django.conf import global_settings

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "dbbackup"]
STORAGES = {
    **global_settings.STORAGES,
    "dbbackup": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": os.environ["BENCH_DBBACKUP_DIR"]}},
}
DBBACKUP_DATABASES = ["default"]
DBBACKUP_SEND_EMAIL = False
