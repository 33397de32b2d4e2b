"""One manner for every management command: how they confirm, list backups and print JSON.

- **Confirmation.** A command that changes the site or its database (``deploy``, ``rollback``
  and ``backups restore``) asks on a terminal; without a terminal it refuses (exit 3, nothing
  changed) unless ``--noinput`` is given. ``--dry-run`` never asks. ``backups create`` and
  ``backups prune`` do not ask: they are what a scheduler runs, one only adds a file and the
  other deletes only what the retention rules allow (docs/BACKUPS.md).
- **Backups listed** by ``backups list``, ``rollback --list-backups`` and ``rollback --status``
  are one :class:`BackupListing`: one line format, and ``dataclasses.asdict`` for ``--json``.
- **Django's common options** (``-v``, ``--no-color``, ``--settings``, …) are accepted after a
  subcommand too (:func:`accept_common_options`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from . import humanize, progress
from .backups import Backup
from .exceptions import EXIT_REFUSED

VERIFIED = {True: gettext_noop("verified"), False: gettext_noop("FAILED verification"), None: gettext_noop("not verified")}


def confirm_or_refuse(interactive: bool, question: str, action: str) -> None:
    """Ask ``question`` on a terminal; refuse (CommandError, exit 3) on no, or when there is no terminal.

    ``action`` completes "Refusing to … without confirmation" ("deploy", "roll back", "restore").
    """
    if not interactive:
        return
    refuse_without_terminal(action)
    if not ask(question):
        raise CommandError(_("Cancelled at the confirmation prompt; nothing was changed."), returncode=EXIT_REFUSED)


def refuse_without_terminal(action: str) -> None:
    if not sys.stdin.isatty():
        raise CommandError(
            _("Refusing to %(action)s without confirmation: stdin is not a terminal. Pass --noinput to %(action)s anyway.")
            % {"action": action},
            returncode=EXIT_REFUSED,
        )


def ask(question: str) -> bool:
    """A yes/no question on the terminal; Ctrl-D or anything but y/yes is a no."""
    try:
        # The prompt's letters are translated ("[s/N]"); English y/yes is accepted in every language.
        answer = input(_("%(question)s [y/N] ") % {"question": question}).strip().lower()
        return answer in ("y", "yes", _("y"), _("yes"))
    except EOFError:
        print()
        return False


@dataclass(frozen=True)
class BackupListing:
    """A backup as every command lists it (the text line and the --json object)."""

    name: str
    path: str
    created_at: str | None
    age: str
    age_seconds: int | None
    size: int
    size_display: str
    engine: str | None
    database: str
    commit: str
    compression: str
    encrypted: bool
    sha256: str | None
    verified: bool | None
    legacy: bool

    @classmethod
    def of(cls, backup: Backup) -> BackupListing:
        created = backup.created_at
        return cls(
            name=backup.name,
            path=str(backup.path),
            created_at=created.isoformat() if created else None,
            age=humanize.age(created),
            age_seconds=int((timezone.now() - created).total_seconds()) if created else None,
            size=backup.size,
            size_display=humanize.size(backup.size),
            engine=backup.engine,
            database=backup.database,
            commit=backup.commit,
            compression=backup.compression,
            encrypted=backup.encrypted,
            sha256=backup.sha256,
            verified=backup.verified,
            legacy=backup.metadata is None,
        )

    def line(self) -> str:
        state = _(VERIFIED[self.verified]) + (" " + _("(legacy, no checksum)") if self.legacy else "")
        return "  ".join(
            (
                self.name,
                f"{_('%(age)s ago') % {'age': self.age}:<22}",
                f"{self.size_display:>9}",
                self.engine or "?",
                self.database or "-",
                self.commit[:12] or "-",
                state,
            )
        )

    def as_json(self) -> dict:
        return asdict(self)


def backup_listing(backups: list[Backup]) -> list[BackupListing]:
    return [BackupListing.of(backup) for backup in backups]


@contextlib.contextmanager
def shown_work(command, verbosity: int):
    """What a command shows while it works: nothing extra at -v 0 (not even progress), a long
    stage's newest output line at -v 2, every external command as it starts at -v 3 (on stderr,
    secrets masked)."""
    with contextlib.ExitStack() as stack:
        if verbosity == 0:
            stack.enter_context(progress.silenced())
        if verbosity >= 2:
            stack.enter_context(progress.last_lines_shown())
        if verbosity >= 3:
            stack.enter_context(progress.echo_commands(command.stderr.write))
        yield


def dumps(data) -> str:
    """Every --json output: indented, and dates as ISO strings."""
    return json.dumps(data, indent=2, default=str)


# Django's options (BaseCommand.create_parser) that a subcommand accepts as well, with SUPPRESS
# defaults so that one given before the subcommand is not overwritten.
COMMON_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("-v", "--verbosity"), {"type": int, "choices": [0, 1, 2, 3]}),
    (("--settings",), {}),
    (("--pythonpath",), {}),
    (("--traceback",), {"action": "store_true"}),
    (("--no-color",), {"action": "store_true"}),
    (("--force-color",), {"action": "store_true"}),
    (("--skip-checks",), {"action": "store_true"}),
    (("--lang",), {}),
]


def accept_common_options(subparser: argparse.ArgumentParser) -> None:
    for flags, keywords in COMMON_OPTIONS:
        subparser.add_argument(*flags, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **keywords)
