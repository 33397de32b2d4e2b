"""Backups encrypted to age recipients: streamed, checksummed over the encrypted bytes, restorable
only with the right identity, and readable by the age tool itself (the restore by hand)."""

import io
import shutil
import subprocess

import pytest
from django.core.management import CommandError, call_command

from deploy_ops import backups
from deploy_ops.exceptions import BackupCorrupt, BackupError
from tests.fixtures.backups import postgres_checksum, psql, sqlite_checksum
from tests.fixtures.environment import skip_or_fail

pyrage = pytest.importorskip("pyrage")
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


def new_identity(folder, name="key.txt"):
    identity = pyrage.x25519.Identity.generate()
    path = folder / name
    path.write_text(f"# created: by the test\n# public key: {identity.to_public()}\n{identity}\n")
    path.chmod(0o600)
    return path, str(identity.to_public())


@pytest.fixture
def encrypted_to(settings, tmp_path):
    """BACKUP_AGE_RECIPIENTS set to a new key, its identity file configured; returns the identity file."""
    identity_file, recipient = new_identity(tmp_path)
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_AGE_RECIPIENTS": [recipient], "BACKUP_AGE_IDENTITY_FILE": str(identity_file)}
    return identity_file


def change_sqlite(path):
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute("DELETE FROM items WHERE id % 2 = 0")
    connection.close()


def test_an_encrypted_backup_round_trips_and_holds_no_plain_dump(sqlite_target, encrypted_to):
    original = sqlite_checksum(sqlite_target)
    backup = backups.create_backup(compression="none")
    assert backup.name.endswith(".sqlite3.age") and backup.encrypted
    assert backup.path.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert b"SQLite format 3" not in backup.path.read_bytes()
    assert backup.metadata["encryption"]["format"] == "age"
    change_sqlite(sqlite_target)

    backups.restore_backup(backups.find_backup(backup.name), safety_backup=False)

    assert sqlite_checksum(sqlite_target) == original


def test_verify_checks_the_encrypted_bytes_without_the_key(sqlite_target, encrypted_to, settings):
    backup = backups.create_backup()
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_AGE_IDENTITY_FILE": None}
    backups.verify_backup(backups.find_backup(backup.name))  # no key needed: the checksum covers the age file
    out = io.StringIO()
    call_command("backups", "verify", backup.name, stdout=out)
    assert f"OK {backup.name} (encrypted: checksum only;" in out.getvalue()
    data = bytearray(backup.path.read_bytes())
    data[-10] ^= 0x01
    backup.path.write_bytes(bytes(data))
    with pytest.raises(BackupCorrupt, match="its sha256 is"):
        backups.verify_backup(backups.find_backup(backup.name))


def test_restore_with_a_wrong_key_says_so_and_changes_nothing(sqlite_target, encrypted_to, settings, tmp_path):
    backup = backups.create_backup()
    other, _ = new_identity(tmp_path, "other.txt")
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_AGE_IDENTITY_FILE": str(other)}
    change_sqlite(sqlite_target)
    changed = sqlite_checksum(sqlite_target)
    before = {path.name for path in backup.path.parent.iterdir()}

    with pytest.raises(BackupError, match=f"cannot be decrypted with the identity in {other}: it was encrypted to other recipients"):
        backups.restore_backup(backups.find_backup(backup.name))

    assert sqlite_checksum(sqlite_target) == changed
    assert {path.name for path in backup.path.parent.iterdir()} == before  # not even a safety backup was taken


def test_restore_with_the_key_file_missing_says_where_it_was_looked_for(sqlite_target, encrypted_to, db):
    backup = backups.create_backup()
    encrypted_to.unlink()
    change_sqlite(sqlite_target)
    changed = sqlite_checksum(sqlite_target)

    with pytest.raises(CommandError, match=f"its identity file {encrypted_to} cannot be read"):
        call_command("backups", "restore", backup.name, "--noinput")

    assert sqlite_checksum(sqlite_target) == changed


def test_restore_with_no_identity_configured_names_the_setting(sqlite_target, encrypted_to, settings):
    backup = backups.create_backup()
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "BACKUP_AGE_IDENTITY_FILE": None}
    with pytest.raises(BackupError, match=r"BACKUP_AGE_IDENTITY_FILE'\] is not set"):
        backups.restore_backup(backups.find_backup(backup.name))


@pytest.mark.postgres
def test_the_age_tool_restores_an_encrypted_postgres_backup_by_hand(postgres_target, encrypted_to, postgres_database, tmp_path):
    """The pipeline docs/BACKUPS.md gives: age -d -i key | gunzip | psql."""
    if shutil.which("age") is None:
        skip_or_fail("the age tool is not installed (apt-get install age)")
    original = postgres_checksum(postgres_database)
    backup = backups.create_backup(compression="gzip")
    psql(postgres_database, "DROP TABLE items")

    by_hand = (
        f"age -d -i {encrypted_to} {backup.path} | gunzip | "
        f"psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h 127.0.0.1 -U postgres -d {postgres_database['NAME']}"
    )
    subprocess.run(["bash", "-o", "pipefail", "-c", by_hand], check=True, capture_output=True)

    assert postgres_checksum(postgres_database) == original
