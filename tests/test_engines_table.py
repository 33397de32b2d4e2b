"""One table of supported databases: the system checks and the backups read it, so they agree on every ENGINE."""

import pytest

from deploy_ops import checks
from deploy_ops.databases import VENDORS, engine_for
from deploy_ops.exceptions import ConfigurationError

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

ENGINES = {
    "django.db.backends.postgresql": "postgresql",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "tests.fixtures.postgresql_built_on": "postgresql",
    "django.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.mysql": "mysql",
    "django.db.backends.sqlite3": "sqlite",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
    "django.db.backends.oracle": None,
    "no.such.backend": None,
}


@pytest.mark.parametrize("engine, vendor", ENGINES.items())
def test_the_checks_accept_and_need_tools_for_exactly_the_databases_engine_for_backs_up(settings, ops_dirs, engine, vendor):
    settings.DATABASES = {**settings.DATABASES, "target": {"ENGINE": engine, "NAME": "site"}}
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "BACKUP_DATABASE": "target",
        "RUNTIME": "commands",
        "COMMANDS": {"start": ["true"], "stop": ["true"]},
    }
    try:
        backed_up_as = engine_for("target").vendor
    except ConfigurationError:
        backed_up_as = None
    refused = [error for error in checks.check_settings(None) if error.id == checks.E003]

    assert backed_up_as == vendor
    assert bool(refused) == (backed_up_as is None)
    assert checks.needed_tools() == ["git", *(VENDORS[backed_up_as].host_tools if backed_up_as else ())]
