"""Writing the audit trail so that it survives a database restore.

Every save appends a full snapshot of the record (with its stages) as one JSON line to an
append-only journal, ``<LOG_DIR>/deployments.jsonl``, outside the database, and then writes
the record to the database.  A rollback restores a backup taken *before* the deploy began,
which erases the deploy's rows; :func:`replay_journal` runs after every restore and puts
back the newest snapshot of every record the journal holds.  The database copy is what the
admin browses; the journal is the source of truth when the two disagree.

Every text is masked (deploy_ops.secrets) before it is kept, in memory, in the journal and in
the database.  The journal is 0600 in a 0700 LOG_DIR, and :func:`compact_journal` (run by the
lock when a run ends) keeps it to about one snapshot per record.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .conf import ops_settings
from .models import DeploymentRecord, DeploymentStage
from .privatefiles import open_private_append, write_atomically
from .runner import tail
from .secrets import known_secrets, mask, mask_fields

if TYPE_CHECKING:
    from .lock import LockState

logger = logging.getLogger("deploy_ops.audit")

JOURNAL_NAME = "deployments.jsonl"
RECORD_FIELDS = [field.name for field in DeploymentRecord._meta.concrete_fields]
STAGE_FIELDS = ["position", "name", "status", "started_at", "finished_at", "duration", "output_tail"]
# The free text, which may quote a release's output or a URL: masked.  Ids, statuses, commits,
# names and times are deploy_ops's own and stay exactly as they are.
RECORD_TEXT_FIELDS = ("requested_ref", "from_summary", "to_summary", "error", "rollback_reason", "warnings", "notification_failures")
STAGE_TEXT_FIELDS = ("output_tail",)


def journal_path() -> Path:
    return ops_settings.log_dir / JOURNAL_NAME


def _jsonable(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _current_user() -> str:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return ""


class Recorder:
    """Keeps one DeploymentRecord and its stages in memory and saves both places."""

    def __init__(self, kind: str, requested_ref: str = "", record: DeploymentRecord | None = None):
        self.record = record or DeploymentRecord(
            kind=kind,
            requested_ref=requested_ref,
            user=_current_user(),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=timezone.now(),
        )
        self.stages: list[DeploymentStage] = list(self.record.stages.all()) if record else []
        self._clock: dict[int, float] = {}

    # -- stages -------------------------------------------------------------------------
    def start_stage(self, name: str) -> DeploymentStage:
        stage = DeploymentStage(record=self.record, position=len(self.stages) + 1, name=name, started_at=timezone.now())
        self.stages.append(stage)
        self._clock[stage.position] = time.monotonic()
        self.save()
        return stage

    def finish_stage(self, stage: DeploymentStage, status: str, output: str = "", save: bool = True) -> None:
        stage.status = status
        stage.finished_at = timezone.now()
        stage.duration = round(time.monotonic() - self._clock.get(stage.position, time.monotonic()), 3)
        # Masked before it is cut: a tail must not keep the end of a secret whose start was cut off.
        stage.output_tail = tail(mask(output or ""), 2000)
        if save:
            self.save()

    # -- the record -----------------------------------------------------------------------
    def update(self, save: bool = True, **fields) -> None:
        for name, value in fields.items():
            setattr(self.record, name, mask(value) if name in RECORD_TEXT_FIELDS else value)
        if save:
            self.save()

    def finish(self, status: str, **fields) -> None:
        self.record.finished_at = timezone.now()
        self.record.duration = round((self.record.finished_at - self.record.started_at).total_seconds(), 3)
        self.update(status=status, **fields)

    def snapshot(self) -> dict:
        return masked_snapshot(
            {
                "record": {name: _jsonable(getattr(self.record, name)) for name in RECORD_FIELDS},
                "stages": [{name: _jsonable(getattr(stage, name)) for name in STAGE_FIELDS} for stage in self.stages],
            }
        )

    def save(self, database: bool = True) -> None:
        """Journal first (it must never be lost), then the database (best effort)."""
        snapshot = self.snapshot()
        append_to_journal(snapshot)
        if database:
            write_snapshot(snapshot)


def masked_snapshot(snapshot: dict, secrets: list[str] | None = None) -> dict:
    """The snapshot with its free text masked (see deploy_ops.secrets)."""
    secrets = known_secrets() if secrets is None else secrets
    return {
        **snapshot,
        "record": mask_fields(snapshot["record"], RECORD_TEXT_FIELDS, secrets),
        "stages": [mask_fields(stage, STAGE_TEXT_FIELDS, secrets) for stage in snapshot.get("stages", [])],
    }


def append_to_journal(snapshot: dict) -> None:
    path = journal_path()
    line = json.dumps(masked_snapshot(snapshot), sort_keys=True) + "\n"
    if not _ends_a_line(path):
        line = "\n" + line  # a torn last line (a crash mid-write) must not swallow this one
    with open_private_append(path) as journal:
        journal.write(line)
        journal.flush()
        os.fsync(journal.fileno())


def _ends_a_line(path: Path) -> bool:
    try:
        with open(path, "rb") as journal:
            journal.seek(-1, os.SEEK_END)
            return journal.read(1) == b"\n"
    except FileNotFoundError:
        return True
    except OSError:  # empty: seeking before the start
        return True


def write_snapshot(snapshot: dict) -> bool:
    """Upsert one record and replace its stages; False (and a warning) if the database is unreachable."""
    fields = {name: _restore_value(name, value) for name, value in snapshot["record"].items()}
    record_id = fields.pop("id")
    try:
        with transaction.atomic():
            record, _ = DeploymentRecord.objects.update_or_create(id=record_id, defaults=fields)
            record.stages.all().delete()
            DeploymentStage.objects.bulk_create(
                DeploymentStage(record=record, **{name: _restore_value(name, value) for name, value in stage.items()})
                for stage in snapshot["stages"]
            )
    except DatabaseError as error:
        logger.warning("audit record %s kept in the journal only: %s", record_id, error)
        return False
    return True


def _restore_value(name: str, value):
    if name in ("started_at", "finished_at") and isinstance(value, str):
        return parse_datetime(value)
    return value


def read_journal() -> dict[str, dict]:
    """The newest snapshot of every record in the journal, by record id, oldest record first."""
    path = journal_path()
    newest: dict[str, dict] = {}
    if not path.exists():
        return newest
    with open(path, encoding="utf-8") as journal:
        for number, line in enumerate(journal, 1):
            try:
                snapshot = json.loads(line)
            except json.JSONDecodeError:
                # A torn last line after a crash must not hide every other record.
                logger.warning("%s line %d is not JSON; skipped", path, number)
                continue
            newest[snapshot["record"]["id"]] = snapshot
    return newest


def replay_journal() -> int:
    """Put every journaled record back into the database; returns how many were written."""
    written = 0
    for snapshot in read_journal().values():
        written += write_snapshot(snapshot)
    return written


def compact_journal() -> bool:
    """Rewrite the journal with only what replay needs; returns whether it changed.

    A finished record keeps its newest snapshot; a record whose newest snapshot is still
    running keeps every snapshot (what it did so far, for whoever finds it interrupted).  No
    record is ever dropped, and a line that is not JSON is kept as it is, for a human to read.
    Snapshots an older version wrote are masked on the way.  The new journal replaces the old
    one at once (a crash leaves the old one).  Call it only under the deploy lock: a line
    appended meanwhile by another process would be lost.
    """
    path = journal_path()
    try:
        original = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    lines: dict[object, list[str]] = {}
    finished: set[object] = set()
    secrets = known_secrets()
    for line in original.splitlines():
        if not line.strip():
            continue
        try:
            snapshot = json.loads(line)
            key, status = snapshot["record"]["id"], snapshot["record"]["status"]
            masked = json.dumps(masked_snapshot(snapshot, secrets), sort_keys=True)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            lines[object()] = [line]
            continue
        lines.setdefault(key, []).append(masked)
        if status == DeploymentRecord.Status.RUNNING:
            finished.discard(key)
        else:
            finished.add(key)
    kept = [line for key, found in lines.items() for line in (found[-1:] if key in finished else found)]
    compacted = "".join(line + "\n" for line in kept)
    if compacted == original:
        return False
    write_atomically(path, compacted.encode("utf-8"))
    logger.info("journal compacted: %d lines to %d", len(original.splitlines()), len(kept))
    return True


def mark_interrupted(state: LockState) -> None:
    """The record of a deploy whose process died is closed as interrupted, in journal and database."""
    record_id = state.holder.get("record")
    snapshot = read_journal().get(record_id) if record_id else None
    if not snapshot or snapshot["record"]["status"] != DeploymentRecord.Status.RUNNING:
        return
    now = timezone.now().isoformat()
    running = [stage["name"] for stage in snapshot["stages"] if stage["status"] == DeploymentStage.Status.RUNNING]
    snapshot["record"].update(
        status=DeploymentRecord.Status.INTERRUPTED,
        finished_at=now,
        failed_stage=running[-1] if running else snapshot["record"].get("failed_stage", ""),
        error=f"Process {state.holder.get('pid')} on {state.holder.get('host')} died mid-run; found by a later run.",
    )
    for stage in snapshot["stages"]:
        if stage["status"] == DeploymentStage.Status.RUNNING:
            stage.update(status=DeploymentStage.Status.FAILED, finished_at=now, output_tail="interrupted")
    append_to_journal(snapshot)
    write_snapshot(snapshot)
