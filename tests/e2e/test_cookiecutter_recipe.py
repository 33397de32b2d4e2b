"""docs/recipes/cookiecutter-django.md, run exactly: a project with cookiecutter-django's conventions
(tests/fixtures/cookiecutter_site.py) deploys a good release on its first try and rolls back a bad
one, on the real Docker engine and PostgreSQL (issue 18 item 6, and items 1-5 as that layout meets
them); then a release whose /health/ warns, logged with a traceback by django-health-check, deploys
(item 2: before, the verify stage's log scan rolled it back)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.e2e.helpers import failure_text, wait_for
from tests.fixtures.backups import psql
from tests.fixtures.cookiecutter_site import DOMAIN, CookiecutterSite
from tests.fixtures.sample_site import _NO_PROXY

pytestmark = [pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]


def get(site: CookiecutterSite, path: str = "/") -> tuple[int | None, str]:
    """A GET as Traefik sends it: the domain, https forwarded."""
    request = urllib.request.Request(f"http://127.0.0.1:{site.port}{path}", headers={"Host": DOMAIN, "X-Forwarded-Proto": "https"})
    try:
        with _NO_PROXY.open(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return None, str(error)


@pytest.fixture
def first_started(tmp_path, docker_engine, postgres_database):
    """The recipe's step 6: the very first start, then migrate, with two notes written by users."""
    site = CookiecutterSite(tmp_path, docker_engine, postgres_database)
    try:
        started = site.compose("up", "--detach", "--build", "--wait", "--wait-timeout", "90")
        assert started.returncode == 0, started.stderr
        migrated = site.compose("exec", "-T", "django", "python", "manage.py", "migrate", "--noinput")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        psql(postgres_database, "INSERT INTO notes_note (text) VALUES ('first'), ('second')")
        assert get(site) == (200, "release 1\nnotes 2\n")
        yield site
    finally:
        site.close()


def notes(site) -> list[str]:
    return psql(site.database, "SELECT text FROM notes_note ORDER BY id").splitlines()


def test_the_recipe_deploys_a_good_release_on_the_first_try_and_rolls_back_a_bad_one(first_started):
    site = first_started
    checked = site.manage("check", "--deploy")
    assert "deploy_ops." not in checked.stdout + checked.stderr, failure_text(checked)

    release_2 = site.commit_change({"release.txt": "2\n"}, "Release 2")
    # Without the recipe's WEB_SERVICE, the dry run refuses before it would fail at migrate.
    misnamed = site.manage("deploy", "--dry-run", DEPLOY_OPS_WEB_SERVICE="web")
    assert misnamed.returncode == 3, failure_text(misnamed)
    assert "WEB_SERVICE is 'web', but the Compose project's services are django, postgres" in misnamed.stderr
    planned = site.manage("deploy", "--dry-run")
    assert planned.returncode == 0, failure_text(planned)
    assert "  collectstatic: skipped: COLLECT_STATIC is False" in planned.stdout

    deployed = site.manage("deploy", "--noinput")

    assert deployed.returncode == 0, failure_text(deployed)
    assert site.production_head() == release_2
    assert get(site) == (200, "release 2\nnotes 2\n")
    listed = site.manage("backups", "list")
    assert listed.returncode == 0 and "backup_" in listed.stdout, failure_text(listed)

    # A release whose migration rewrites every note and whose /health/ fails.
    urls = (site.work / "config" / "urls.py").read_text()
    site.commit_change(
        {
            "mysite/notes/migrations/0002_rewrite.py": REWRITING_MIGRATION,
            "config/urls.py": urls
            + "\nfrom django.http import HttpResponse  # noqa: E402\n\n"
            + "urlpatterns.insert(0, path('health/', lambda request: HttpResponse('broken', status=500)))\n",
            "release.txt": "3\n",
        },
        "Release 3: rewrites the notes, and its health check fails",
    )

    rolled_back = site.manage("deploy", "--noinput", "--health-retries", "3")

    assert rolled_back.returncode == 1, failure_text(rolled_back)
    assert "Rolled back" in rolled_back.stdout
    assert site.production_head() == release_2
    assert notes(site) == ["first", "second"]
    wait_for(lambda: get(site) == (200, "release 2\nnotes 2\n"), timeout=30)

    # The list /health/ ran by default before 9.7: ServicesRunning warns inside the container (no
    # Docker CLI there), and django-health-check logs that warning with a traceback, which the
    # template's LOGGING prints. The verify stage's log scan must not fail the release for it.
    # (The container borrows the host's /usr, Docker CLI included; a real image has none, which
    # the container's COMPOSE_COMMAND stands for here. The host's own value overrides it.)
    with open(site.production / ".envs" / ".production" / ".django", "a") as django_env:
        django_env.write('DEPLOY_OPS_HEALTH_CHECKS=\'["health_check.checks.Database", "deploy_ops.health.checks.ServicesRunning"]\'\n')
        django_env.write("DEPLOY_OPS_COMPOSE_COMMAND='[\"docker-cli-not-in-this-image\"]'\n")
    release_4 = site.commit_change(
        {"release.txt": "4\n", "config/urls.py": urls, "mysite/notes/migrations/0002_rewrite.py": None}, "Release 4"
    )

    warned = site.manage("deploy", "--noinput")

    assert warned.returncode == 0, failure_text(warned)
    assert "deploy_ops.W035" in warned.stdout
    assert site.production_head() == release_4
    logs = site.compose("logs", "django")
    assert "Health check ServicesRunning() failed" in logs.stdout and "Traceback (most recent call last)" in logs.stdout


REWRITING_MIGRATION = """from django.db import migrations


def rewrite(apps, schema_editor):
    apps.get_model("notes", "Note").objects.update(text="rewritten by release 3")


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.RunPython(rewrite, migrations.RunPython.noop)]
"""
