"""What a deploy needs from the project and the running site, found before anything changes.

Each ``*_problems`` function returns Django check messages (with ids), so ``manage.py check
--deploy`` reports exactly what the deploy's preflight refuses on: an error refuses the deploy
(exit 3), a warning is shown and the deploy goes on.  The probe of the release serving now runs
in the preflight (and as a warning in ``check --deploy``): when it does not answer 200, the deploy's
own health stage, and the rollback's, cannot pass either.

deploy_ops.E030  STATIC_ROOT is not set, and collectstatic writes to the file system
deploy_ops.E031  BACKUP_DIR cannot be written
deploy_ops.E032  WEB_SERVICE is not a service of the Compose project
deploy_ops.E033  APP_SERVICES names a service the Compose project does not have
deploy_ops.E034  APP_SERVICES is empty, so a deploy would stop the database service too
deploy_ops.E035  BACKUP_DIR is inside an image's build context and .dockerignore does not exclude it
deploy_ops.E036  Compose cannot read the project
deploy_ops.W031  LOG_DIR or STATE_DIR is inside an image's build context and .dockerignore does not exclude it
deploy_ops.W032  the health probe's Host is not in ALLOWED_HOSTS
deploy_ops.W033  SECURE_SSL_REDIRECT would redirect the health probe to https
deploy_ops.W034  the release serving now does not answer its health URL with 200
deploy_ops.W035  HEALTH_CHECKS, which /health/ runs inside the web container, holds a check only the host can run
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Warning
from django.core.files.storage import FileSystemStorage
from django.http.request import split_domain_port, validate_host
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from .conf import ops_settings
from .exceptions import DeployOpsError, PreflightFailed, ToolMissing
from .health.checks import nearest_existing
from .probe import probe_health, probe_host

# A Compose service that looks like the project's own database server, by its name or image.
DATABASE_SERVICE = re.compile(r"postgres|postgis|timescale|mysql|mariadb|^db$|^database$", re.IGNORECASE)


# -- static files ---------------------------------------------------------------------------------
def static_root_problems() -> list:
    if "django.contrib.staticfiles" not in settings.INSTALLED_APPS or settings.STATIC_ROOT:
        return []
    backend = settings.STORAGES.get("staticfiles", {}).get("BACKEND", "")
    try:
        writes_files = issubclass(import_string(backend), FileSystemStorage)
    except ImportError:
        writes_files = True
    if not writes_files:
        return []  # a remote storage (S3, say) needs no STATIC_ROOT
    return [
        Error(
            _(
                "STATIC_ROOT is not set, so `collectstatic` fails: the deploy "
                "would fail at its collectstatic stage, and so would its rollback."
            ),
            hint=_("Set STATIC_ROOT in the settings the release runs with, e.g. STATIC_ROOT = BASE_DIR / 'staticfiles'."),
            id="deploy_ops.E030",
        )
    ]


# -- the backup folder ------------------------------------------------------------------------------
def backup_dir_problems() -> list:
    """BACKUP_DIR, or the folder it would be made in, takes a new file (tried, not guessed: root ignores modes)."""
    wanted = ops_settings.backup_dir
    existing = nearest_existing(wanted)
    if not existing.is_dir():
        why = _("%(path)s is a file, so the folder cannot be made") % {"path": existing}
    else:
        try:
            descriptor, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        except OSError as error:
            why = _("%(path)s cannot be written (%(error)s)") % {"path": existing, "error": error.strerror}
        else:
            os.close(descriptor)
            os.remove(probe)
            return []
    return [
        Error(
            _("Backups cannot be written to %(folder)s: %(reason)s. Every deploy begins with a backup.")
            % {"folder": wanted, "reason": why},
            hint=_("Point DEPLOY_OPS['BACKUP_DIR'] at a folder the deploying user can write, on a writable disk."),
            id="deploy_ops.E031",
        )
    ]


# -- the Compose project ----------------------------------------------------------------------------
def compose_problems(runtime) -> list:
    """WEB_SERVICE and APP_SERVICES against the project's services; its images' build contexts."""
    try:
        config = runtime.config()
    except ToolMissing:
        return []  # deploy_ops.E010 says which tool is missing
    except DeployOpsError as error:
        return [
            Error(
                _("Compose cannot read the project: %(error)s") % {"error": error},
                hint=_("Run the same `compose config` by hand to see why."),
                id="deploy_ops.E036",
            )
        ]
    services = config.get("services") or {}
    names = sorted(services)
    listed = ", ".join(names) or _("none")
    found = []
    if not ops_settings.MANAGE_ON_HOST and ops_settings.WEB_SERVICE not in services:
        found.append(
            Error(
                _("WEB_SERVICE is %(service)r, but the Compose project's services are %(services)s: migrate would fail.")
                % {
                    "service": ops_settings.WEB_SERVICE,
                    "services": listed,
                },
                hint=_("Set DEPLOY_OPS['WEB_SERVICE'] to the service that runs Django."),
                id="deploy_ops.E032",
            )
        )
    unknown = [name for name in ops_settings.APP_SERVICES if name not in services]
    if unknown:
        found.append(
            Error(
                _("APP_SERVICES names %(unknown)s, which the Compose project does not have (its services: %(services)s).")
                % {
                    "unknown": ", ".join(map(repr, unknown)),
                    "services": listed,
                },
                hint=_("List the services that run the release in DEPLOY_OPS['APP_SERVICES']."),
                id="deploy_ops.E033",
            )
        )
    databases = [name for name in names if _runs_a_database(name, services[name])]
    if not ops_settings.APP_SERVICES and databases:
        others = [name for name in names if name not in databases]
        found.append(
            Error(
                _(
                    "APP_SERVICES is empty, so a deploy or rollback stops every service, the database %(databases)s too: "
                    "the restore needs it running."
                )
                % {"databases": ", ".join(map(repr, databases))},
                hint=_("Set DEPLOY_OPS['APP_SERVICES'] to the services that run the release, e.g. %(services)r.") % {"services": others},
                id="deploy_ops.E034",
            )
        )
    found += build_context_problems(config)
    return found


def _runs_a_database(name: str, service: dict) -> bool:
    return name == ops_settings.BACKUP_EXEC_SERVICE or bool(
        DATABASE_SERVICE.search(name) or DATABASE_SERVICE.search(service.get("image") or "")
    )


def build_context_problems(config: dict) -> list:
    """A folder of deploy_ops inside an image's build context, not excluded by .dockerignore, is baked into the image."""
    contexts = sorted(
        {
            Path(service["build"]["context"])
            for service in (config.get("services") or {}).values()
            if isinstance(service.get("build"), dict) and service["build"].get("context")
        }
    )
    found = []
    for key, folder in (("BACKUP_DIR", ops_settings.backup_dir), ("LOG_DIR", ops_settings.log_dir), ("STATE_DIR", ops_settings.state_dir)):
        for context in contexts:
            if not folder.is_relative_to(context):
                continue
            relative = folder.relative_to(context).as_posix()
            if dockerignore_excludes(context, relative):
                continue
            values = {"key": key, "folder": folder, "context": context}
            if key == "BACKUP_DIR":
                message = (
                    _(
                        "%(key)s (%(folder)s) is inside the build context %(context)s, and .dockerignore does not exclude it: "
                        "its database dumps would be copied into the image."
                    )
                    % values
                )
            else:
                message = (
                    _(
                        "%(key)s (%(folder)s) is inside the build context %(context)s, and .dockerignore does not exclude it: "
                        "its deploy_ops' records and lock would be copied into the image."
                    )
                    % values
                )
            hint = _("Add %(pattern)r to %(file)s.") % {"pattern": relative, "file": context / ".dockerignore"}
            found.append(
                Error(message, hint=hint, id="deploy_ops.E035")
                if key == "BACKUP_DIR"
                else Warning(message, hint=hint, id="deploy_ops.W031")
            )
    return found


def dockerignore_excludes(context: Path, relative: str) -> bool:
    """Whether ``context/.dockerignore`` keeps the folder ``relative`` (and so its files) out of the build.

    As Docker reads it: patterns relative to the context (a leading / means the same), ``*``, ``?``
    and ``**``; a pattern that matches a parent folder matches what is in it; the last matching
    line wins, and ``!`` lines include again.
    """
    ignore_file = context / ".dockerignore"
    if not ignore_file.is_file():
        return False
    parts = (relative + "/backup_19700101_000000.sql.gz").split("/")
    candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    excluded = False
    for line in ignore_file.read_text(encoding="utf-8", errors="replace").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        include_again = pattern.startswith("!")
        pattern = posixpath.normpath(pattern.lstrip("!").strip().lstrip("/"))
        regex = _dockerignore_regex(pattern)
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not include_again
    return excluded


def _dockerignore_regex(pattern: str) -> re.Pattern:
    translated = ""
    position = 0
    while position < len(pattern):
        if pattern.startswith("**/", position):
            translated, position = translated + "(?:.*/)?", position + 3
        elif pattern.startswith("**", position):
            translated, position = translated + ".*", position + 2
        elif pattern[position] == "*":
            translated, position = translated + "[^/]*", position + 1
        elif pattern[position] == "?":
            translated, position = translated + "[^/]", position + 1
        else:
            translated, position = translated + re.escape(pattern[position]), position + 1
    return re.compile(translated)


# -- the health URL ---------------------------------------------------------------------------------
def health_url_problems() -> list:
    """Will the site let the probe through? Its ALLOWED_HOSTS and SSL redirect, as Django applies them."""
    found = []
    host = probe_host()
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    if not domain or not validate_host(domain, allowed):
        found.append(
            Warning(
                _(
                    "The health probe sends Host %(host)r, which ALLOWED_HOSTS (%(allowed)s) does not allow: "
                    "every probe would be answered 400, and every deploy rolled back."
                )
                % {"host": host, "allowed": ", ".join(allowed) or _("empty")},
                hint=_("Set DEPLOY_OPS['HEALTH_CHECK_HOST'] to the site's domain (one of ALLOWED_HOSTS)."),
                id="deploy_ops.W032",
            )
        )
    url = urlsplit(ops_settings.HEALTH_CHECK_URL)
    forwarded_https = ops_settings.HEALTH_CHECK_FORWARDED_PROTO == "https" and tuple(settings.SECURE_PROXY_SSL_HEADER or ()) == (
        "HTTP_X_FORWARDED_PROTO",
        "https",
    )
    exempt = any(re.search(pattern, url.path.lstrip("/")) for pattern in settings.SECURE_REDIRECT_EXEMPT)
    if settings.SECURE_SSL_REDIRECT and url.scheme == "http" and not forwarded_https and not exempt:
        found.append(
            Warning(
                _("SECURE_SSL_REDIRECT is on, so the site answers the probe of %(url)s with a redirect to https.")
                % {"url": ops_settings.HEALTH_CHECK_URL},
                hint=_(
                    "Set DEPLOY_OPS['HEALTH_CHECK_FORWARDED_PROTO'] = 'https' with "
                    "SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https'), "
                    "or SECURE_REDIRECT_EXEMPT = [r'^health/']."
                ),
                id="deploy_ops.W033",
            )
        )
    return found


def running_release_problems() -> list:
    probe = probe_health()
    if probe.healthy:
        return []
    return [Warning(not_passing(probe), hint=running_release_advice(probe.status), id="deploy_ops.W034")]


def not_passing(probe) -> str:
    return _("The release serving now does not pass its health check: %(problem)s") % {"problem": probe.problem()}


def running_release_advice(status: int) -> str:
    if status == 0:
        return _(
            "Start the site first: the very first time, `docker compose up --detach --build --wait` and `manage.py migrate` "
            "(see the README); or correct HEALTH_CHECK_URL."
        )
    if status >= 500:
        return _("A rollback to this release could not pass its health check either. Repair it, or deploy a fix with --force.")
    return _("The deploy's health stage, and its rollback's, would get the same answer: correct the probe's settings first.")


def site_check_problems() -> list:
    """Under Compose /health/ runs in the web container, which has no Docker engine and no BACKUP_DIR."""
    from .health.checks import BackupDiskSpace, BackupFreshness, ServicesRunning

    host_only = (ServicesRunning, BackupFreshness, BackupDiskSpace)
    found = []
    for entry in ops_settings.HEALTH_CHECKS:
        path = entry if isinstance(entry, str) else entry[0]
        try:
            check_class = import_string(path)
        except ImportError:
            continue  # /health/ itself reports a check that cannot be imported
        if isinstance(check_class, type) and issubclass(check_class, host_only):
            found.append(
                Warning(
                    _(
                        "HEALTH_CHECKS holds %(path)s, but /health/ runs inside the web container, where it cannot see "
                        "the Docker engine or the host's backups: /health/ would fail or warn for the wrong reason."
                    )
                    % {"path": path},
                    hint=_(
                        "Move it to DEPLOY_OPS['HOST_HEALTH_CHECKS']: `manage.py healthcheck` "
                        "on the host and the deploy's verify stage run it there."
                    ),
                    id="deploy_ops.W035",
                )
            )
    return found


def swarm_manager_problems() -> list:
    """E050: RUNTIME = "swarm" deploys with `docker stack deploy`, which only a swarm manager accepts."""
    from .runtimes.swarm import swarm_problem

    try:
        problem = swarm_problem()
    except DeployOpsError as error:
        problem = str(error)
    if not problem:
        return []
    hint = _("Run deploy from a manager node (`docker swarm init` makes this one a single-node swarm; docs/SWARM.md).")
    return [Error(problem, hint=hint, id="deploy_ops.E050")]


# -- the preflight ----------------------------------------------------------------------------------
def readiness_problems(runtime) -> list:
    """Everything above except the probe of the running release."""
    found = static_root_problems() + backup_dir_problems() + health_url_problems()
    if runtime.name in ("compose", "swarm"):
        found += compose_problems(runtime) + site_check_problems()
    if runtime.name == "swarm":
        # A deploy from an engine that is no swarm manager would fail at its start, after the build.
        found += swarm_manager_problems()
    return found


def refuse_if_unready(runtime, force: bool, report) -> None:
    """Raise PreflightFailed on any error; report warnings; probe the release serving now (the one
    the proxy routes to, ``proxy.serving.serving_release``).

    The probe alone yields to ``force``: the operator may knowingly deploy a fix over a broken site.
    """
    found = readiness_problems(runtime)
    errors = [problem for problem in found if problem.is_serious()]
    if errors:
        raise PreflightFailed(" ".join(f"{problem.msg} {problem.hint} ({problem.id})" for problem in errors))
    for problem in found:
        report(_("Warning: %(warning)s") % {"warning": f"{problem.msg} {problem.hint} ({problem.id})"}, 0)
    probe = probe_health()
    if probe.healthy:
        return
    message = not_passing(probe)
    if force:
        report(_("Going on anyway (--force): %(problem)s") % {"problem": message}, 0)
        return
    advice = running_release_advice(probe.status)
    raise PreflightFailed(f"{message} {advice}" + ("" if "--force" in advice else " " + _("(--force deploys anyway.)")))
