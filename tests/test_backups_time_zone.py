"""Backup names carry the time in Django's TIME_ZONE, with USE_TZ on or off."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from deploy_ops import backups

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


@pytest.mark.parametrize("use_tz", [True, False])
def test_a_backup_is_named_by_the_time_in_django_time_zone(sqlite_target, settings, use_tz):
    settings.TIME_ZONE, settings.USE_TZ = "Pacific/Kiritimati", use_tz  # UTC+14: never the host's zone by chance
    before = datetime.now(ZoneInfo("Pacific/Kiritimati")).replace(tzinfo=None, microsecond=0)

    backup = backups.create_backup()

    stamp = datetime.strptime(backup.name[len("backup_") :][:15], backups.STAMP_FORMAT)
    assert before <= stamp <= before + timedelta(seconds=5)
