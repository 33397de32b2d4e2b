"""The demo: deploy_ops deploys a good release, rolls back a broken one, and shows its records.

    python -m deploy_ops.demo.run [--keep] [--dir PATH] [--lang es]

Everything happens in a throwaway sandbox (a new temporary folder, or --dir): a bare git origin
holding the sample site, a developer's clone that commits releases, and a "production" checkout
served by ``runserver`` under servectl (the commands runtime) on SQLite.  The web process is
always stopped at the end; the sandbox is removed unless --keep is given. ``--lang es`` tells the
story, and runs the site and deploy_ops's commands, in Spanish.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import django
from django.conf import settings as django_settings
from django.utils import translation
from django.utils.translation import gettext as _

from . import WEB_LOGFILE, copy_site, deploy_ops_environment, deploy_ops_source, servectl_commands, write_dotenv

BRANCH = "main"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Variables of the caller that would override the sandbox's .env (the site reads .env with setdefault).
_CALLER_ONLY = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "EXTRA_PYTHONPATH", "WEB_PORT", "LANGUAGE_CODE")

# Release 3's breakers (as in tests/fixtures/sample_site.py): a migration that rewrites every
# note, so only a database restore brings the texts back, and a /health/ that answers 500.
DATA_CHANGING_MIGRATION = """from django.db import migrations


def change(apps, schema_editor):
    apps.get_model("notes", "Note").objects.update(text="overwritten by release 3")


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.RunPython(change, migrations.RunPython.noop)]
"""
UNHEALTHY_FLAGS = '''"""Failures injected by the demo's release 3."""

EXIT_AT_START = False
LOG_STARTUP_ERROR = False
HEALTH_FAIL = True
COLLECTSTATIC_FAIL = False
'''
NOTES = ["Buy milk", "Call the plumber", "Water the plants"]
LANGUAGES = ("en", "es")


def speak(language: str) -> None:
    """The demo's own sentences in ``language``: Django's translation machinery, with no project around it."""
    if not django_settings.configured:
        locale = Path(__file__).resolve().parent.parent / "locale"
        django_settings.configure(USE_I18N=True, LANGUAGE_CODE=language, LOCALE_PATHS=[locale], INSTALLED_APPS=[])
        django.setup()
    translation.activate(language)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def heading(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}", flush=True)


def say(text: str = "") -> None:
    print(text, flush=True)


def indented(text: str) -> None:
    for line in text.rstrip().splitlines():
        print(f"    | {line}")
    sys.stdout.flush()


class Sandbox:
    """The origin, the developer's clone and the production checkout, under ``root``."""

    def __init__(self, root: Path, language: str = "en"):
        self.root = root
        self.language = language
        self.origin = root / "origin.git"
        self.work = root / "developer"
        self.production = root / "production"
        self.web_port = free_port()
        self.commands = servectl_commands(self.web_port)
        self.env = {name: value for name, value in os.environ.items() if name not in _CALLER_ONLY and not name.startswith("DEPLOY_OPS_")}
        # Nothing outside the sandbox: no __pycache__ next to the site's or deploy_ops' sources.
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"

    # -- processes -----------------------------------------------------------------------------
    def run(self, argv: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
        finished = subprocess.run(argv, cwd=cwd, env=self.env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check and finished.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed (exit {finished.returncode}):\n{finished.stdout}{finished.stderr}")
        return finished

    def git(self, directory: Path, *arguments: str) -> str:
        return self.run(["git", *arguments], directory).stdout.strip()

    def manage(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "manage.py", *arguments], self.production, check=check)

    # -- building it ---------------------------------------------------------------------------
    def build(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.git(self.root, "init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(self.origin))
        copy_site(self.work)
        self.git(self.work, "init", "--quiet", f"--initial-branch={BRANCH}")
        self.git(self.work, "config", "user.name", "Demo Developer")
        self.git(self.work, "config", "user.email", "developer@example.org")
        self.git(self.work, "remote", "add", "origin", str(self.origin))
        self.commit({"site_release.txt": "1\n"}, "Release 1")
        self.git(self.root, "clone", "--quiet", str(self.origin), str(self.production))
        settings = {
            "PROJECT_DIR": str(self.production),
            "RUNTIME": "commands",
            "COMMANDS": self.commands,
            "COMMANDS_LOG_FILE": WEB_LOGFILE,
            "HEALTH_CHECK_URL": self.url("/health/"),
            "HEALTH_CHECK_RETRIES": 4,
            "HEALTH_CHECK_DELAY": 0.5,
        }
        write_dotenv(
            self.production,
            {
                "WEB_PORT": str(self.web_port),
                "DATABASE_URL": "sqlite:///db.sqlite3",
                "EXTRA_PYTHONPATH": deploy_ops_source(),
                "LANGUAGE_CODE": self.language,
                **deploy_ops_environment(settings),
            },
        )

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        self.git(self.work, "add", "--all")
        self.git(self.work, "commit", "--quiet", "-m", message)
        self.git(self.work, "push", "--quiet", "origin", f"HEAD:{BRANCH}")
        return self.git(self.work, "rev-parse", "HEAD")

    # -- looking at it -------------------------------------------------------------------------
    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get(self, path: str = "/") -> tuple[int | None, str]:
        try:
            with _NO_PROXY.open(self.url(path), timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return None, str(error)

    def serving(self) -> str:
        """What the site's front page says, on one line ("release 2, notes 3")."""
        status, body = self.get("/")
        if status == 200:
            return ", ".join(body.split("\n")[:2])
        return _("nothing good (HTTP %(status)s: %(body)s)") % {"status": status, "body": body.strip()[:80]}

    def wait_until_serving(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.get("/")[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"The sample site did not answer on {self.url()} within {timeout:.0f}s; see {self.production / WEB_LOGFILE}."
                )
            time.sleep(0.1)

    def notes(self) -> list[str]:
        script = "from notes.models import Note; print(*Note.objects.order_by('id').values_list('text', flat=True), sep='\\n')"
        return self.manage("shell", "--verbosity", "0", "-c", script).stdout.splitlines()

    def head(self) -> str:
        return self.git(self.production, "log", "-1", "--format=%h %s")

    def stop(self) -> None:
        if self.production.exists():
            self.run(self.commands["stop"], self.production, check=False)


def operator_output(finished: subprocess.CompletedProcess) -> str:
    """The command's report; the site's INFO log lines (every command it ran) stay in stderr unshown."""
    problems = [line for line in finished.stderr.splitlines() if not line.startswith("INFO ")]
    return "\n".join([finished.stdout.rstrip(), *problems])


def deploy(sandbox: Sandbox) -> subprocess.CompletedProcess:
    say("$ python manage.py deploy --noinput")
    started = time.monotonic()
    finished = sandbox.manage("deploy", "--noinput", check=False)
    indented(operator_output(finished))
    say(_("exit code %(code)s after %(seconds).1fs") % {"code": finished.returncode, "seconds": time.monotonic() - started})
    return finished


def story(sandbox: Sandbox) -> bool:
    """The three acts; True when each turned out as the demo says it should."""
    heading(_("Setting the stage: release 1 in production"))
    sandbox.build()
    say(_("Sandbox: %(path)s") % {"path": sandbox.root})
    say(_("git origin: %(path)s") % {"path": sandbox.origin})
    say(_("production checkout: %(path)s (SQLite, runserver under servectl)") % {"path": sandbox.production})
    sandbox.manage("migrate", "--verbosity", "0")
    create = "from notes.models import Note; " + "; ".join(f"Note.objects.create(text={text!r})" for text in NOTES)
    sandbox.manage("shell", "--verbosity", "0", "-c", create)
    sandbox.run(sandbox.commands["start"], sandbox.production)
    sandbox.wait_until_serving()
    say(_("Production is at: %(commit)s") % {"commit": sandbox.head()})
    say(_("%(url)s serves: %(page)s") % {"url": sandbox.url(), "page": sandbox.serving()})
    say(_("Notes in the database: %(notes)s") % {"notes": sandbox.notes()})

    heading(_("Act 1: a good release deploys"))
    sandbox.commit({"site_release.txt": "2\n"}, "Release 2")
    say(_("A developer commits release 2 and pushes it. In production:"))
    first = deploy(sandbox)
    act_1 = first.returncode == 0 and sandbox.serving().startswith("release 2")
    if act_1:
        say(
            _("Deployed release 2: production is at %(commit)s and serves %(page)s.")
            % {"commit": sandbox.head(), "page": sandbox.serving()}
        )
    else:
        say(_("Release 2 did NOT deploy as expected."))

    heading(_("Act 2: a broken release is rolled back by itself"))
    sandbox.commit(
        {
            "notes/migrations/0002_overwrite_notes.py": DATA_CHANGING_MIGRATION,
            "sitecfg/flags.py": UNHEALTHY_FLAGS,
            "site_release.txt": "3\n",
        },
        "Release 3: rewrites every note and fails its health check",
    )
    say(_("Release 3 has a migration that overwrites every note's text, and a /health/ that answers 500."))
    say(_("deploy backs up the database first, migrates, and then the health check fails:"))
    notes_before = sandbox.notes()
    second = deploy(sandbox)
    notes_after = sandbox.notes()
    restored = notes_after == notes_before
    act_2 = second.returncode == 1 and restored and sandbox.serving().startswith("release 2")
    if second.returncode == 1:
        say(_("Exit code 1: the deploy failed and was rolled back."))
    else:
        say(_("Unexpected exit code %(code)s.") % {"code": second.returncode})
    if restored:
        say(_("Database restored: notes are %(notes)s (unchanged).") % {"notes": notes_after})
    else:
        say(_("Database NOT restored: notes are %(notes)s (CHANGED).") % {"notes": notes_after})
    say(_("Production is back at %(commit)s and serves %(page)s.") % {"commit": sandbox.head(), "page": sandbox.serving()})

    heading(_("Act 3: what the operator sees afterwards"))
    for arguments in (("rollback", "--status"), ("rollback", "--list-commits")):
        say(f"$ python manage.py {' '.join(arguments)}")
        looked = sandbox.manage(*arguments, check=False)
        indented(operator_output(looked))
    say(_("Every deploy is journalled in production/logs/deployments.jsonl and in the DeploymentRecord table (the admin)."))

    heading(_("Summary"))
    answer = {True: _("yes"), False: _("NO")}
    say(_("- Release 2 deployed: %(answer)s.") % {"answer": answer[act_1]})
    say(_("- Release 3 failed its health check and was rolled back automatically: %(answer)s") % {"answer": answer[act_2]})
    say(
        _("  (database restored from the pre-deploy backup: %(restored)s; release 2 serving again: %(serving)s).")
        % {
            "restored": answer[restored],
            "serving": answer[sandbox.serving().startswith("release 2")],
        }
    )
    say(_("- `rollback --status` and the history above show both deploys."))
    return act_1 and act_2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bin/demo", description=textwrap.dedent(__doc__).strip().splitlines()[0])
    parser.add_argument("--dir", type=Path, help="Build the sandbox here (a folder that does not exist yet, or is empty).")
    parser.add_argument("--keep", action="store_true", help="Leave the sandbox in place afterwards, to look around.")
    parser.add_argument("--lang", choices=LANGUAGES, default="en", help="The language of the story and of the commands (en or es).")
    options = parser.parse_args(argv)
    speak(options.lang)
    sys.dont_write_bytecode = True  # nothing outside the sandbox, not even __pycache__
    if options.dir and options.dir.exists() and any(options.dir.iterdir()):
        parser.error(f"{options.dir} is not empty; give a new or empty folder.")
    root = options.dir.resolve() if options.dir else Path(tempfile.mkdtemp(prefix="deploy_ops_demo_"))
    sandbox = Sandbox(root, options.lang)
    try:
        good = story(sandbox)
    finally:
        sandbox.stop()
        if options.keep:
            say(
                "\n"
                + _(
                    "The web process was stopped; the sandbox is kept in %(path)s "
                    "(try `python manage.py rollback --status` in production/)."
                )
                % {"path": root}
            )
        else:
            shutil.rmtree(root, ignore_errors=True)
            say("\n" + _("The web process was stopped and the sandbox %(path)s removed.") % {"path": root})
    say(_("The demo went as told.") if good else _("The demo did NOT go as told: see above."))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
