"""``manage.py backups``: create, list, verify, prune and restore database backups.

Exit codes: 0 done; 2 failed (the database is unchanged); 3 refused before anything changed
(bad backup, wrong engine, unknown name, no confirmation, a deploy or rollback holds the lock).
``restore`` is a recovery like a rollback: it takes the deploy lock and leaves a ``restore`` record.
"""

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from deploy_ops import backups, encryption, humanize, retention, storage
from deploy_ops.cli import accept_common_options, backup_listing, confirm_or_refuse, dumps, shown_work
from deploy_ops.compression import CHOICES
from deploy_ops.conf import ops_settings
from deploy_ops.exceptions import EXIT_REFUSED, BackupCorrupt, DeployOpsError
from deploy_ops.management.base import TranslatedCommand


def local_verification_note(backup: backups.Backup) -> str:
    if backup.metadata is None:
        return " " + _("(legacy: no checksum to compare, decompressed and format-checked only)")
    if backup.encrypted and not encryption.can_decrypt():
        return " " + _("(encrypted: checksum only; set BACKUP_AGE_IDENTITY_FILE to decompress and format-check too)")
    return ""


def prune_summary(local: int, remote: int | None, dry_run: bool) -> str:
    """The last line of a prune; ``remote`` is None when no off-host storage is configured."""
    if remote is None:
        if dry_run:
            return ngettext("Would delete %(local)d backup.", "Would delete %(local)d backups.", local) % {"local": local}
        return ngettext("Deleted %(local)d backup.", "Deleted %(local)d backups.", local) % {"local": local}
    counts = {"local": local, "remote": remote}
    if dry_run:
        return _("Would delete %(local)d backup(s) and %(remote)d off-host cop(y/ies).") % counts
    return _("Deleted %(local)d backup(s) and %(remote)d off-host cop(y/ies).") % counts


class Command(TranslatedCommand):
    # Django accepts a lazy help and shows it in the active language; django-stubs types it str.
    help = gettext_lazy("Database backups: create, list, verify, prune, restore.")  # type: ignore[assignment]
    requires_system_checks = []

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{create,list,verify,prune,restore}")

        create = actions.add_parser("create", help=gettext_lazy("Back up the database now; prints the new file's path."))
        create.add_argument(
            "--database", metavar="ALIAS", help=gettext_lazy("The DATABASES alias (default: DEPLOY_OPS['BACKUP_DATABASE']).")
        )
        create.add_argument("--compress", choices=CHOICES, help=gettext_lazy("Compression (default: DEPLOY_OPS['BACKUP_COMPRESSION'])."))
        create.add_argument(
            "--prune",
            action="store_true",
            help=gettext_lazy("Then prune old backups by the retention rules, local and off-host (the one command a scheduler runs)."),
        )
        create.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help=gettext_lazy(
                "When a deploy or rollback holds the lock, wait this long for it; then skip, saying so (exit 3). Default: skip at once."
            ),
        )

        listing = actions.add_parser("list", help=gettext_lazy("Backups, newest first."))
        listing.add_argument("--json", action="store_true", help=gettext_lazy("Machine-readable output."))
        listing.add_argument(
            "--remote", action="store_true", help=gettext_lazy("The copies in DEPLOY_OPS['BACKUP_STORAGE'] instead of the local ones.")
        )

        verify = actions.add_parser("verify", help=gettext_lazy("Checksum, full decompress and format check."))
        which = verify.add_mutually_exclusive_group(required=True)
        which.add_argument("name", nargs="?", metavar="NAME|PATH")
        which.add_argument("--all", action="store_true", help=gettext_lazy("Verify every backup."))
        which.add_argument(
            "--remote",
            action="store_true",
            help=gettext_lazy("Read back every copy in DEPLOY_OPS['BACKUP_STORAGE'] and compare its sha256."),
        )

        prune = actions.add_parser(
            "prune",
            help=gettext_lazy("Delete old backups (local and off-host), keeping the newest valid ones and those recent releases need."),
        )
        prune.add_argument(
            "--days", type=int, help=gettext_lazy("Delete backups older than this (default: DEPLOY_OPS['BACKUP_RETENTION_DAYS']).")
        )
        prune.add_argument(
            "--keep", type=int, help=gettext_lazy("Always keep this many newest valid backups (default: DEPLOY_OPS['BACKUP_KEEP']).")
        )
        prune.add_argument("--dry-run", action="store_true", help=gettext_lazy("Say what would be deleted; delete nothing."))

        restore = actions.add_parser("restore", help=gettext_lazy("Replace the database with a backup (a safety backup is taken first)."))
        restore.add_argument("name", metavar="NAME|PATH")
        restore.add_argument(
            "--database", metavar="ALIAS", help=gettext_lazy("The DATABASES alias (default: DEPLOY_OPS['BACKUP_DATABASE']).")
        )
        restore.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive", help=gettext_lazy("Do not ask for confirmation.")
        )
        restore.add_argument(
            "--no-safety-backup",
            action="store_false",
            dest="safety_backup",
            help=gettext_lazy("Skip the safety backup of the current database (only when you have just made one)."),
        )
        verify.add_argument("--json", action="store_true", help=gettext_lazy("Machine-readable output: one object per backup checked."))
        prune.add_argument("--json", action="store_true", help=gettext_lazy("Machine-readable output: what was (or would be) deleted."))
        for subparser in (create, listing, verify, prune, restore):
            accept_common_options(subparser)

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        try:
            with shown_work(self, self.verbosity):
                getattr(self, "handle_" + options["action"])(options)
        except DeployOpsError as error:
            raise CommandError(str(error), returncode=error.exit_code) from error

    def handle_create(self, options):
        with retention.lock_for_backup(options["wait"]):
            backup = backups.create_backup(database=options["database"], compression=options["compress"])
            cleanup = retention.apply_retention() if options["prune"] and ops_settings.BACKUP_AUTO_CLEANUP else None
        if options["verbosity"] >= 2:
            self.stderr.write(_("%(size)s, sha256 %(sha256)s") % {"size": humanize.size(backup.size), "sha256": backup.sha256})
        assert backup.metadata is not None, "create_backup writes the metadata of what it made"
        for blocker in backup.metadata.get("restore_blockers", []):
            self.stderr.write(
                self.style.WARNING(_("deploy_ops cannot restore this backup as things stand: %(blocker)s.") % {"blocker": blocker})
            )
        copy_error = (backup.metadata.get("off_host") or {}).get("error")
        if copy_error:
            self.stderr.write(self.style.WARNING(_("Not copied off the host: %(error)s") % {"error": copy_error}))
        if cleanup is not None:
            self.stderr.write(cleanup.describe())
        elif options["prune"]:
            self.stderr.write(_("Not pruned: DEPLOY_OPS['BACKUP_AUTO_CLEANUP'] is off."))
        self.stdout.write(str(backup.path))

    def handle_list(self, options):
        if options["remote"]:
            return self.list_remote(options)
        found = backup_listing(backups.list_backups())
        if options["json"]:
            self.stdout.write(dumps([listing.as_json() for listing in found]))
            return
        if not found:
            self.stdout.write(_("No backups in %(where)s.") % {"where": ops_settings.backup_dir})
            return
        for listing in found:
            self.stdout.write(listing.line())

    def list_remote(self, options):
        copies = storage.list_remote()
        if options["json"]:
            rows = [
                {
                    "name": c.name,
                    "complete": c.complete,
                    "created_at": c.created_at and c.created_at.isoformat(),
                    "size": c.size,
                    "sha256": c.sha256,
                }
                for c in copies
            ]
            self.stdout.write(dumps(rows))
            return
        if not copies:
            self.stdout.write(_("No backups in %(where)s.") % {"where": storage.describe_storage()})
            return
        for copy in copies:
            if not copy.complete:
                self.stdout.write(f"{copy.name}  " + _("unfinished copy (no metadata)"))
                continue
            age = _("%(age)s ago") % {"age": humanize.age(copy.created_at)}
            self.stdout.write(f"{copy.name}  {age:<22}  {humanize.size(copy.size or 0):>9}  sha256 {(copy.sha256 or '–')[:12]}")

    def handle_verify(self, options):
        if options["remote"]:
            copies = storage.list_remote()
            return self.verify_each(
                copies,
                storage.verify_remote,
                lambda copy: " " + _("(off-host copy, sha256 read back)"),
                storage.describe_storage(),
                options,
                failures=lambda failed, total: ngettext(
                    "%(failed)d of %(total)d off-host copy failed verification: %(names)s",
                    "%(failed)d of %(total)d off-host copies failed verification: %(names)s",
                    total,
                ),
            )
        targets = backups.list_backups() if options["all"] else [backups.find_backup(options["name"])]
        self.verify_each(
            targets,
            backups.verify_backup,
            local_verification_note,
            str(ops_settings.backup_dir),
            options,
            failures=lambda failed, total: ngettext(
                "%(failed)d of %(total)d backup failed verification: %(names)s",
                "%(failed)d of %(total)d backups failed verification: %(names)s",
                total,
            ),
        )

    def verify_each(self, targets, verify, note, where: str, options, failures) -> None:
        """``failures(failed, total)``: the sentence that ends a verification with failures."""
        if not targets and not options["json"]:
            self.stdout.write(_("No backups in %(where)s.") % {"where": where})
            return
        failed, results = [], []
        for target in targets:
            try:
                verify(target)
            except BackupCorrupt as error:
                failed.append(target.name)
                results.append({"name": target.name, "ok": False, "error": str(error), "note": ""})
                if not options["json"]:
                    self.stderr.write(self.style.ERROR(_("FAILED %(error)s") % {"error": error}))
                continue
            results.append({"name": target.name, "ok": True, "error": "", "note": note(target).strip(" ()")})
            if not options["json"]:
                self.stdout.write(self.style.SUCCESS(_("OK %(name)s") % {"name": target.name}) + note(target))
        if options["json"]:
            self.stdout.write(dumps(results))
        if failed:
            raise CommandError(
                failures(len(failed), len(targets)) % {"failed": len(failed), "total": len(targets), "names": ", ".join(failed)},
                returncode=EXIT_REFUSED,
            )

    def handle_prune(self, options):
        cleanup = retention.apply_retention(days=options["days"], keep=options["keep"], dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(
                dumps(
                    {
                        "dry_run": options["dry_run"],
                        "deleted": cleanup.local,
                        "deleted_off_host": cleanup.remote,
                        "kept_for_recent_releases": sorted(cleanup.protected),
                        "warnings": cleanup.warnings,
                    }
                )
            )
            return
        dry_run = options["dry_run"]
        for name in cleanup.local:
            self.stdout.write((_("Would delete %(name)s") if dry_run else _("Deleted %(name)s")) % {"name": name})
        for name in cleanup.remote:
            self.stdout.write(
                (_("Would delete the off-host copy of %(name)s") if dry_run else _("Deleted the off-host copy of %(name)s"))
                % {"name": name}
            )
        for warning in cleanup.warnings:
            self.stderr.write(self.style.WARNING(_("Warning: %(warning)s") % {"warning": warning}))
        self.stdout.write(prune_summary(len(cleanup.local), len(cleanup.remote) if storage.configured() else None, dry_run))

    def handle_restore(self, options):
        backup = backups.find_backup(options["name"])
        alias = options["database"] or ops_settings.BACKUP_DATABASE
        confirm_or_refuse(
            options["interactive"],
            _("This replaces the database %(alias)r with %(backup)s (a safety backup is taken first). Restore?")
            % {"alias": alias, "backup": backup.name},
            _("restore"),
        )
        from deploy_ops.restore import restore_as_recovery  # only a restore pays the imports of the lock, records and notifications

        # A recovery like a rollback: under the deploy lock (exit 3 while a deploy runs), recorded and notified.
        result = restore_as_recovery(backup, database=options["database"], safety_backup=options["safety_backup"], report=self.report)
        for warning in result.warnings:
            self.stderr.write(self.style.WARNING(_("Warning: %(warning)s") % {"warning": warning}))
        if result.safety_backup:
            self.stdout.write(_("Safety backup of the previous database: %(path)s") % {"path": result.safety_backup.path})
        self.stdout.write(self.style.SUCCESS(_("Restored %(backup)s into %(alias)r.") % {"backup": backup.name, "alias": alias}))

    def report(self, line: str, level: int = 1) -> None:
        if self.verbosity >= level:
            self.stdout.write(line)
