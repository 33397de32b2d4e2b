"""Database backups that can be trusted: create, list, find, verify, prune, restore.

A backup is ``BACKUP_DIR/backup_YYYYmmdd_HHMMSS.<kind><suffix>`` (kind ``sql`` for a plain
PostgreSQL/MySQL dump, ``sqlite3`` for an SQLite database file; suffix ``.gz``, ``.zst`` or
none), with ``<name>.json`` beside it holding its metadata.  Files made by the old scripts
have no metadata: they are listed, verified and restored as "legacy" backups.
See docs/BACKUPS.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from django.db import connections
from django.utils import timezone
from django.utils.translation import gettext as _

from . import __version__, encryption, progress, signals, storage
from . import compression as codec
from .audit import replay_journal
from .backup_files import NAME_PATTERN, metadata_path_for, write_metadata
from .conf import ops_settings
from .databases import COMPLETION_MARKERS, contents, engine_for, restore_blockers, sniff_vendor
from .databases.sqlite import check_database_file, sqlite_file_tables
from .exceptions import (
    BackupCorrupt,
    BackupError,
    BackupIncompatible,
    BackupNotFound,
    ConfigurationError,
    DeployOpsError,
    RestoreRefused,
)
from .privatefiles import fsync_directory
from .runner import Command, run

logger = logging.getLogger("deploy_ops.backups")

STAMP_FORMAT = "%Y%m%d_%H%M%S"
COOKIECUTTER_STAMP_FORMAT = "%Y_%m_%dT%H_%M_%S"
METADATA_FORMAT = 1
# The completion line of a dump sits within its last few bytes.
_TAIL_BYTES = 64 * 1024
# Signals are sent with this sender (see deploy_ops.signals).
SENDER = __name__


@dataclass
class Backup:
    path: Path
    name: str
    # None for a legacy backup (made without deploy_ops, so without a metadata file).
    metadata: dict | None = None
    _sniffed_engine: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def at(cls, path: Path) -> Backup:
        path = Path(path)
        return cls(path=path, name=path.name, metadata=_read_metadata(metadata_path_for(path)))

    @property
    def metadata_path(self) -> Path:
        return metadata_path_for(self.path)

    def _name_part(self, group: str) -> str:
        match = NAME_PATTERN.match(self.name)
        assert match, "Backups are made only of files named like a backup (find_backup, list_backups)"
        return match[group]

    @property
    def created_at(self) -> datetime:
        recorded = (self.metadata or {}).get("created_at")
        if recorded:
            return datetime.fromisoformat(recorded)
        return stamp_time(self._name_part("stamp"))

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def sha256(self) -> str | None:
        return (self.metadata or {}).get("sha256")

    @property
    def engine(self) -> str | None:
        """postgresql, mysql or sqlite; for a legacy backup, read from the dump's first bytes."""
        if self.metadata and self.metadata.get("engine"):
            return self.metadata["engine"]
        if self._sniffed_engine is None:
            self._sniffed_engine = _sniff_engine(self) or ""
        return self._sniffed_engine or None

    @property
    def database(self) -> str:
        return (self.metadata or {}).get("database", "")

    @property
    def commit(self) -> str:
        return (self.metadata or {}).get("commit", "")

    @property
    def compression(self) -> str:
        return codec.compression_of(self.name.removesuffix(encryption.SUFFIX))

    @property
    def encrypted(self) -> bool:
        return bool(self._name_part("encrypted"))

    @property
    def kind(self) -> str:
        return self._name_part("kind")

    @property
    def verified(self) -> bool | None:
        """True or False after ``verify`` ran (the last result counts); None if never verified."""
        verification = (self.metadata or {}).get("verification")
        return None if not verification else bool(verification.get("ok"))


def stamp_time(stamp: str) -> datetime:
    """When a backup without metadata was made, from its name."""
    if "T" in stamp:
        # The postgres container's clock has no time zone set: cookiecutter-django's names are UTC.
        return datetime.strptime(stamp, COOKIECUTTER_STAMP_FORMAT).replace(tzinfo=UTC)
    # The old scripts named files by the host's local time (`date +%Y%m%d_%H%M%S`).
    return timezone.make_aware(datetime.strptime(stamp, STAMP_FORMAT))


@dataclass
class RestoreResult:
    safety_backup: Backup | None
    warnings: list[str] = field(default_factory=list)


# -- files ------------------------------------------------------------------------------------
def _read_metadata(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        # Unreadable metadata cannot vouch for the file: treat it as a legacy backup.
        logger.warning("ignoring unreadable backup metadata %s: %s", path, error)
        return None
    return metadata if isinstance(metadata, dict) else None


def _backup_directory() -> Path:
    directory = ops_settings.backup_dir
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Also when the folder existed: dumps hold every row of the database.
        os.chmod(directory, 0o700)
    except OSError as error:
        raise BackupError(
            _("The backup folder %(folder)s cannot be made or used (%(error)s). Check DEPLOY_OPS['BACKUP_DIR'].")
            % {"folder": directory, "error": error.strerror}
        ) from None
    return directory


def _free_name(directory: Path, moment: datetime, extension: str) -> Path:
    """``backup_<time in Django's TIME_ZONE>.<extension>``, a second later while the name is taken."""
    # With USE_TZ = False, timezone.now() is already naive local time in TIME_ZONE.
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    while True:
        path = directory / f"backup_{moment.strftime(STAMP_FORMAT)}.{extension}"
        if not path.exists() and not metadata_path_for(path).exists():
            return path
        moment += timedelta(seconds=1)


class _HeadKeeper:
    """Passes writes through, keeping the first bytes (the dump's header names the server version)."""

    def __init__(self, stream, size: int = 8192):
        self.stream, self.size, self.head = stream, size, b""

    def write(self, data) -> int:
        if len(self.head) < self.size:
            self.head += bytes(data[: self.size - len(self.head)])
        return self.stream.write(data)


class _ContentsReading:
    """Passes writes through, showing each to the dump's contents reader (tables and rows)."""

    def __init__(self, stream, reader):
        self.stream, self.reader = stream, reader

    def write(self, data) -> int:
        self.reader.feed(data)
        return self.stream.write(data)


class _HashingWriter:
    """Passes writes through to ``raw``, hashing and counting them."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def current_commit() -> str:
    """The checkout's HEAD, or '' where PROJECT_DIR is not the top of a git checkout with a commit.

    One ``git rev-parse`` rather than GitPython (gitrepo's reads): importing it would add a tenth
    of the dump of a small database to every ``backups create``, which needs nothing else of git.
    """
    project_dir = ops_settings.project_dir
    try:
        top, sha = run(head_command(project_dir), timeout=30).stdout.split()
    except (DeployOpsError, ValueError):
        return ""
    return sha if Path(top).resolve() == Path(project_dir).resolve() else ""


def head_command(project_dir: Path) -> Command:
    return Command(("git", "rev-parse", "--show-toplevel", "--verify", "--quiet", "HEAD"), cwd=str(project_dir))


# -- create -----------------------------------------------------------------------------------
def create_backup(database: str | None = None, compression: str | None = None) -> Backup:
    """Dump the database through the compressor into BACKUP_DIR; returns the new backup.

    The dump streams into a temporary file (constant memory, sha256 computed on the way),
    which is fsynced and renamed into place only when the dump succeeded: no partial file
    is ever left behind.
    """
    alias = database or ops_settings.BACKUP_DATABASE
    method = compression or ops_settings.BACKUP_COMPRESSION
    if method not in codec.CHOICES:
        raise ConfigurationError(
            _("Unknown compression %(compression)r; use one of %(choices)s.") % {"compression": method, "choices": ", ".join(codec.CHOICES)}
        )
    engine = engine_for(alias)
    recipients = ops_settings.BACKUP_AGE_RECIPIENTS
    directory = _backup_directory()
    signals.pre_backup.send(sender=SENDER, database=alias)
    started = timezone.now()
    # Read before the dump starts, so rows written while it runs cannot fail a good backup.
    live_tables = contents.live_tables(engine)
    reader = contents.dump_reader(engine.vendor)
    descriptor, temporary = tempfile.mkstemp(prefix=".partial-", dir=directory)  # mode 0600
    path = None
    try:
        with os.fdopen(descriptor, "wb") as raw:
            hashing = _HashingWriter(raw)
            with (
                progress.ByteProgress(_("Backing up %(alias)r") % {"alias": alias}, lambda: progress.database_size(engine)) as meter,
                encryption.sealed(hashing, recipients) as sealed,
                codec.writer(sealed, method) as stream,
            ):
                dumped = _HeadKeeper(progress.MeteredWriter(_ContentsReading(stream, reader) if reader else stream, meter))
                engine.dump(dumped)
            raw.flush()
            os.fsync(raw.fileno())
        tables = reader.tables if reader else (engine.dumped_tables or {})
        _prove_contents(engine, tables, live_tables)
        metadata = {
            "format": METADATA_FORMAT,
            "engine": engine.vendor,
            "alias": alias,
            "database": engine.database_name,
            "server_version": engine.version_from_dump(dumped.head) or _server_version(engine),
            "created_at": started.isoformat(),
            "size": hashing.size,
            "sha256": hashing.hash.hexdigest(),
            "compression": method,
            "commit": current_commit(),
            "deploy_ops_version": __version__,
            "contents": {"tables": tables},
        }
        blockers = _restore_blockers(engine)
        if blockers:
            metadata["restore_blockers"] = blockers
        if recipients:
            metadata["encryption"] = {"format": "age", "recipients": recipients}
        path = _free_name(directory, started, engine.file_kind + codec.suffix(method) + (encryption.SUFFIX if recipients else ""))
        # Metadata first: a backup file in place always has its metadata.
        write_metadata(path, metadata)
        os.replace(temporary, path)
        fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        if path is not None and not path.exists():
            with contextlib.suppress(FileNotFoundError):
                os.remove(metadata_path_for(path))
        raise
    backup = Backup(path=path, name=path.name, metadata=metadata)
    logger.info("backup created: %s (%d bytes, sha256 %s)", path, backup.size, backup.sha256)
    if blockers:
        logger.warning("%s cannot be restored by deploy_ops while the database holds this: %s", path.name, "; ".join(blockers))
    storage.copy_new_backup(backup)
    signals.post_backup.send(sender=SENDER, database=alias, backup=backup)
    return backup


def _restore_blockers(engine) -> list[str]:
    # Said in the metadata and the log; a failed query must not discard the dump either.
    try:
        return engine.restore_blockers()
    except DeployOpsError as error:
        logger.warning("could not check whether the %s database can be restored: %s", engine.vendor, error)
        return []


def _prove_contents(engine, tables: dict[str, int], live_tables: dict[str, bool]) -> None:
    """BackupError (and the backup is not kept) unless the dump holds every table, and every row-holding table's rows."""
    problems = contents.missing_from(tables, live_tables)
    if problems:
        raise BackupError(
            _(
                "The dump of database %(database)r does not hold what the database holds, so it was not kept: "
                "%(problems)s. Check DATABASES[%(alias)r]['NAME'] and the dump tool's privileges, then try again."
            )
            % {"database": engine.database_name, "problems": "; ".join(problems), "alias": engine.alias}
        )


def _server_version(engine) -> str:
    # Informational only: the dump already succeeded, so a failed query must not discard it.
    try:
        return engine.server_version()
    except DeployOpsError as error:
        logger.warning("could not read the %s server version: %s", engine.vendor, error)
        return ""


# -- list and find ----------------------------------------------------------------------------
def list_backups() -> list[Backup]:
    """Every file in BACKUP_DIR named like a backup, newest first."""
    directory = ops_settings.backup_dir
    if not directory.is_dir():
        return []
    found = [Backup.at(path) for path in directory.iterdir() if NAME_PATTERN.match(path.name) and path.is_file()]
    return sorted(found, key=lambda backup: (backup.created_at, backup.name), reverse=True)


def find_backup(name_or_path: str) -> Backup:
    """A backup by name (BACKUP_DIR first) or by path (absolute, or relative to here or PROJECT_DIR)."""
    given = Path(name_or_path)
    if given.is_absolute():
        candidates = [given]
    elif len(given.parts) == 1:
        # A bare name means the backup of that name: a same-named file where the command runs must not hide it.
        candidates = [ops_settings.backup_dir / given, Path.cwd() / given, ops_settings.project_dir / given]
    else:
        candidates = [Path.cwd() / given, ops_settings.project_dir / given, ops_settings.backup_dir / given]
    for candidate in candidates:
        if candidate.is_file():
            if not NAME_PATTERN.match(candidate.name):
                raise BackupNotFound(
                    _(
                        "%(path)s is not named like a backup (backup_YYYYmmdd_HHMMSS.sql.gz, .sql.zst, .sql, "
                        "or .sqlite3 with the same suffixes); rename it so its kind and compression are known."
                    )
                    % {"path": candidate}
                )
            return Backup.at(candidate)
    if storage.configured() and NAME_PATTERN.match(given.name):
        return Backup.at(storage.fetch(given.name, ops_settings.backup_dir))
    existing = [backup.name for backup in list_backups()]
    more = " …" if len(existing) > 10 else ""
    if existing:
        listing = _("The backups there are: %(names)s.") % {"names": ", ".join(existing[:10]) + more}
    else:
        listing = _("There are no backups there yet.")
    raise BackupNotFound(_("No backup %(name)r in %(folder)s.") % {"name": name_or_path, "folder": ops_settings.backup_dir} + f" {listing}")


# -- verify -----------------------------------------------------------------------------------
def _corrupt(backup: Backup, why: str) -> BackupCorrupt:
    return BackupCorrupt(_("%(path)s is damaged: %(why)s. Do not restore it; use another backup.") % {"path": backup.path, "why": why})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(codec.CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_checksum(backup: Backup) -> None:
    """Size and sha256 against the metadata (a backup with metadata only)."""
    if not backup.path.is_file():
        raise BackupNotFound(_("%(path)s no longer exists.") % {"path": backup.path})
    assert backup.metadata is not None, "a legacy backup has no checksum: its callers check its content instead"
    recorded_size = backup.metadata.get("size")
    if recorded_size is not None and backup.size != recorded_size:
        raise _corrupt(
            backup,
            _("it is %(size)s bytes but was %(recorded)s bytes when written (truncated or changed)")
            % {"size": backup.size, "recorded": recorded_size},
        )
    found = file_sha256(backup.path)
    if found != backup.sha256:
        raise _corrupt(
            backup,
            _("its sha256 is %(found)s but the metadata recorded %(recorded)s (the file changed after it was written)")
            % {"found": found, "recorded": backup.sha256},
        )


def _checked_chunks(backup: Backup, vendor: str | None) -> Iterator[bytes]:
    """The decompressed dump; raises BackupCorrupt, after the last chunk, if it is incomplete.

    A restore feeds these chunks straight into the database client, so the check at the end
    runs before the client sees the end of its input, and a bad file is never committed.
    """
    tail = b""
    try:
        with open(backup.path, "rb") as raw, encryption.opened(raw, backup) as source:
            for chunk in codec.chunks(source, backup.compression):
                tail = chunk[-_TAIL_BYTES:] if len(chunk) >= _TAIL_BYTES else (tail + chunk)[-_TAIL_BYTES:]
                yield chunk
    except codec.CorruptStream as error:
        raise _corrupt(backup, str(error)) from None
    marker = COMPLETION_MARKERS.get(vendor) if vendor else None
    if marker and marker not in tail:
        raise _corrupt(backup, _("the dump does not end with its completion line %(line)r (it was cut short)") % {"line": marker.decode()})


def _check_content(backup: Backup) -> None:
    """A full decompress, a format check, and the tables and rows against those recorded at creation."""
    vendor = backup.engine
    if vendor is None:
        raise _corrupt(backup, _("it is not a PostgreSQL, MySQL or SQLite dump that deploy_ops recognizes"))
    recorded = ((backup.metadata or {}).get("contents") or {}).get("tables")
    if backup.kind != "sqlite3":
        reader = contents.dump_reader(vendor)  # None for an SQLite file named like a dump
        for chunk in _checked_chunks(backup, vendor):
            if reader:
                reader.feed(chunk)
        if reader:
            _compare_contents(backup, reader.tables, recorded)
        return
    descriptor, temporary = tempfile.mkstemp(prefix=".partial-", dir=backup.path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            for chunk in _checked_chunks(backup, vendor):
                file.write(chunk)
        check_database_file(Path(temporary))
        if recorded is not None:
            _compare_contents(backup, sqlite_file_tables(Path(temporary)), recorded)
    except codec.CorruptStream as error:
        raise _corrupt(backup, str(error)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def _compare_contents(backup: Backup, found: dict, recorded: dict | None) -> None:
    # Backups made before contents were recorded (and legacy ones) have nothing to compare with.
    if recorded is None:
        return
    problems = contents.differences(found, recorded)
    if problems:
        raise _corrupt(backup, "it does not hold the tables and rows recorded when it was made: " + "; ".join(problems))


def _sniff_engine(backup: Backup) -> str | None:
    if backup.encrypted:
        return None  # reading the first bytes would need the key; deploy_ops writes the engine in the metadata
    try:
        with open(backup.path, "rb") as raw:
            head = next(codec.chunks(raw, backup.compression), b"")
    except (OSError, codec.CorruptStream):
        return None
    return sniff_vendor(head[:4096])


def verify_backup(backup: Backup, record: bool = True) -> None:
    """Checksum (if the backup has metadata), full decompress and format check.

    Raises BackupCorrupt naming the file and why.  With ``record``, the result is written
    into the metadata (``verification``: at, ok, error), where ``list`` and health checks see it.
    """
    try:
        if backup.metadata is not None:
            _check_checksum(backup)
        # The checksum covers the encrypted bytes: without the key, it is the whole check.
        if not backup.encrypted or encryption.can_decrypt():
            _check_content(backup)
    except BackupCorrupt as error:
        _record_verification(backup, record, str(error))
        raise
    _record_verification(backup, record, "")


def _record_verification(backup: Backup, record: bool, error: str) -> None:
    # A legacy backup stays legacy: writing metadata now would vouch for bytes nobody checksummed.
    if not record or backup.metadata is None:
        return
    backup.metadata["verification"] = {"at": timezone.now().isoformat(), "ok": not error, "error": error}
    write_metadata(backup.path, backup.metadata)


# -- prune ------------------------------------------------------------------------------------
def _is_valid(backup: Backup, record: bool) -> bool:
    try:
        if backup.verified and backup.metadata is not None:
            _check_checksum(backup)  # verified before: the checksum shows it has not changed since
        else:
            verify_backup(backup, record=record)
    except (BackupCorrupt, BackupNotFound):
        return False
    return True


def prune_backups(
    days: int | None = None, keep: int | None = None, dry_run: bool = False, protect: AbstractSet[str] = frozenset()
) -> list[Backup]:
    """Delete backups older than ``days``, always keeping the newest ``keep`` valid ones and ``protect``.

    Returns what was deleted (or, with ``dry_run``, what would be).  Only files named like
    backups are touched; their metadata files go with them.
    """
    days = ops_settings.BACKUP_RETENTION_DAYS if days is None else days
    keep = ops_settings.BACKUP_KEEP if keep is None else keep
    if keep < 1:
        raise ConfigurationError("keep must be 1 or more: pruning must never leave the site without a backup.")
    if days < 0:
        raise ConfigurationError("days must be 0 or more.")
    backups = list_backups()
    kept: set[str] = set()
    for backup in backups:
        if len(kept) >= keep:
            break
        if _is_valid(backup, record=not dry_run):
            kept.add(backup.name)
    cutoff = timezone.now() - timedelta(days=days)
    doomed = [backup for backup in backups if backup.name not in kept and backup.name not in protect and backup.created_at < cutoff]
    if not dry_run:
        for backup in doomed:
            backup.path.unlink(missing_ok=True)
            backup.metadata_path.unlink(missing_ok=True)
            logger.info("pruned backup %s", backup.path)
        _remove_abandoned_partials()
    return doomed


ABANDONED_AFTER = timedelta(days=1)


def _remove_abandoned_partials() -> None:
    """A process killed mid-dump leaves its temporary file; one a day old belongs to nobody."""
    directory = ops_settings.backup_dir
    if not directory.is_dir():
        return
    cutoff = (timezone.now() - ABANDONED_AFTER).timestamp()
    for leftover in directory.glob(".partial-*"):
        # lstat: a symlink (dangling or not) is judged and removed itself, never followed.
        try:
            found = leftover.lstat()
        except FileNotFoundError:
            continue  # another process finished or removed it meanwhile
        if stat.S_ISDIR(found.st_mode) or found.st_mtime >= cutoff:
            continue
        leftover.unlink(missing_ok=True)
        logger.info("removed %s, left by a backup or restore that never finished", leftover)


# -- restore ----------------------------------------------------------------------------------
def refuse_restore_blockers(alias: str, what: str) -> None:
    """RestoreRefused (exit 3) while the database holds what a restore could not bring back safely.

    ``what`` says what was refused ("backup_x was not restored", "The deploy was refused").
    """
    blockers = restore_blockers(alias)
    if blockers:
        raise RestoreRefused(
            _(
                "%(what)s and nothing changed: the database %(alias)r cannot be restored safely: "
                "%(blockers)s. See docs/BACKUPS.md (`check --deploy` reports it as deploy_ops.E011)."
            )
            % {"what": what, "alias": alias, "blockers": "; ".join(blockers)}
        )


def check_restorable(backup: Backup, alias: str) -> None:
    """Before any restore changes anything: the backup is of this engine, intact, and nothing blocks it.

    A backup whose metadata records its contents was proven whole when it was written, so a
    matching checksum proves it still is (the restore checks the stream again on its way in);
    any other backup is decompressed and checked in full first.  Raises a refusal (exit 3) and
    writes nothing, not even verification metadata.
    """
    vendor = engine_for(alias).vendor
    if backup.engine is None:
        raise _corrupt(backup, _("it is not a PostgreSQL, MySQL or SQLite dump that deploy_ops recognizes"))
    if backup.engine != vendor:
        raise BackupIncompatible(
            _("%(name)s is a %(engine)s backup, but the database %(alias)r is %(vendor)s; nothing was changed.")
            % {"name": backup.name, "engine": backup.engine, "alias": alias, "vendor": vendor}
        )
    if backup.metadata is not None and backup.metadata.get("contents"):
        _check_checksum(backup)
    else:
        verify_backup(backup, record=False)
    if backup.encrypted:
        encryption.check_key(backup)
    refuse_restore_blockers(alias, _("%(name)s was not restored") % {"name": backup.name})


def restore_backup(backup: Backup, database: str | None = None, safety_backup: bool = True, checked: bool = False) -> RestoreResult:
    """Replace the database with ``backup``, all or nothing.

    Before anything changes: :func:`check_restorable` (unless the caller has just run it:
    ``checked``), where a legacy backup is decompressed and format-checked in full, with a
    warning that it had no checksum; then a safety backup of the current database is taken.
    The dump is then decompressed and checked again on its way into the database, and committed
    only if it is complete.  Afterwards the audit journal is replayed, so the deployment records
    survive.
    """
    alias = database or ops_settings.BACKUP_DATABASE
    engine = engine_for(alias)
    if not backup.path.is_file() and storage.configured():
        storage.fetch(backup.name, backup.path.parent)
    if not checked:
        check_restorable(backup, alias)
    warnings = []
    if backup.metadata is None:
        warnings.append(
            _(
                "%(name)s has no metadata file (made by the old scripts?), so no checksum could be checked; "
                "it was only checked to decompress completely and end like a complete dump."
            )
            % {"name": backup.name}
        )
    for warning in warnings:
        logger.warning(warning)
    signals.pre_restore.send(sender=SENDER, database=alias, backup=backup)
    safety = create_backup(alias) if safety_backup else None
    # The database's size now estimates what the dump restores; asked before the connections close.
    meter = progress.ByteProgress(_("Restoring %(backup)s") % {"backup": backup.name}, lambda: progress.database_size(engine))
    # Django's own connections would hold locks (and SQLite pages) the restore must replace.
    connections.close_all()
    if safety:
        logger.info("safety backup before the restore: %s", safety.path)
    try:
        with meter:
            engine.restore(codec.read_ahead(meter.chunks(_checked_chunks(backup, backup.engine))))
    except codec.CorruptStream as error:
        raise _corrupt(backup, str(error)) from None
    logger.info("restored %s into %r", backup.path, alias)
    replay_journal()
    signals.post_restore.send(sender=SENDER, database=alias, backup=backup)
    return RestoreResult(safety_backup=safety, warnings=warnings)
