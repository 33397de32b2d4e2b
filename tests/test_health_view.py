"""/health/ and /health/live/ through Django's test client: status codes, JSON, who sees the
details (the token, a staff session, HEALTH_DETAILS_PUBLIC), the status cache, no secrets."""

import dataclasses
import json

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.utils import timezone
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable

from deploy_ops.conf import ops_settings
from deploy_ops.health import views
from deploy_ops.models import DeploymentRecord

from .test_health_checks import write_backup

Status = DeploymentRecord.Status
TOKEN = "health-token-7f3c2a9e"
DISK_FULL = ["deploy_ops.health.checks.BackupDiskSpace", {"min_free_mb": 10**12}]


@pytest.fixture(autouse=True)
def _fresh_status_cache():
    # The status-only answer is cached per process: each test starts without one.
    views._status_cache.clear()
    yield
    views._status_cache.clear()


@pytest.fixture
def healthy_site(ops_dirs, settings, tmp_path):
    """Every default check passes: commands runtime, migrated database, a fresh backup, room on disk; details public."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "HEALTH_DETAILS_PUBLIC": True,
        "RUNTIME": "commands",
        "COMMANDS": {"start": ["true"], "stop": ["true"]},
        "BACKUP_MIN_FREE_MB": 1,
    }
    write_backup(hours_old=0.1, verified=True)
    return ops_dirs


def health_json(client, **headers):
    response = client.get("/health/", {"format": "json"}, **headers)
    return response.status_code, json.loads(response.content)


def failing(results):
    return {name: message for name, message in results.items() if message != "OK"}


# -- acceptance: the default checks ---------------------------------------------------------------
@pytest.mark.django_db
def test_health_json_is_200_and_all_ok_when_everything_is_fine(client, healthy_site):
    status, results = health_json(client)
    assert failing(results) == {}
    assert status == 200
    assert list(results) == [
        "Database(alias='default')",
        "Cache(alias='default')",
        "Storage(alias='default')",
        "MigrationsApplied(alias='default')",
        "LastDeployment()",
        "RunningCommit()",
    ]


@pytest.mark.django_db
def test_health_is_500_naming_a_pending_migration(client, healthy_site):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'sessions' AND name = '0001_initial'")
    status, results = health_json(client)
    assert status == 500
    assert failing(results) == {
        "MigrationsApplied(alias='default')": (
            "Unavailable: 1 migration(s) not applied to database 'default': sessions.0001_initial. Run `manage.py migrate`."
        )
    }


@pytest.mark.django_db
def test_health_is_500_when_the_last_deploys_rollback_failed(client, healthy_site):
    DeploymentRecord.objects.create(status=Status.ROLLBACK_FAILED, failed_stage="migrate", to_commit="b" * 40, started_at=timezone.now())
    status, results = health_json(client)
    assert status == 500
    assert list(failing(results)) == ["LastDeployment()"]
    assert "failed at stage 'migrate' and its rollback failed too" in results["LastDeployment()"]


@pytest.mark.django_db
def test_health_is_500_when_the_newest_backup_is_too_old(client, healthy_site, settings):
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "HEALTH_CHECKS": [*ops_settings.HEALTH_CHECKS, "deploy_ops.health.checks.BackupFreshness"],
    }
    for backup in ops_settings.backup_dir.iterdir():
        backup.unlink()
    name = write_backup(hours_old=27, verified=True)
    status, results = health_json(client)
    assert status == 500
    assert failing(results) == {
        "BackupFreshness(max_age_hours=None)": f"Unavailable: The newest verified backup, {name}, is 27.0 hours old (limit 26). "
        "Check the backup schedule (`manage.py backups create`)."
    }


@pytest.mark.django_db
def test_a_warning_shows_in_the_details_but_keeps_health_at_200(client, healthy_site):
    DeploymentRecord.objects.create(status=Status.ROLLED_BACK, failed_stage="health", from_commit="c" * 40, started_at=timezone.now())
    status, results = health_json(client)
    assert status == 200
    assert list(failing(results)) == ["LastDeployment()"]
    assert results["LastDeployment()"].startswith("Warning: The last deploy")


# -- liveness -------------------------------------------------------------------------------------
def test_liveness_answers_ok_without_touching_the_database(client, django_assert_num_queries, db):
    with django_assert_num_queries(0):
        response = client.get("/health/live/")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]


def test_liveness_answers_even_with_no_database_access_at_all(client):
    # Without the db fixture pytest-django makes any query raise: liveness needs none.
    assert client.get("/health/live/").status_code == 200


# -- the token ------------------------------------------------------------------------------------
@pytest.fixture
def token_site(ops_dirs, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_TOKEN": TOKEN, "HEALTH_CHECKS": ["health_check.checks.Cache", DISK_FULL]}


def test_without_the_token_only_the_status_code_and_a_word_are_shown(client, token_site):
    response = client.get("/health/", {"format": "json"})
    assert response.status_code == 500
    assert json.loads(response.content) == {"status": "error"}
    text = client.get("/health/")
    assert (text.status_code, text.content) == (500, b"error\n")


def test_a_wrong_token_is_treated_like_no_token(client, token_site):
    response = client.get("/health/", {"format": "json", "token": "not-" + TOKEN})
    assert (response.status_code, json.loads(response.content)) == (500, {"status": "error"})


def test_without_the_token_a_healthy_site_answers_200_ok(client, token_site, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_CHECKS": ["health_check.checks.Cache"]}
    response = client.get("/health/")
    assert (response.status_code, response.content) == (200, b"ok\n")


@pytest.mark.parametrize("how", ["query", "header"])
def test_with_the_token_the_details_are_shown(client, token_site, how):
    if how == "query":
        response = client.get("/health/", {"format": "json", "token": TOKEN})
    else:
        response = client.get("/health/", {"format": "json"}, HTTP_X_HEALTH_TOKEN=TOKEN)
    assert response.status_code == 500
    results = json.loads(response.content)
    assert results["Cache(alias='default')"] == "OK"
    assert results["BackupDiskSpace(min_free_mb=1000000000000)"].startswith("Unavailable: Only ")


@pytest.mark.parametrize("output", ["json", "text", "atom", "rss", "openmetrics", None])
def test_the_token_never_appears_in_any_output_format(client, token_site, output):
    query = {"token": TOKEN, **({"format": output} if output else {})}
    response = client.get("/health/", query, HTTP_ACCEPT="text/html")
    assert response.status_code in (200, 500)
    assert b"BackupDiskSpace" in response.content
    assert TOKEN.encode() not in response.content
    assert all(TOKEN not in value for value in response.headers.values())


# -- secrets in errors ----------------------------------------------------------------------------
@pytest.fixture
def wrong_password_alias(mysql_database, django_db_blocker):
    """A real MariaDB alias whose password the server rejects (outside any test transaction)."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        import pymysql

        pymysql.install_as_MySQLdb()
    alias = "wrong_password"
    entry = {**mysql_database, "PASSWORD": "s3cret-Pa55word-for-health"}
    configured = connections.configure_settings({"default": dict(connections.settings["default"]), alias: entry})
    connections.settings[alias] = configured[alias]
    with django_db_blocker.unblock():
        yield alias, entry["PASSWORD"]
    connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


def test_a_database_that_refuses_the_password_fails_health_without_showing_it(client, settings, ops_dirs, wrong_password_alias, caplog):
    alias, password = wrong_password_alias
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "HEALTH_DETAILS_PUBLIC": True,
        "HEALTH_CHECKS": [
            ["health_check.checks.Database", {"alias": alias}],
            ["deploy_ops.health.checks.MigrationsApplied", {"alias": alias}],
        ],
    }
    for output in ("json", "text", "openmetrics"):
        response = client.get("/health/", {"format": output})
        assert password not in response.content.decode()
    status, results = health_json(client)
    assert status == 500
    assert (
        results[f"MigrationsApplied(alias='{alias}')"]
        == f"Unavailable: The migration state could not be read from database '{alias}' (OperationalError)."
    )
    assert results[f"Database(alias='{alias}')"].startswith("Unavailable: ")
    assert password not in caplog.text


@pytest.mark.django_db
def test_health_responses_are_never_cached(client, token_site):
    response = client.get("/health/", {"format": "json"})
    assert "no-cache" in response["Cache-Control"]


# -- who sees the details -------------------------------------------------------------------------
SECRET_DETAIL = "/srv/site/private-path"


@dataclasses.dataclass
class RevealingCheck(HealthCheck):
    """Fails with a message no anonymous visitor may read; counts its runs."""

    runs = 0

    def run(self):
        type(self).runs += 1
        raise ServiceUnavailable(f"broken at {SECRET_DETAIL}")


@dataclasses.dataclass
class CountingCheck(HealthCheck):
    """Passes; counts its runs (a stand-in for an expensive check such as `docker compose config`)."""

    runs = 0

    def run(self):
        type(self).runs += 1


@pytest.fixture
def default_site(ops_dirs, settings):
    """Default visibility settings, one failing check whose message must stay private."""
    RevealingCheck.runs = CountingCheck.runs = 0
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_CHECKS": ["tests.test_health_view.RevealingCheck"]}


STATUS_ONLY = {"text": (500, b"error\n"), "json": (500, b'{"status": "error"}')}
OPENMETRICS_STATUS_ONLY = (
    b"# HELP django_health_check_overall_status Overall health check status (1 = all healthy, 0 = at least one unhealthy)\n"
    b"# TYPE django_health_check_overall_status gauge\n"
    b"django_health_check_overall_status 0\n# EOF\n"
)


@pytest.mark.parametrize(
    "query, accept, expected",
    [
        ({}, "text/html", STATUS_ONLY["text"]),
        ({}, "*/*", STATUS_ONLY["text"]),
        ({"format": "text"}, "", STATUS_ONLY["text"]),
        ({}, "text/plain", STATUS_ONLY["text"]),
        ({"format": "json"}, "", STATUS_ONLY["json"]),
        ({}, "application/json", STATUS_ONLY["json"]),
        ({"format": "atom"}, "", STATUS_ONLY["text"]),
        ({}, "application/atom+xml", STATUS_ONLY["text"]),
        ({"format": "rss"}, "", STATUS_ONLY["text"]),
        ({}, "application/rss+xml", STATUS_ONLY["text"]),
        ({"format": "openmetrics"}, "", (200, OPENMETRICS_STATUS_ONLY)),
        ({}, "application/openmetrics-text", (200, OPENMETRICS_STATUS_ONLY)),
    ],
    ids=[
        "html",
        "any",
        "text",
        "text-accept",
        "json",
        "json-accept",
        "atom",
        "atom-accept",
        "rss",
        "rss-accept",
        "openmetrics",
        "openmetrics-accept",
    ],
)
def test_by_default_an_anonymous_request_sees_only_the_status_in_every_format(client, default_site, query, accept, expected):
    response = client.get("/health/", query, HTTP_ACCEPT=accept)
    assert (response.status_code, response.content) == expected
    assert b"RevealingCheck" not in response.content and SECRET_DETAIL.encode() not in response.content


@pytest.mark.django_db
def test_a_staff_session_sees_the_details(client, default_site):
    client.force_login(User.objects.create_user("operator", is_staff=True))
    response = client.get("/health/", {"format": "json"})
    assert (response.status_code, json.loads(response.content)) == (500, {"RevealingCheck()": f"Unavailable: broken at {SECRET_DETAIL}"})


@pytest.mark.django_db
def test_a_session_without_staff_status_sees_only_the_status(client, default_site):
    client.force_login(User.objects.create_user("visitor", is_staff=False))
    response = client.get("/health/", {"format": "json"})
    assert (response.status_code, json.loads(response.content)) == (500, {"status": "error"})


def test_health_details_public_shows_the_details_to_everyone(client, default_site, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_DETAILS_PUBLIC": True}
    response = client.get("/health/", {"format": "json"})
    assert json.loads(response.content) == {"RevealingCheck()": f"Unavailable: broken at {SECRET_DETAIL}"}


@pytest.mark.parametrize("accept", ["garbage", "text/html;q", "text/html, , ;;"])
@pytest.mark.parametrize("who", ["anonymous", "token"])
def test_a_malformed_accept_header_gets_the_status_not_a_500_page(client, default_site, settings, accept, who):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_TOKEN": TOKEN}
    headers = {"HTTP_X_HEALTH_TOKEN": TOKEN} if who == "token" else {}
    response = client.get("/health/", HTTP_ACCEPT=accept, **headers)
    assert (response.status_code, response.content) == (500, b"error\n")


# -- the status cache -----------------------------------------------------------------------------
@pytest.fixture
def counted_site(ops_dirs, settings):
    CountingCheck.runs = 0
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_TOKEN": TOKEN, "HEALTH_CHECKS": ["tests.test_health_view.CountingCheck"]}


def test_a_flood_of_anonymous_polls_runs_the_checks_once_per_cache_window(client, counted_site):
    answers = {(response.status_code, response.content) for response in (client.get("/health/") for _ in range(20))}
    assert answers == {(200, b"ok\n")}
    assert CountingCheck.runs == 1


def test_the_status_is_computed_again_once_the_cache_window_has_passed(client, counted_site, monkeypatch):
    client.get("/health/")
    later = views.time.monotonic() + ops_settings.HEALTH_STATUS_CACHE_SECONDS + 1
    monkeypatch.setattr(views.time, "monotonic", lambda: later)
    client.get("/health/")
    assert CountingCheck.runs == 2


def test_a_cache_of_zero_seconds_runs_the_checks_on_every_poll(client, counted_site, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_STATUS_CACHE_SECONDS": 0}
    for _ in range(3):
        client.get("/health/")
    assert CountingCheck.runs == 3


def test_details_are_never_served_from_the_cache(client, counted_site):
    client.get("/health/")
    for _ in range(3):
        response = client.get("/health/", {"format": "json"}, HTTP_X_HEALTH_TOKEN=TOKEN)
        assert json.loads(response.content) == {"CountingCheck()": "OK"}
    assert CountingCheck.runs == 4


def test_the_cached_status_follows_a_change_of_the_configured_checks(client, counted_site, settings):
    assert client.get("/health/").status_code == 200
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_CHECKS": ["tests.test_health_view.CountingCheck", DISK_FULL]}
    assert client.get("/health/").status_code == 500
