"""The sample site (``demo/site``): a small Django project that deploy_ops deploys in the demo and
the end-to-end tests, under Docker Compose or under the commands runtime with servectl.

A production checkout of it keeps its host settings in a git-ignored ``.env`` that both Compose
and the site's settings read; :func:`write_dotenv` writes one from the helpers below.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import deploy_ops

from .. import servectl

SITE_TEMPLATE = Path(__file__).resolve().parent / "site"
BASE_IMAGE = "deploy-ops-test-base:latest"
# Where the commands runtime keeps the web process's pid and output, inside the checkout.
WEB_PIDFILE = ".deploy_ops/web.pid"
WEB_LOGFILE = "logs/web.log"

_NOT_PART_OF_THE_SITE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".env", "db.sqlite3", "staticfiles", "logs", "backups", ".deploy_ops"
)


def copy_site(destination: Path) -> Path:
    """A fresh copy of the sample site at ``destination`` (which must not exist yet)."""
    shutil.copytree(SITE_TEMPLATE, destination, ignore=_NOT_PART_OF_THE_SITE)
    return Path(destination)


def deploy_ops_source() -> str:
    """The folder that holds the deploy_ops package (EXTRA_PYTHONPATH when it is not pip-installed)."""
    return str(Path(deploy_ops.__file__).resolve().parent.parent)


def container_python_environment() -> dict[str, str]:
    """The compose.yaml variables that mount this host's Python, virtualenv and deploy_ops read-only."""
    if sys.prefix == sys.base_prefix:
        raise RuntimeError("The sample site's container runs the host's virtualenv: run this from a virtualenv with the site's packages.")
    python_home = Path(sys.base_prefix).resolve()
    if python_home.is_relative_to("/usr"):
        # A system Python is inside /usr, which compose.yaml mounts anyway; a mount target may
        # not repeat, so PYTHON_HOME names a harmless folder of the virtualenv instead.
        python_home = Path(sys.prefix) / "include"
    return {
        "PYTHON_HOME": str(python_home),
        "PYTHON_VENV": sys.prefix,
        "EXTRA_PYTHONPATH": deploy_ops_source(),
    }


def servectl_commands(web_port: int, python: str = sys.executable) -> dict[str, list[str]]:
    """COMMANDS for the commands runtime: ``runserver`` supervised by servectl, on 127.0.0.1:web_port."""
    # servectl is run by its file path: it finds the package it sits in by itself, so the Python that
    # runs it needs no deploy_ops on its path, and the standard library is all it imports besides.
    supervisor = [python, servectl.__file__]
    return {
        "start": [
            *supervisor,
            "start",
            "--pidfile",
            WEB_PIDFILE,
            "--logfile",
            WEB_LOGFILE,
            "--grace",
            "2",
            "--",
            python,
            "manage.py",
            "runserver",
            "--noreload",
            f"127.0.0.1:{web_port}",
        ],
        "stop": [*supervisor, "stop", "--pidfile", WEB_PIDFILE, "--timeout", "10"],
        "check": [*supervisor, "status", "--pidfile", WEB_PIDFILE],
    }


def deploy_ops_environment(settings: dict) -> dict[str, str]:
    """``DEPLOY_OPS_<KEY>`` variables for a DEPLOY_OPS dict (JSON for lists and dicts), as deploy_ops.conf reads them."""
    return {
        f"DEPLOY_OPS_{key}": json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value) for key, value in settings.items()
    }


def write_dotenv(site_dir: Path, values: dict[str, str]) -> Path:
    """Write ``site_dir/.env``; single quotes keep JSON values literal for Compose and the site."""
    lines = []
    for name, value in values.items():
        if "'" in value or "\n" in value:
            raise ValueError(f"{name}'s value cannot go into .env in single quotes: {value!r}")
        lines.append(f"{name}='{value}'")
    path = Path(site_dir) / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path
