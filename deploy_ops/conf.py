"""The one settings dict, ``settings.DEPLOY_OPS``: defaults, validation, environment.

Settings are read lazily on every access (never at import time), so
``override_settings(DEPLOY_OPS=...)`` works in tests and a project can build
the dict however it likes.  ``ops_settings.KEY`` returns the validated value.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from .exceptions import ConfigurationError


@dataclass(frozen=True)
class Option:
    default: Any
    kind: type | tuple[type, ...]
    help: str
    # Extra validation: check(value, setting) returns an error sentence about ``setting`` (the
    # setting as the sentence names it), or None when the value is fine.
    check: Callable[[Any, str], str | None] | None = None


def _positive(value, setting):
    return None if value >= 1 else _("%(setting)s must be 1 or more.") % {"setting": setting}


def _not_negative(value, setting):
    return None if value >= 0 else _("%(setting)s must be 0 or more.") % {"setting": setting}


def _one_of(*choices):
    def check(value, setting):
        return (
            None
            if value in choices
            else _("%(setting)s must be one of %(choices)s.") % {"setting": setting, "choices": ", ".join(map(repr, choices))}
        )

    return check


def _argv(value, setting):
    if not _is_argv(value):
        return _("%(setting)s must be a non-empty list of strings (an argv, not a shell string).") % {"setting": setting}
    return None


def _is_argv(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(part, str) and part for part in value)


def _commands(value, setting):
    allowed = {"build", "start", "stop", "migrate", "collectstatic", "check"}
    for name, argv in value.items():
        if name not in allowed:
            return _("%(setting)s has an unknown step %(step)r; steps are %(steps)s.") % {
                "setting": setting,
                "step": name,
                "steps": ", ".join(sorted(allowed)),
            }
        if not _is_argv(argv):
            return _("%(setting)s step %(step)r must be a non-empty list of strings (an argv, not a shell string).") % {
                "setting": setting,
                "step": name,
            }
    return None


def _patterns(value, setting):
    if not all(isinstance(pattern, str) and pattern for pattern in value):
        return _("%(setting)s must be a list of non-empty strings.") % {"setting": setting}
    return None


def _channels(value, setting):
    for position, channel in enumerate(value):
        if not isinstance(channel, dict) or not isinstance(channel.get("BACKEND"), str):
            return _("%(setting)s entry %(position)s must be a dict with a 'BACKEND' dotted path.") % {
                "setting": setting,
                "position": position,
            }
    return None


def _health_checks(value, setting):
    for position, entry in enumerate(value):
        if isinstance(entry, str) and entry:
            continue
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict):
            continue
        return _("%(setting)s entry %(position)s must be a dotted path or a [dotted path, {options}] pair.") % {
            "setting": setting,
            "position": position,
        }
    return None


PROXY_KEYS = {"KIND", "ROUTE_FILE", "RELOAD_COMMAND", "TEST_COMMAND", "PID_FILE", "DRAIN_TIMEOUT", "ADDRESS", "RETRY_AFTER", "SLOTS"}
SLOT_KEYS = {"ADDRESS", "HEALTH_CHECK_URL", "ENVIRONMENT"}


def _proxy(value, setting):
    if not value:
        return None
    unknown = set(value) - PROXY_KEYS
    if unknown:
        return _("%(setting)s has unknown keys %(unknown)s; the keys are %(keys)s.") % {
            "setting": setting,
            "unknown": ", ".join(sorted(unknown)),
            "keys": ", ".join(sorted(PROXY_KEYS)),
        }
    if value.get("KIND") != "nginx":
        return _("%(setting)s needs KIND 'nginx' (the one proxy deploy_ops drives so far).") % {"setting": setting}
    for key in ("ROUTE_FILE", "ADDRESS"):
        if not isinstance(value.get(key), str) or not value[key]:
            return _("%(setting)s needs %(key)s (a non-empty string).") % {"setting": setting, "key": key}
    for key in ("RELOAD_COMMAND", "TEST_COMMAND"):
        if key in value and not _is_argv(value[key]):
            return _argv(value[key], f"{setting} {key}")
    for key in ("DRAIN_TIMEOUT", "RETRY_AFTER"):
        if key in value and (isinstance(value[key], bool) or not isinstance(value[key], (int, float)) or value[key] < 0):
            return _("%(setting)s %(key)s must be a number of seconds, 0 or more.") % {"setting": setting, "key": key}
    if "SLOTS" in value:
        return _slots(value["SLOTS"], f"{setting} SLOTS")
    return None


def _slots(slots, setting):
    """Blue/green: exactly two slots, each {'ADDRESS': ..., 'HEALTH_CHECK_URL': ..., 'ENVIRONMENT': {...}}."""
    if not isinstance(slots, dict) or len(slots) != 2:
        return _("%(setting)s needs exactly two slots, e.g. {'blue': {...}, 'green': {...}}.") % {"setting": setting}
    for slot, config in slots.items():
        if not isinstance(slot, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", slot):
            return _("%(setting)s: %(slot)r is not a slot name (lower-case letters, digits, - and _).") % {"setting": setting, "slot": slot}
        if not isinstance(config, dict) or set(config) - SLOT_KEYS:
            return _("%(setting)s[%(slot)r] must be a dict with the keys %(keys)s.") % {
                "setting": setting,
                "slot": slot,
                "keys": ", ".join(sorted(SLOT_KEYS)),
            }
        for key in ("ADDRESS", "HEALTH_CHECK_URL"):
            if not isinstance(config.get(key), str) or not config[key]:
                return _("%(setting)s[%(slot)r] needs %(key)s (a non-empty string).") % {"setting": setting, "slot": slot, "key": key}
        environment = config.get("ENVIRONMENT", {})
        if not isinstance(environment, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in environment.items()):
            return _("%(setting)s[%(slot)r]['ENVIRONMENT'] must map variable names to strings.") % {"setting": setting, "slot": slot}
    return None


# What /health/ runs, where the site runs (inside the web container): nothing here needs the
# Docker engine or the host's backup folder.
DEFAULT_HEALTH_CHECKS = [
    "health_check.checks.Database",
    "health_check.checks.Cache",
    "health_check.checks.Storage",
    "deploy_ops.health.checks.MigrationsApplied",
    "deploy_ops.health.checks.LastDeployment",
    "deploy_ops.health.checks.RunningCommit",
]

# What only the host can see: `manage.py healthcheck` there and the deploy's verify stage add these.
DEFAULT_HOST_HEALTH_CHECKS = [
    "deploy_ops.health.checks.ServicesRunning",
    "deploy_ops.health.checks.BackupFreshness",
    "deploy_ops.health.checks.BackupDiskSpace",
]


OPTIONS: dict[str, Option] = {
    # Where things live on the host.
    "PROJECT_DIR": Option(
        None, (str, Path, type(None)), "The git checkout that is deployed (default: settings.BASE_DIR, else the current directory)."
    ),
    "BACKUP_DIR": Option("backups", (str, Path), "Where backups are written; relative paths are inside PROJECT_DIR."),
    "LOG_DIR": Option("logs", (str, Path), "Where notifications.log and the deployment journal are written; relative to PROJECT_DIR."),
    "STATE_DIR": Option(".deploy_ops", (str, Path), "Where the deploy lock lives; relative to PROJECT_DIR."),
    # Backups.
    "BACKUP_DATABASE": Option("default", str, "The DATABASES alias that is backed up and restored."),
    "BACKUP_COMPRESSION": Option("gzip", str, "gzip, zstd or none.", _one_of("gzip", "zstd", "none")),
    "BACKUP_RETENTION_DAYS": Option(7, int, "prune deletes backups older than this many days ...", _not_negative),
    "BACKUP_KEEP": Option(3, int, "... but always keeps this many newest valid backups.", _positive),
    "BACKUP_MAX_AGE_HOURS": Option(26, int, "The health check fails when the newest verified backup is older.", _positive),
    "BACKUP_EXEC_SERVICE": Option(
        None, (str, type(None)), "Run pg_dump/mysqldump/psql/mysql inside this Compose service instead of on the host."
    ),
    "BACKUP_MIN_FREE_MB": Option(512, int, "Preflight and the disk health check want this much room in BACKUP_DIR.", _not_negative),
    # The backup lifecycle: cleanup, off-host copies, encryption (docs/BACKUPS.md).
    "BACKUP_AUTO_CLEANUP": Option(True, bool, "Prune by the retention rules after every successful deploy and `backups create --prune`."),
    "KEEP_RELEASES": Option(
        5,
        int,
        "How many recent releases stay recoverable: the backups their records refer to are never pruned, and under Compose their images "
        "are kept.",
        _positive,
    ),
    "BACKUP_STORAGE": Option(
        None, (str, type(None)), "An alias in settings.STORAGES that every new backup is copied to (off the host); None: no copies."
    ),
    "BACKUP_STORAGE_PREFIX": Option("deploy_ops/backups", str, "The folder inside BACKUP_STORAGE that holds the copies."),
    "BACKUP_AGE_RECIPIENTS": Option(
        [], list, "age public keys (age1…) or SSH public keys that new backups are encrypted to; empty: not encrypted.", _patterns
    ),
    "BACKUP_AGE_IDENTITY_FILE": Option(
        None,
        (str, Path, type(None)),
        "The age identity file (AGE-SECRET-KEY-…) that decrypts backups to restore them; relative to PROJECT_DIR.",
    ),
    # Git.
    "GIT_REMOTE": Option("origin", str, "The remote a deploy fetches from."),
    "GIT_BRANCH": Option("main", str, "The branch a deploy takes when --ref is not given."),
    # Services.
    "RUNTIME": Option(
        "compose",
        str,
        "compose (Docker Compose), swarm (a Docker Swarm stack from the Compose file; docs/SWARM.md) or commands (argv lists in COMMANDS).",
        _one_of("compose", "commands", "swarm"),
    ),
    "COMMANDS": Option(
        {}, dict, "For the commands runtime: {'build': [...], 'start': [...], 'stop': [...]} run in PROJECT_DIR.", _commands
    ),
    "COMPOSE_COMMAND": Option(["docker", "compose"], list, "How to call Compose: ['docker', 'compose'] or ['docker-compose'].", _argv),
    "COMPOSE_FILES": Option([], list, "Compose files (-f), relative to PROJECT_DIR; empty means Compose's own default.", _patterns),
    "COMPOSE_PROJECT": Option(None, (str, type(None)), "The Compose project name (-p)."),
    "WEB_SERVICE": Option("web", str, "The Compose service that runs Django."),
    "MANAGE_ON_HOST": Option(
        False,
        bool,
        "Run migrate and collectstatic on the host instead of inside WEB_SERVICE (always on the host for the commands runtime).",
    ),
    "STOP_TIMEOUT": Option(30, int, "Seconds a stop may take.", _positive),
    "APP_SERVICES": Option(
        [],
        list,
        "The Compose services that run the release: the ones a deploy or rollback stops, while the others (the database) keep running; "
        "empty means every service.",
        _patterns,
    ),
    "COLLECT_STATIC": Option(
        True,
        bool,
        "False skips the collectstatic stage: the release collects its static files itself when it starts (cookiecutter-django's start "
        "script).",
    ),
    "START_TIMEOUT": Option(
        300,
        int,
        "Seconds `compose up --wait` may take for the services to be running and healthy (the commands runtime: the start step).",
        _positive,
    ),
    "COMMANDS_LOG_FILE": Option(
        None,
        (str, Path, type(None)),
        "For the commands runtime: the log file the release's processes write (scanned for LOG_ERROR_PATTERNS); relative to PROJECT_DIR.",
    ),
    # Health and verification.
    "HEALTH_CHECK_URL": Option("http://127.0.0.1:8000/health/", str, "The URL the deploy polls after starting the new release."),
    "HEALTH_CHECK_RETRIES": Option(3, int, "How many times the health URL is tried.", _positive),
    "HEALTH_CHECK_DELAY": Option(10, (int, float), "Seconds between health tries.", _not_negative),
    "HEALTH_CHECK_TIMEOUT": Option(5, (int, float), "Seconds one health request may take.", _positive),
    "HEALTH_TOKEN": Option(
        None, (str, type(None)), "When set, /health/ shows details to a request with ?token= or an X-Health-Token header."
    ),
    "HEALTH_DETAILS_PUBLIC": Option(
        False, bool, "Show /health/'s details to every request; otherwise only the token or a staff session sees them."
    ),
    "HEALTH_STATUS_CACHE_SECONDS": Option(
        5,
        (int, float),
        "/health/'s status-only answer is reused this long (per process), so a flood of polls does not run every check; 0 runs them each "
        "time.",
        _not_negative,
    ),
    "HEALTH_CHECKS": Option(
        DEFAULT_HEALTH_CHECKS,
        list,
        "The checks /health/ runs and the deploy gates on: dotted paths or [dotted path, {options}] pairs.",
        _health_checks,
    ),
    "LOG_ERROR_PATTERNS": Option(
        ["Traceback (most recent call last)", "CRITICAL", "[ERROR]"],
        list,
        "Service log lines since the deploy began that fail integrity verification.",
        _patterns,
    ),
    "HOST_HEALTH_CHECKS": Option(
        DEFAULT_HOST_HEALTH_CHECKS,
        list,
        "The checks only the host can run (services, backups, disk): `manage.py healthcheck` on the host and the deploy's verify stage "
        "add them to HEALTH_CHECKS.",
        _health_checks,
    ),
    "HEALTH_CHECK_HOST": Option(
        None,
        (str, type(None)),
        "The Host header of the deploy's health probe (the site's domain, so that ALLOWED_HOSTS passes); None: the host of "
        "HEALTH_CHECK_URL.",
    ),
    "HEALTH_CHECK_FORWARDED_PROTO": Option(
        None,
        (str, type(None)),
        "When set ('https'), the probe sends X-Forwarded-Proto with it and X-Forwarded-For: 127.0.0.1, as the site's reverse proxy does "
        "(for SECURE_PROXY_SSL_HEADER with SECURE_SSL_REDIRECT).",
        _one_of(None, "http", "https"),
    ),
    "DEPLOY_STUCK_MINUTES": Option(60, int, "A deploy still running after this long is reported as stuck by the health check.", _positive),
    # Rollback.
    "ROLLBACK_ENABLED": Option(True, bool, "Whether any rollback may run."),
    "AUTO_ROLLBACK": Option(True, bool, "Whether a failed deploy rolls back by itself."),
    # Notifications.
    "PROJECT_NAME": Option(None, (str, type(None)), "Shown in notifications (default: the PROJECT_DIR folder name)."),
    "ENVIRONMENT": Option("production", str, "Shown in notifications."),
    "ADMIN_BASE_URL": Option(None, (str, type(None)), "e.g. https://example.org — notifications link to the record in the admin."),
    "NOTIFICATIONS": Option(
        [], list, "Channels besides the always-on log: [{'BACKEND': 'deploy_ops.notifications.slack.SlackChannel', ...}].", _channels
    ),
    # The reverse proxy in front of the site (docs/RUNTIMES.md, zero-downtime); empty: none.
    "PROXY": Option(
        {},
        dict,
        "{'KIND': 'nginx', 'ROUTE_FILE': ..., 'ADDRESS': '127.0.0.1:8000', 'RELOAD_COMMAND': ['nginx', '-s', 'reload'], ...}: while a "
        "deploy or rollback has the site stopped, the proxy answers 503 with Retry-After and a maintenance page.",
        _proxy,
    ),
    # Docker Swarm (RUNTIME = "swarm"; docs/SWARM.md).
    "SWARM_STACK": Option(None, (str, type(None)), "The stack name (`docker stack deploy ... NAME`); None: the Compose project name."),
    "REGISTRY": Option(
        None,
        (str, type(None)),
        "Where a release's images are pushed after the build (registry.example.org:5000/team), for a swarm of several nodes; None: one "
        "node uses its local images.",
    ),
    "SWARM_UPDATE_ORDER": Option(
        "stop-first",
        str,
        "Each service's update and rollback order where the Compose file sets none: start-first needs an app that listens beside its old "
        "task (gunicorn --reuse-port).",
        _one_of("stop-first", "start-first"),
    ),
    "SWARM_UPDATE_MONITOR": Option(
        10,
        int,
        "Seconds swarm watches each new task before its update counts as done (a task failing within them rolls the service back), where "
        "the Compose file sets none.",
        _not_negative,
    ),
}

# Names the old shell scripts used, read unprefixed from the environment by the bundled settings.
LEGACY_ENVIRONMENT_NAMES = ("ROLLBACK_ENABLED", "AUTO_ROLLBACK", "HEALTH_CHECK_RETRIES", "HEALTH_CHECK_DELAY")


@dataclass(frozen=True)
class MalformedEnvironmentValue:
    """What ``from_environment`` keeps for a variable it cannot parse, so that settings still import.

    Validation (the E001 system check, ``deploy``'s preflight, reading the key) reports it by
    the variable's name; the value itself is not repeated, as a JSON value may hold a webhook URL.
    """

    variable: str
    # An English sentence with a %(variable)s placeholder (and those of ``values``), translated
    # when it is reported: settings are read before the translations can be.
    problem: str
    values: tuple = ()


def problems(raw: dict) -> list[str]:
    """Every problem with a raw DEPLOY_OPS dict, one sentence each."""
    found = [
        _(value.problem) % {"variable": value.variable, **dict(value.values)}
        for value in raw.values()
        if isinstance(value, MalformedEnvironmentValue)
    ]
    raw = {key: value for key, value in raw.items() if not isinstance(value, MalformedEnvironmentValue)}
    for key in raw:
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, OPTIONS, n=1)
            if close:
                found.append(_("DEPLOY_OPS has an unknown key %(key)r. Did you mean %(close)r?") % {"key": key, "close": close[0]})
            else:
                found.append(_("DEPLOY_OPS has an unknown key %(key)r.") % {"key": key})
    for key, option in OPTIONS.items():
        if key not in raw:
            continue
        value = raw[key]
        kinds = option.kind if isinstance(option.kind, tuple) else (option.kind,)
        # bool is an int in Python; an int option must not silently accept True.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(kind.__name__ for kind in kinds)
            found.append(
                _("%(setting)s must be %(kinds)s, not %(kind)s (%(value)r).")
                % {"setting": f"DEPLOY_OPS[{key!r}]", "kinds": names, "kind": type(value).__name__, "value": value}
            )
            continue
        problem = option.check(value, f"DEPLOY_OPS[{key!r}]") if option.check else None
        if problem:
            found.append(problem)
    return found


class OpsSettings:
    """Attribute access to the validated DEPLOY_OPS dict, read anew each time."""

    def _raw(self) -> dict:
        raw = getattr(django_settings, "DEPLOY_OPS", {})
        if not isinstance(raw, dict):
            raise ConfigurationError(_("settings.DEPLOY_OPS must be a dict."))
        return raw

    def __getattr__(self, key: str):
        if key not in OPTIONS:
            raise AttributeError(f"DEPLOY_OPS has no setting {key!r}")
        raw = self._raw()
        found = problems({key: raw[key]}) if key in raw else []
        if found:
            raise ConfigurationError(found[0])
        value = raw.get(key, OPTIONS[key].default)
        return _copy(value)

    def validate(self) -> None:
        found = problems(self._raw())
        if found:
            raise ConfigurationError(" ".join(found))

    # Paths, resolved against the project directory.
    @property
    def project_dir(self) -> Path:
        configured = self.PROJECT_DIR
        if configured:
            return Path(configured).resolve()
        base = getattr(django_settings, "BASE_DIR", None)
        return Path(base).resolve() if base else Path.cwd().resolve()

    def _inside_project(self, value) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.project_dir / path

    @property
    def backup_dir(self) -> Path:
        return self._inside_project(self.BACKUP_DIR)

    @property
    def log_dir(self) -> Path:
        return self._inside_project(self.LOG_DIR)

    @property
    def state_dir(self) -> Path:
        return self._inside_project(self.STATE_DIR)

    @property
    def project_name(self) -> str:
        return self.PROJECT_NAME or self.project_dir.name


def _copy(value):
    # Callers may mutate what they get (append a compose file, say); the settings must not change.
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


ops_settings = OpsSettings()


def _parse_environment_value(key: str, name: str, text: str):
    """The typed value of one variable, or a MalformedEnvironmentValue saying what is wrong with it."""
    option = OPTIONS[key]
    kinds = option.kind if isinstance(option.kind, tuple) else (option.kind,)
    if bool in kinds:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return MalformedEnvironmentValue(
            name, gettext_noop("The environment variable %(variable)s is %(text)r, not a boolean; use true or false."), (("text", text),)
        )
    if list in kinds or dict in kinds:
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            return MalformedEnvironmentValue(
                name,
                gettext_noop("The environment variable %(variable)s must be JSON (%(error)s at character %(position)s)."),
                (("error", error.msg), ("position", error.pos)),
            )
    if type(None) in kinds and text.strip() == "":
        return None
    if int in kinds or float in kinds:
        try:
            number = float(text)
        except ValueError:
            return MalformedEnvironmentValue(
                name, gettext_noop("The environment variable %(variable)s is %(text)r, not a number."), (("text", text),)
            )
        return int(number) if number.is_integer() and int in kinds else number
    return text


def from_environment(environ=None, prefix: str = "DEPLOY_OPS_", legacy: bool = True) -> dict:
    """A DEPLOY_OPS dict from ``DEPLOY_OPS_<KEY>`` variables (JSON for lists and dicts).

    With ``legacy``, the old scripts' unprefixed names (``AUTO_ROLLBACK=false``) are read too;
    the prefixed name wins when both are set.
    """
    environ = os.environ if environ is None else environ
    found = {}
    for key in OPTIONS:
        names = [prefix + key] + ([key] if legacy and key in LEGACY_ENVIRONMENT_NAMES else [])
        for name in names:
            if name in environ:
                found[key] = _parse_environment_value(key, name, environ[name])
                break
    unknown = [name for name in environ if name.startswith(prefix) and name.removeprefix(prefix) not in OPTIONS]
    for name in unknown:
        # An unknown variable is kept so validation names it with a hint instead of ignoring a typo.
        found[name.removeprefix(prefix)] = environ[name]
    return found
