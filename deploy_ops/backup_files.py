"""Backup file names and their metadata files: what ``backups`` writes and ``storage`` copies.

A leaf below both (it imports nothing of deploy_ops but privatefiles), so that the off-host
storage can name and describe backups without importing the module that makes them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .privatefiles import write_atomically

# Ours (and the old scripts'): backup_20250109_120000; cookiecutter-django's maintenance/backup
# names its dumps backup_2025_01_09T12_00_00 (`date +%Y_%m_%dT%H_%M_%S` in the postgres container).
# An encrypted backup ends in .age after its compression suffix.
NAME_PATTERN = re.compile(
    r"^backup_(?P<stamp>\d{8}_\d{6}|\d{4}_\d{2}_\d{2}T\d{2}_\d{2}_\d{2})\.(?P<kind>sql|sqlite3)(?P<suffix>\.gz|\.zst)?(?P<encrypted>\.age)?$"
)


def metadata_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def metadata_bytes(metadata: dict) -> bytes:
    return (json.dumps(metadata, indent=2, sort_keys=True) + "\n").encode()


def write_metadata(backup_path: Path, metadata: dict) -> None:
    write_atomically(metadata_path_for(backup_path), metadata_bytes(metadata))
