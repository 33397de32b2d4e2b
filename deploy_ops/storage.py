"""Copies of the backups off the host, in any Django storage (``DEPLOY_OPS['BACKUP_STORAGE']``).

The storage is an alias in ``settings.STORAGES``: django-storages' SFTP, S3, Azure or Google
backends, a ``FileSystemStorage`` on another disk, or any other.  A backup goes there as two
files, ``<BACKUP_STORAGE_PREFIX>/<name>`` and its ``<name>.json`` metadata.  The backup is sent
first, read back and compared by sha256, and only then is its metadata sent: a copy without
metadata is an unfinished one.  Every transfer streams in pieces (constant memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.core.files import File
from django.core.files.base import ContentFile
from django.utils import timezone
from django.utils.translation import gettext as _

from .backup_files import NAME_PATTERN, metadata_bytes, write_metadata
from .conf import ops_settings
from .exceptions import BackupCorrupt, BackupError, BackupNotFound, ConfigurationError, DeployOpsError

logger = logging.getLogger("deploy_ops.storage")

_PIECE = 1 << 20
_SFTP_WINDOW = 4 << 20


@dataclass
class RemoteCopy:
    name: str
    metadata: dict | None

    @property
    def complete(self) -> bool:
        return self.metadata is not None

    @property
    def created_at(self) -> datetime | None:
        recorded = (self.metadata or {}).get("created_at")
        return datetime.fromisoformat(recorded) if recorded else None

    @property
    def sha256(self) -> str | None:
        return (self.metadata or {}).get("sha256")

    @property
    def size(self) -> int | None:
        return (self.metadata or {}).get("size")


def configured() -> bool:
    return bool(ops_settings.BACKUP_STORAGE)


def backup_storage():
    """The storage named by BACKUP_STORAGE (a ConfigurationError when it names no STORAGES alias)."""
    from django.core.files.storage import InvalidStorageError, storages

    alias = ops_settings.BACKUP_STORAGE
    if not alias:
        raise ConfigurationError(_("DEPLOY_OPS['BACKUP_STORAGE'] is not set: there is no off-host storage for backups."))
    try:
        return storages[alias]
    except InvalidStorageError:
        raise ConfigurationError(
            _("DEPLOY_OPS['BACKUP_STORAGE'] is %(alias)r, which is not an alias in settings.STORAGES.") % {"alias": alias}
        ) from None


def remote_name(name: str) -> str:
    prefix = ops_settings.BACKUP_STORAGE_PREFIX.strip("/")
    return posixpath.join(prefix, name) if prefix else name


def describe_storage() -> str:
    return _("the storage %(alias)r") % {"alias": ops_settings.BACKUP_STORAGE}


def _failure(sentence: str, error: BaseException, **values) -> BackupError:
    """``sentence``: translated, with %(storage)s, %(error)s and ``values``' placeholders."""
    # Only the error's class and text: never the storage's options, which may hold credentials.
    return BackupError(sentence % {"storage": describe_storage(), "error": f"{type(error).__name__}: {error}", **values})


def _replace(storage, name: str, content) -> None:
    # Storage.save picks another name when one is taken; a copy must land under its own name.
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, content)
    if saved != name:
        storage.delete(saved)
        raise BackupError(
            _("%(storage)s saved %(name)s as %(saved)s; deploy_ops needs it to keep the name it was given.")
            % {"storage": describe_storage(), "name": name, "saved": saved}
        )


def read_pieces(storage, name: str):
    """The stored file's bytes, piece by piece, in constant memory."""
    with storage.open(name, "rb") as remote:
        piece = remote.read(_PIECE)
        sftp_file = getattr(remote, "file", None)
        if piece and callable(getattr(sftp_file, "prefetch", None)):
            yield piece
            yield from _read_ahead(sftp_file)
            return
        while piece:
            yield piece
            piece = remote.read(_PIECE)


def _read_ahead(sftp_file):
    """A paramiko SFTP file (django-storages' SFTPStorage), read a window at a time.

    Without read-ahead paramiko waits for each 32 KiB request before sending the next (ten times
    slower); with read-ahead over the whole file it buffers what arrives faster than it is read,
    and its lookups in that buffer grow with it.  Windows of _SFTP_WINDOW keep both bounded.
    """
    size = sftp_file.stat().st_size
    position = sftp_file.tell()
    while position < size:
        end = min(position + _SFTP_WINDOW, size)
        sftp_file.prefetch(end)
        while position < end:
            piece = sftp_file.read(min(_PIECE, end - position))
            if not piece:
                raise BackupError(
                    _("%(storage)s ended the file at %(position)s of its %(size)s bytes")
                    % {"storage": describe_storage(), "position": position, "size": size}
                )
            position += len(piece)
            yield piece


def remote_sha256(storage, name: str) -> str:
    digest = hashlib.sha256()
    for piece in read_pieces(storage, name):
        digest.update(piece)
    return digest.hexdigest()


def copy_off_host(backup) -> None:
    """Send ``backup`` and its metadata to BACKUP_STORAGE and check the copy; raises BackupError."""
    storage = backup_storage()
    name = remote_name(backup.name)
    try:
        with open(backup.path, "rb") as local:
            _replace(storage, name, File(local, name=backup.name))
        copied = remote_sha256(storage, name)
    except BackupError:
        raise
    except Exception as error:  # every backend raises its own errors (paramiko, botocore, OSError)
        raise _failure(_("Could not copy %(name)s to %(storage)s: %(error)s"), error, name=backup.name) from None
    if copied != backup.sha256:
        raise BackupCorrupt(
            _("The copy of %(name)s in %(storage)s reads back with sha256 %(found)s, not %(expected)s; it was not kept as a valid copy.")
            % {"name": backup.name, "storage": describe_storage(), "found": copied, "expected": backup.sha256}
        )
    metadata = {key: value for key, value in backup.metadata.items() if key not in ("verification", "off_host")}
    try:
        _replace(storage, name + ".json", ContentFile(metadata_bytes(metadata)))
    except Exception as error:
        raise _failure(_("Could not copy the metadata of %(name)s to %(storage)s: %(error)s"), error, name=backup.name) from None
    logger.info("copied %s to %s as %s (sha256 checked)", backup.name, describe_storage(), name)


def copy_new_backup(backup) -> None:
    """create_backup's last step: a failed copy is logged and noted in the metadata, never raised.

    The backup itself is good; losing the off-host copy must not lose it (or fail a deploy).
    The metadata's ``off_host`` is what the deploy's warning and BackupFreshness read.
    """
    if not configured():
        return
    outcome = {"storage": ops_settings.BACKUP_STORAGE, "at": timezone.now().isoformat(), "ok": True, "error": ""}
    try:
        copy_off_host(backup)
    except DeployOpsError as error:
        outcome.update(ok=False, error=str(error))
        logger.warning("%s was not copied off the host: %s", backup.name, error)
    backup.metadata["off_host"] = outcome
    write_metadata(backup.path, backup.metadata)


def list_remote() -> list[RemoteCopy]:
    """Every backup in the storage, newest first (unfinished copies, without metadata, last)."""
    storage = backup_storage()
    prefix = ops_settings.BACKUP_STORAGE_PREFIX.strip("/")
    try:
        _folders, files = storage.listdir(prefix)
    except FileNotFoundError:
        return []
    except Exception as error:
        raise _failure(_("Could not list the backups in %(storage)s: %(error)s"), error) from None
    present = set(files)
    found = []
    for filename in files:
        if NAME_PATTERN.match(filename):
            metadata = _read_remote_metadata(storage, remote_name(filename)) if filename + ".json" in present else None
            found.append(RemoteCopy(filename, metadata))
    return sorted(found, key=lambda copy: (copy.complete, copy.created_at or timezone.now(), copy.name), reverse=True)


def _read_remote_metadata(storage, name: str) -> dict | None:
    try:
        with storage.open(name + ".json", "rb") as remote:
            metadata = json.loads(remote.read())
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable metadata %s in %s: %s", name, describe_storage(), error)
        return None
    return metadata if isinstance(metadata, dict) else None


def verify_remote(copy: RemoteCopy) -> None:
    """Reads the whole copy back; raises BackupCorrupt when it is not what was sent."""
    storage = backup_storage()
    if not copy.complete:
        raise BackupCorrupt(
            _("The copy of %(name)s in %(storage)s has no metadata: its upload never finished.")
            % {"name": copy.name, "storage": describe_storage()}
        )
    try:
        found = remote_sha256(storage, remote_name(copy.name))
    except Exception as error:
        raise _failure(_("Could not read %(name)s from %(storage)s: %(error)s"), error, name=copy.name) from None
    if found != copy.sha256:
        raise BackupCorrupt(
            _("The copy of %(name)s in %(storage)s is damaged: its sha256 is %(found)s but the metadata recorded %(expected)s.")
            % {"name": copy.name, "storage": describe_storage(), "found": found, "expected": copy.sha256}
        )


def delete_remote(copy: RemoteCopy) -> None:
    storage = backup_storage()
    name = remote_name(copy.name)
    try:
        storage.delete(name)
        storage.delete(name + ".json")
    except Exception as error:
        raise _failure(_("Could not delete %(name)s from %(storage)s: %(error)s"), error, name=copy.name) from None
    logger.info("pruned the copy of %s in %s", copy.name, describe_storage())


def fetch(name: str, directory: Path) -> Path:
    """Bring the copy of ``name`` back into ``directory``, checked against its sha256; returns its path.

    The file is written under a temporary name and moved into place only once its checksum
    matched, metadata first, as create_backup does.
    """
    storage = backup_storage()
    copy = next((found for found in list_remote() if found.name == name), None)
    if copy is None:
        raise BackupNotFound(
            _("No backup %(name)r in %(folder)s, nor in %(storage)s.")
            % {"name": name, "folder": ops_settings.backup_dir, "storage": describe_storage()}
        )
    if not copy.complete:
        raise BackupCorrupt(
            _("The copy of %(name)s in %(storage)s has no metadata: its upload never finished; it cannot be trusted.")
            % {"name": name, "storage": describe_storage()}
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".partial-", dir=directory)  # mode 0600
    digest = hashlib.sha256()
    try:
        with os.fdopen(descriptor, "wb") as local:
            for piece in read_pieces(storage, remote_name(name)):
                digest.update(piece)
                local.write(piece)
            local.flush()
            os.fsync(local.fileno())
        if digest.hexdigest() != copy.sha256:
            raise BackupCorrupt(
                _("The copy of %(name)s in %(storage)s is damaged: its sha256 is %(found)s but the metadata recorded %(expected)s.")
                % {"name": name, "storage": describe_storage(), "found": digest.hexdigest(), "expected": copy.sha256}
            )
        target = directory / name
        write_metadata(target, dict(copy.metadata or {}, fetched_from=ops_settings.BACKUP_STORAGE))
        os.replace(temporary, target)
    except BackupError:
        raise
    except Exception as error:
        raise _failure(_("Could not fetch %(name)s from %(storage)s: %(error)s"), error, name=name) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
    logger.info("fetched %s from %s (sha256 checked)", name, describe_storage())
    return target
