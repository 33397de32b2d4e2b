"""Backups encrypted at rest in the ``age`` format (https://age-encryption.org/v1), streamed.

pyrage (the Rust ``rage`` implementation, wheels for Linux, macOS and Windows) does the work in
process: no tool to install on the host, and its ``encrypt_io``/``decrypt_io`` read and write in
small pieces, so memory stays flat whatever the size of the dump.  Files it writes are ordinary
age files: ``age -d -i key.txt backup.sql.gz.age | gunzip | psql`` restores one by hand.

Encryption wraps the compressed stream, so the sha256 in the metadata covers the encrypted
bytes: ``verify`` checks a copy without the key, and the key is needed only to restore.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from django.utils.translation import gettext as _

from .conf import ops_settings
from .exceptions import BackupCorrupt, BackupError, ConfigurationError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

SUFFIX = ".age"
# A piece handed between the dump and the encrypting thread; a few in flight bound the memory.
_PIECES_IN_FLIGHT = 16


def _pyrage():
    try:
        import pyrage
    except ImportError:
        raise ConfigurationError(
            _("Encrypted backups need the pyrage package: pip install 'deploy-ops[encryption]' (or pip install pyrage).")
        ) from None
    return pyrage


def parse_recipients(texts: list[str]) -> list:
    """age recipients (``age1…``) or SSH public keys (``ssh-ed25519 …``, ``ssh-rsa …``)."""
    pyrage = _pyrage()
    recipients = []
    for text in texts:
        try:
            if text.startswith("ssh-"):
                recipients.append(pyrage.ssh.Recipient.from_str(text))
            else:
                recipients.append(pyrage.x25519.Recipient.from_str(text))
        except pyrage.RecipientError as error:
            raise ConfigurationError(
                _("DEPLOY_OPS['BACKUP_AGE_RECIPIENTS'] has an entry that is not an age or SSH public key: %(entry)s (%(error)s).")
                % {"entry": f"{text[:24]!r}…", "error": error}
            ) from None
    return recipients


def recipients_problem(texts: list[str]) -> str | None:
    """For the settings check: an error sentence, or None when every entry is a public key."""
    try:
        parse_recipients(texts)
    except ConfigurationError as error:
        return str(error)
    return None


def identity_path() -> Path | None:
    configured = ops_settings.BACKUP_AGE_IDENTITY_FILE
    if not configured:
        return None
    path = Path(configured)
    return path if path.is_absolute() else ops_settings.project_dir / path


def load_identities(backup_name: str) -> list:
    """The identities of BACKUP_AGE_IDENTITY_FILE; a sentence saying what to do when there are none."""
    pyrage = _pyrage()
    path = identity_path()
    if path is None:
        raise BackupError(
            _(
                "%(backup)s is encrypted, and DEPLOY_OPS['BACKUP_AGE_IDENTITY_FILE'] is not set: point it at the age identity "
                "file (AGE-SECRET-KEY-…) that matches one of the backup's recipients. Nothing was changed."
            )
            % {"backup": backup_name}
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BackupError(
            _(
                "%(backup)s is encrypted, and its identity file %(path)s cannot be read (%(error)s). "
                "Bring the key back from where you keep it (see docs/BACKUPS.md). Nothing was changed."
            )
            % {"backup": backup_name, "path": path, "error": error.strerror}
        ) from None
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            try:
                identities.append(pyrage.x25519.Identity.from_str(line))
            except pyrage.IdentityError:
                raise BackupError(
                    _("%(path)s holds a line that is not a valid age identity. Nothing was changed.") % {"path": path}
                ) from None
    if not identities:
        raise BackupError(_("%(path)s holds no age identity (a line starting AGE-SECRET-KEY-). Nothing was changed.") % {"path": path})
    return identities


class _Pipe:
    """A bounded hand-over of byte pieces from one thread to another, as a file each side can use."""

    def __init__(self):
        self.pieces: queue.Queue = queue.Queue(maxsize=_PIECES_IN_FLIGHT)
        self.leftover = b""
        self.ended = False
        self.cancelled = threading.Event()

    # The writing side.
    def write(self, data) -> int:
        if data:
            self._put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def end(self) -> None:
        self._put(None)

    def _put(self, item) -> None:
        while not self.cancelled.is_set():
            try:
                self.pieces.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise BackupError(_("the encryption stopped before the stream ended"))

    # The reading side.
    def read(self, size: int = -1) -> bytes:
        while not self.leftover and not self.ended:
            try:
                piece = self.pieces.get(timeout=0.1)
            except queue.Empty:
                if self.cancelled.is_set():
                    raise BackupError(_("the stream was abandoned before it ended")) from None
                continue
            if piece is None:
                self.ended = True
            else:
                self.leftover = piece
        if size is None or size < 0:
            size = len(self.leftover)
        taken, self.leftover = self.leftover[:size], self.leftover[size:]
        return taken

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Worker(threading.Thread):
    def __init__(self, work, name: str):
        super().__init__(name=name, daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self):
        try:
            self.work()
        except BaseException as error:  # raised again in the caller's thread
            self.error = error


@contextlib.contextmanager
def encrypting_writer(raw: SupportsWrite[bytes], recipient_texts: list[str]) -> Iterator[_Pipe]:
    """A file-like whose writes are encrypted to the recipients into ``raw``; finished on a clean exit."""
    pyrage = _pyrage()
    recipients = parse_recipients(recipient_texts)
    pipe = _Pipe()
    worker = _Worker(lambda: pyrage.encrypt_io(pipe, raw, recipients), "deploy_ops-age-encrypt")
    worker.start()
    try:
        yield pipe
        pipe.end()
    except BaseException:
        pipe.cancelled.set()  # the worker's next read raises, and it ends; its output is discarded anyway
        worker.join()
        raise
    worker.join()
    if worker.error:
        raise BackupError(_("age encryption failed: %(error)s") % {"error": worker.error}) from None


@contextlib.contextmanager
def decrypted_reader(raw: BinaryIO, backup_name: str) -> Iterator[_CheckedReader]:
    """A file-like that reads ``raw`` decrypted with the configured identity.

    A wrong key is found at the header, before the first byte comes out; the stream's own
    authentication then finds damage in any later piece.
    """
    pyrage = _pyrage()
    identities = load_identities(backup_name)
    pipe = _Pipe()

    def decrypt():
        try:
            pyrage.decrypt_io(raw, pipe, identities)
        finally:
            with contextlib.suppress(BackupError):
                pipe.end()

    worker = _Worker(decrypt, "deploy_ops-age-decrypt")
    worker.start()
    reader = _CheckedReader(pipe, worker, backup_name)
    try:
        yield reader
    finally:
        pipe.cancelled.set()
        # Drain so a worker blocked on a full pipe can finish.
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                pipe.pieces.get(timeout=0.1)
        worker.join()


class _CheckedReader:
    """Reads the pipe; when it ends, raises the decryption's error (wrong key, damaged data) if any."""

    def __init__(self, pipe: _Pipe, worker: _Worker, backup_name: str):
        self.pipe, self.worker, self.backup_name = pipe, worker, backup_name

    def read(self, size: int = -1) -> bytes:
        data = self.pipe.read(size)
        if not data:
            self.worker.join()
            if self.worker.error:
                raise describe_decrypt_error(self.worker.error, self.backup_name)
        return data


def describe_decrypt_error(error: BaseException, backup_name: str) -> BackupError:
    text = str(error)
    if "No matching keys" in text or "no identity matched" in text.lower():
        return BackupError(
            _(
                "%(backup)s cannot be decrypted with the identity in %(path)s: it was encrypted to other recipients. "
                "Use the key that matches DEPLOY_OPS['BACKUP_AGE_RECIPIENTS'] at the time of the backup. Nothing was changed."
            )
            % {"backup": backup_name, "path": identity_path()}
        )
    return BackupCorrupt(
        _("%(backup)s is damaged: the age stream does not decrypt (%(error)s). Do not restore it; use another backup.")
        % {"backup": backup_name, "error": text}
    )


def can_decrypt() -> bool:
    path = identity_path()
    return path is not None and path.is_file()


def sealed(raw: SupportsWrite[bytes], recipient_texts: list[str]):
    """What create_backup writes its compressed dump into: ``raw`` itself, or an age stream to the recipients."""
    return encrypting_writer(raw, recipient_texts) if recipient_texts else contextlib.nullcontext(raw)


def opened(raw: BinaryIO, backup):
    """``raw`` as the compressed dump: decrypted when ``backup`` is encrypted."""
    return decrypted_reader(raw, backup.name) if backup.encrypted else contextlib.nullcontext(raw)


def check_key(backup) -> None:
    """Before a restore changes anything: the identity exists and opens this backup's header."""
    with open(backup.path, "rb") as raw, decrypted_reader(raw, backup.name) as reader:
        reader.read(1)
