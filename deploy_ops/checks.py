"""System checks (``manage.py check``; the tool checks run with ``check --deploy``).

deploy_ops.E001  DEPLOY_OPS has a wrong or unknown key
deploy_ops.E002  BACKUP_DATABASE names no DATABASES alias
deploy_ops.E003  the database engine cannot be backed up by deploy_ops
deploy_ops.E004  the commands runtime lacks a required step
deploy_ops.W001  BACKUP_DIR is inside the checkout but not ignored by git
deploy_ops.W002  a rollback would stop the Compose service the database restore runs in
deploy_ops.E010  a host tool the configuration needs is missing (deploy check)
deploy_ops.E011  the database holds something a restore could not bring back safely (deploy check)
deploy_ops.W003  whether the database can be restored could not be checked (deploy check)
deploy_ops.E030  BACKUP_STORAGE names no STORAGES alias, or BACKUP_AGE_RECIPIENTS holds a non-key (or pyrage is missing)
deploy_ops.E020  a notification channel cannot be loaded or lacks an option (notifications/channels.py)
deploy_ops.E030-E036, W031-W035  what the deploy's preflight refuses on or warns about (deploy check; preflight.py)
deploy_ops.E050  RUNTIME is 'swarm' but the Docker engine is not a swarm manager (deploy check)
"""

from __future__ import annotations

import shutil
import subprocess

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.translation import gettext as _

from .conf import ops_settings, problems
from .databases import ENGINE_VENDORS, host_tools, restore_blockers, vendor_of
from .exceptions import DeployOpsError
from .notifications.channels import check_channels

register(check_channels, Tags.compatibility)

E001 = "deploy_ops.E001"
E002 = "deploy_ops.E002"
E003 = "deploy_ops.E003"
E004 = "deploy_ops.E004"
W001 = "deploy_ops.W001"
W002 = "deploy_ops.W002"
W003 = "deploy_ops.W003"
E010 = "deploy_ops.E010"
E011 = "deploy_ops.E011"
E030 = "deploy_ops.E030"


@register(Tags.compatibility)
def check_settings(app_configs, **kwargs):
    raw = getattr(settings, "DEPLOY_OPS", {})
    if not isinstance(raw, dict):
        return [Error(_("settings.DEPLOY_OPS must be a dict."), id=E001)]
    found = [Error(problem, hint=_("See docs/CONFIGURATION.md for every key."), id=E001) for problem in problems(raw)]
    if found:
        return found
    alias = ops_settings.BACKUP_DATABASE
    if alias not in settings.DATABASES:
        return [Error(_("DEPLOY_OPS['BACKUP_DATABASE'] is %(alias)r, which is not in DATABASES.") % {"alias": alias}, id=E002)]
    if vendor_of(settings.DATABASES[alias]) is None:
        found.append(
            Error(
                _("The database %(alias)r uses %(engine)s, which deploy_ops cannot back up.")
                % {
                    "alias": alias,
                    "engine": settings.DATABASES[alias].get("ENGINE"),
                },
                hint=_("Supported: %(engines)s, and backends built on them.") % {"engines": ", ".join(sorted(ENGINE_VENDORS))},
                id=E003,
            )
        )
    if ops_settings.RUNTIME == "commands":
        missing = [step for step in ("start", "stop") if step not in ops_settings.COMMANDS]
        if missing:
            found.append(
                Error(
                    (
                        _("RUNTIME is 'commands' but DEPLOY_OPS['COMMANDS'] has no start or stop step.")
                        if len(missing) == 2
                        else _("RUNTIME is 'commands' but DEPLOY_OPS['COMMANDS'] has no %(step)s step.") % {"step": missing[0]}
                    ),
                    hint=_("Give argv lists, e.g. %(example)s.")
                    % {"example": "{'start': ['systemctl', 'start', 'gunicorn'], 'stop': [...]}"},
                    id=E004,
                )
            )
    found.extend(_backup_dir_ignored())
    found.extend(_database_service_kept_running())
    return found


def _database_service_kept_running():
    service = ops_settings.BACKUP_EXEC_SERVICE
    if ops_settings.RUNTIME != "compose" or not service:
        return []
    app_services = ops_settings.APP_SERVICES
    if app_services and service not in app_services:
        return []
    return [
        Warning(
            (
                _("Backups run inside the Compose service %(service)r, but a rollback stops every service before it restores the database.")
                if not app_services
                else _("Backups run inside the Compose service %(service)r, but a rollback stops it before it restores the database.")
            )
            % {"service": service},
            hint=_("List the services that run the release in DEPLOY_OPS['APP_SERVICES'] (e.g. ['web']), without %(service)r.")
            % {"service": service},
            id=W002,
        )
    ]


def _backup_dir_ignored():
    backup_dir = ops_settings.backup_dir
    project_dir = ops_settings.project_dir
    if not (project_dir / ".git").exists() or not backup_dir.is_relative_to(project_dir) or not shutil.which("git"):
        return []
    probe = backup_dir / "backup_19700101_000000.sql.gz"
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", str(probe.relative_to(project_dir))],
        cwd=project_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if ignored.returncode == 0:
        return []
    return [
        Warning(
            _("Backups are written to %(folder)s, inside the git checkout, but git does not ignore them.") % {"folder": backup_dir},
            hint=_("Add %(pattern)r to .gitignore: backups must never be committed.")
            % {
                "pattern": f"/{backup_dir.relative_to(project_dir).as_posix()}/",
            },
            id=W001,
        )
    ]


@register(Tags.compatibility, deploy=True)
def check_release_readiness(app_configs, **kwargs):
    """What the deploy's preflight finds, found earlier: static files, the backup folder, Compose, the health URL."""
    if problems(getattr(settings, "DEPLOY_OPS", {})):
        return []  # deploy_ops.E001 comes first
    from .preflight import readiness_problems, running_release_problems
    from .runtimes import get_runtime

    return readiness_problems(get_runtime()) + running_release_problems()


def needed_tools() -> list[str]:
    if problems(getattr(settings, "DEPLOY_OPS", {})):
        return []
    tools = ["git"]
    if ops_settings.RUNTIME == "compose" or ops_settings.BACKUP_EXEC_SERVICE:
        tools.append(ops_settings.COMPOSE_COMMAND[0])
    if ops_settings.RUNTIME == "swarm":
        tools += [tool for tool in (ops_settings.COMPOSE_COMMAND[0], "docker") if tool not in tools]
    if not ops_settings.BACKUP_EXEC_SERVICE:
        tools.extend(host_tools(settings.DATABASES.get(ops_settings.BACKUP_DATABASE, {})))
    return tools


@register(Tags.compatibility, deploy=True)
def check_tools(app_configs, **kwargs):
    return [
        Error(
            _("%(tool)r is not installed on this host, and the deploy_ops configuration needs it.") % {"tool": tool},
            hint=_("Install it or change DEPLOY_OPS (BACKUP_EXEC_SERVICE runs the database tools inside a container)."),
            id=E010,
        )
        for tool in needed_tools()
        if shutil.which(tool) is None
    ]


@register(Tags.compatibility, deploy=True)
def check_restorable(app_configs, **kwargs):
    # Asks the server through the engine's own tools, not Django's connection, so it runs with
    # `check --deploy` alone (Django runs Tags.database checks only with --database).
    alias = ops_settings.BACKUP_DATABASE
    if problems(getattr(settings, "DEPLOY_OPS", {})) or vendor_of(settings.DATABASES.get(alias, {})) is None:
        return []  # E001, E002 and E003 say why
    try:
        blockers = restore_blockers(alias)
    except DeployOpsError as error:
        return [
            Warning(
                _("Could not check whether the database %(alias)r can be restored: %(error)s") % {"alias": alias, "error": error}, id=W003
            )
        ]
    return [
        Error(
            _("The database %(alias)r cannot be restored safely: %(blocker)s.") % {"alias": alias, "blocker": blocker},
            hint=_("A deploy and every restore refuse while this holds; see docs/BACKUPS.md."),
            id=E011,
        )
        for blocker in blockers
    ]


@register(Tags.compatibility)
def check_backup_lifecycle(app_configs, **kwargs):
    if problems(getattr(settings, "DEPLOY_OPS", {})):
        return []  # E001 says why
    from .encryption import recipients_problem

    found = []
    alias = ops_settings.BACKUP_STORAGE
    if alias and alias not in getattr(settings, "STORAGES", {}):
        found.append(
            Error(_("DEPLOY_OPS['BACKUP_STORAGE'] is %(alias)r, which is not an alias in settings.STORAGES.") % {"alias": alias}, id=E030)
        )
    problem = recipients_problem(ops_settings.BACKUP_AGE_RECIPIENTS) if ops_settings.BACKUP_AGE_RECIPIENTS else None
    if problem:
        found.append(Error(problem, hint=_("See docs/BACKUPS.md, Encryption."), id=E030))
    return found


@register(Tags.compatibility, deploy=True)
def check_swarm_manager(app_configs, **kwargs):
    """RUNTIME = "swarm" deploys with `docker stack deploy`, which only a swarm manager accepts."""
    if problems(getattr(settings, "DEPLOY_OPS", {})) or ops_settings.RUNTIME != "swarm":
        return []
    from .preflight import swarm_manager_problems

    return swarm_manager_problems()
