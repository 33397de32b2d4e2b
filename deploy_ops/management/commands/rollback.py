"""``manage.py rollback``: manual recovery, by flags or through an interactive menu.

Exit codes as for deploy: 0 done; 2 failed (or not verified) and a human is needed; 3 refused before
anything changed; 4 an unexpected error; 5 a usage error.  Never 1, which only a deploy's rollback means.
"""

import sys

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from deploy_ops import rollback
from deploy_ops.backups import list_backups
from deploy_ops.cli import BackupListing, ask, backup_listing, confirm_or_refuse, dumps, shown_work
from deploy_ops.exceptions import EXIT_OK, EXIT_REFUSED, DeployOpsError
from deploy_ops.management.base import OpsCommand
from deploy_ops.proxy import MAINTENANCE
from deploy_ops.recovery import command_progress

MENU = [
    ("1", "List recent commits"),
    ("2", "List backups"),
    ("3", "Roll back the code to a commit"),
    ("4", "Restore a backup"),
    ("5", "Full rollback (code and database)"),
    ("6", "Quick rollback (last good release and its backup)"),
    ("7", "System status"),
    ("q", "Quit"),
]


# Whether a rollback to the commit starts its kept images or has to build (--list-commits).
# None: the runtime keeps no images (commands), or the engine could not be asked.
IMAGE_MARKS = {True: "images kept  ", False: "would build  ", None: ""}


class Command(OpsCommand):
    help = "Roll back code and/or database; without options on a terminal, an interactive menu."
    requires_system_checks = []

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--quick", action="store_true", help="The last release that deployed successfully, with the backup taken when it was left.")
        action.add_argument("--commit", metavar="SHA", help="Roll the code back to this commit (the database stays).")
        action.add_argument("--backup", metavar="NAME|PATH", help="Restore this backup (the code stays).")
        action.add_argument("--full", nargs=2, metavar=("SHA", "NAME|PATH"), help="Code to SHA and database to the backup.")
        action.add_argument("--status", action="store_true", help="Current commit, services, backups, lock and recent records.")
        action.add_argument("--list-commits", action="store_true", help="Recent commits of the deployed branch and their deploys.")
        action.add_argument("--list-backups", action="store_true", help="Backups, newest first.")
        parser.add_argument("-n", type=int, default=15, help="How many commits --list-commits shows.")
        parser.add_argument("--json", action="store_true", help="Machine-readable output for --status and the lists.")
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive", help="Do not ask for confirmation.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done, and why; change nothing.")

    def handle(self, *args, **options):
        self.options = options
        with shown_work(self, options["verbosity"]):
            return self.dispatch(options)

    def dispatch(self, options):
        if options["status"]:
            return self.show_status()
        if options["list_commits"]:
            return self.show_commits(options["n"])
        if options["list_backups"]:
            return self.show_backups()
        if options["quick"]:
            return self.carry_out(rollback.plan_quick())
        if options["commit"]:
            return self.carry_out(rollback.plan_commit(options["commit"]))
        if options["backup"]:
            return self.carry_out(rollback.plan_backup(options["backup"]))
        if options["full"]:
            return self.carry_out(rollback.plan_full(*options["full"]))
        if not sys.stdin.isatty():
            # Nobody can answer a menu here; say how to use it instead of waiting forever.
            usage = self.create_parser("manage.py", "rollback").format_usage().strip()
            raise CommandError(
                "No option given and no terminal for the menu. Use --quick, --commit SHA, --backup NAME, "
                f"--full SHA NAME, --status, --list-commits or --list-backups (see --help).\n{usage}",
                returncode=EXIT_REFUSED,
            )
        return self.menu()

    # -- doing it ----------------------------------------------------------------------------
    def carry_out(self, plan, in_menu=False):
        self.stdout.write("Rollback plan:")
        for line in plan.describe():
            self.stdout.write(f"  {line}")
        if self.options["dry_run"]:
            self.stdout.write("Dry run: nothing was changed.")
            return
        if in_menu:
            if not ask("Go ahead?"):
                self.stdout.write("Cancelled; nothing was changed.")
                return
        else:
            # The one policy (deploy_ops.cli): ask on a terminal, refuse without one unless --noinput.
            confirm_or_refuse(self.options["interactive"], _("Go ahead?"), _("roll back"))
        progress = command_progress(self.stdout, self.style, self.options["verbosity"])
        exit_code = rollback.execute(plan, report=self.report, progress=progress)
        if exit_code != EXIT_OK:
            raise CommandError("The rollback failed: a human is needed. See `manage.py rollback --status`.", returncode=exit_code)

    def report(self, line, level=1):
        if self.options["verbosity"] >= level:
            self.stdout.write(line)

    # -- looking -----------------------------------------------------------------------------
    def show_status(self):
        found = rollback.status()
        if self.options["json"]:
            self.stdout.write(dumps(found))
            return
        head = found["current_commit"]
        self.stdout.write(f"Project {found['project']} ({found['environment']})")
        self.stdout.write(f"Current commit: {head['sha'][:12]} {head['summary']}")
        last = found["last_successful_deploy"]
        if last:
            marker = "the current commit" if found["current_is_last_successful"] else "NOT the current commit"
            self.stdout.write(f"Last successful deploy: {last['to_commit'][:12]} at {last['started_at']} ({marker})")
        else:
            self.stdout.write("Last successful deploy: none on record")
        self.stdout.write("Services:" if found["services"] else f"Services: {found['services_error'] or 'none reported by the runtime'}")
        for service in found["services"]:
            self.stdout.write(f"  {service['name']}: {service['state']}{' / ' + service['health'] if service['health'] else ''}")
        self.stdout.write("Newest backups:" if found["backups"] else "Newest backups: none")
        for backup in found["backups"]:
            self.stdout.write(f"  {BackupListing(**backup).line()}")
        self.stdout.write(f"Lock: {found['lock']['description']}")
        if found["proxy_routes_to"] == MAINTENANCE:
            self.stdout.write(self.style.ERROR(
                "Proxy: answering 503 with its maintenance page (a deploy or rollback stopped the site and did not finish; "
                "`manage.py rollback` or a deploy sends the traffic back once a release is verified)."
            ))
        elif found["proxy_routes_to"]:
            self.stdout.write(f"Proxy: sends the traffic to {found['proxy_routes_to']}")
        if found["work_left_behind"]:
            self.stdout.write(self.style.ERROR("Work of a run that died is still going on (the next deploy or rollback stops it first):"))
            for line in found["work_left_behind"]:
                self.stdout.write(f"  {line}")
        self.stdout.write("Recent records:")
        for record in found["recent_records"]:
            failed = f" (failed at {record['failed_stage']})" if record["failed_stage"] else ""
            self.stdout.write(f"  {record['started_at'][:19]}  {record['kind']:<8} {record['status']:<24} {record['to_commit'][:12]}{failed}")

    def show_commits(self, count):
        commits = rollback.recent_commits(count)
        if self.options["json"]:
            self.stdout.write(dumps(commits))
            return
        for commit in commits:
            marks = ", ".join(f"{d['kind']} {d['status']} {d['at'][:16]}" for d in commit["deploys"])
            current = "* " if commit["current"] else "  "
            images = IMAGE_MARKS[commit["images_kept"]]
            self.stdout.write(f"{current}{commit['sha'][:12]}  {images}{commit['summary'][:60]:<60}  {marks}")

    def show_backups(self):
        backups = backup_listing(list_backups())
        if self.options["json"]:
            self.stdout.write(dumps([backup.as_json() for backup in backups]))
            return
        if not backups:
            self.stdout.write(_("No backups."))
        for backup in backups:
            self.stdout.write(backup.line())

    # -- the menu ----------------------------------------------------------------------------
    def menu(self):
        while True:
            self.stdout.write("\ndeploy_ops rollback")
            for key, label in MENU:
                self.stdout.write(f"  {key}) {label}")
            try:
                choice = input("Choose: ").strip().lower()
                if choice in ("q", "quit", "0", ""):
                    return
                self.menu_choice(choice)
            except DeployOpsError as error:
                self.stdout.write(self.style.ERROR(str(error)))
            except EOFError:  # Ctrl-D quits, like q
                self.stdout.write("")
                return

    def menu_choice(self, choice):
        if choice == "1":
            self.show_commits(self.options["n"])
        elif choice == "2":
            self.show_backups()
        elif choice == "3":
            self.carry_out(rollback.plan_commit(input("Commit (sha, tag or branch): ").strip()), in_menu=True)
        elif choice == "4":
            self.carry_out(rollback.plan_backup(input("Backup (name or path): ").strip()), in_menu=True)
        elif choice == "5":
            commit = input("Commit (sha, tag or branch): ").strip()
            backup = input("Backup (name or path): ").strip()
            self.carry_out(rollback.plan_full(commit, backup), in_menu=True)
        elif choice == "6":
            self.carry_out(rollback.plan_quick(), in_menu=True)
        elif choice == "7":
            self.show_status()
        else:
            self.stdout.write(f"No such choice: {choice!r}")
