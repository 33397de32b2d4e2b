"""The sample site's settings: everything host-specific comes from the environment or ./.env.

DATABASE_URL      postgres://user@host:port/name, mysql://user@host:port/name or sqlite:///path (default: db.sqlite3 here)
EXTRA_PYTHONPATH  a folder put on sys.path: a deploy_ops checkout that is not pip-installed
DEPLOY_OPS_<KEY>  deploy_ops settings (JSON for lists and dicts)
OFFSITE_STORAGE   a STORAGES entry (JSON) added as STORAGES["offsite"], for DEPLOY_OPS_BACKUP_STORAGE=offsite
LANGUAGE_CODE     the language of the site and of deploy_ops's commands (default en-us; es for Spanish)
"""

import json
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent


def _read_dotenv(path: Path) -> None:
    # The production checkout keeps its host settings in .env (git-ignored), which Compose reads too.
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            os.environ.setdefault(name.strip(), value)


_read_dotenv(BASE_DIR / ".env")
if os.environ.get("EXTRA_PYTHONPATH"):
    sys.path.insert(0, os.environ["EXTRA_PYTHONPATH"])

import django  # noqa: E402

from deploy_ops.conf import from_environment  # noqa: E402

from . import flags  # noqa: E402


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:] if parts.path.startswith("//") else parts.path.lstrip("/"))
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path if Path(path).is_absolute() else str(BASE_DIR / path)}
    if parts.scheme in ("postgres", "postgresql", "mysql"):
        return {
            "ENGINE": "django.db.backends.mysql" if parts.scheme == "mysql" else "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    raise ValueError(f"DATABASE_URL has an unsupported scheme {parts.scheme!r}; use postgres://, mysql:// or sqlite:///.")


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "sample-site-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "health_check",
    "deploy_ops",
    "notes",
]

MIDDLEWARE = [
    "sitecfg.middleware.injected_health_failure",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "sitecfg.urls"
WSGI_APPLICATION = "sitecfg.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", "sqlite:///db.sqlite3"))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    try:
        import MySQLdb  # noqa: F401
    except ImportError:  # PyMySQL stands in for mysqlclient where no compiler is at hand.
        import pymysql

        pymysql.install_as_MySQLdb()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = os.environ.get("LANGUAGE_CODE", "en-us")

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "sitecfg.storage.BrokenStorage" if flags.COLLECTSTATIC_FAIL else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
if os.environ.get("OFFSITE_STORAGE"):  # where deploy_ops copies backups (DEPLOY_OPS_BACKUP_STORAGE=offsite), as JSON
    STORAGES["offsite"] = json.loads(os.environ["OFFSITE_STORAGE"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}

# Where email notifications go (EMAIL_HOST / EMAIL_PORT in .env); Django 6.1 reads MAILERS.
_SMTP = {"host": os.environ.get("EMAIL_HOST", "localhost"), "port": int(os.environ.get("EMAIL_PORT", "25")), "timeout": 5}
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": _SMTP}}
else:
    EMAIL_HOST, EMAIL_PORT, EMAIL_TIMEOUT = _SMTP["host"], _SMTP["port"], _SMTP["timeout"]
DEFAULT_FROM_EMAIL = "deploys@sample-site.example"

# What /health/ checks inside the release: no Docker engine and no backups folder in here.
SITE_HEALTH_CHECKS = [
    "health_check.checks.Database",
    "health_check.checks.Cache",
    "deploy_ops.health.checks.MigrationsApplied",
    "deploy_ops.health.checks.LastDeployment",
]
DEPLOY_OPS = {"HEALTH_CHECKS": SITE_HEALTH_CHECKS, **from_environment()}
