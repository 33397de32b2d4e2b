"""``LANGUAGE_CODE = "es"`` (or ``--lang es``) gives Spanish: the admin's record list, a record and the
dashboard, the health checks' messages, a notification received by a real SMTP server and a real
HTTP (Slack-shaped) receiver, the commands' output and their help. The whole deploy and rollback in
Spanish is tests/e2e/test_spanish_deploy.py; the catalog's completeness is test_translations.py."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone, translation
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from deploy_ops.health.checks import BackupFreshness, LastDeployment
from deploy_ops.models import DeploymentRecord
from deploy_ops.notifications import Level, build_event, send
from tests.records import history

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "deploy_ops.notifications.email.EmailChannel"
SLACK = "deploy_ops.notifications.slack.SlackChannel"


@pytest.fixture
def spanish(settings):
    settings.LANGUAGE_CODE = "es"
    yield
    translation.deactivate()


@pytest.fixture
def deploy_history(ops_dirs):
    now = timezone.now().replace(microsecond=0)
    return now, history(ops_dirs, now)


def test_the_record_list_a_record_and_the_dashboard_are_in_spanish(spanish, admin_client, deploy_history, ops_dirs):
    _now, records = deploy_history
    listing = admin_client.get("/admin/deploy_ops/deploymentrecord/").content.decode()
    assert "Panel de entregas" in listing and "Resultado" in listing and ">Outcome<" not in listing

    backup = ops_dirs / "backups" / records["succeeded"].backup_name
    backup.parent.mkdir(exist_ok=True)
    backup.write_bytes(b"x" * 3000)
    detail = admin_client.get(f"/admin/deploy_ops/deploymentrecord/{records['succeeded'].pk}/change/").content.decode()
    assert "Registro siguiente" in detail and "sin verificar" in detail and "hace " in detail and "2,9\xa0KB" in detail
    assert "not verified" not in detail and "Next record" not in detail

    dashboard = admin_client.get("/admin/deploy_ops/deliverydashboard/?days=7").content.decode()
    for spanish_text in (
        "Métricas de entrega",
        "Últimos 7 días",
        "Tasa de fallos de cambios",
        "Tiempo de restauración (mediana)",
        "Historial de despliegues por resultado",
        "Duración por etapa, despliegues recientes",
    ):
        assert spanish_text in dashboard, spanish_text
    for english in ("Delivery metrics", "Last 7 days", "Change failure rate", "Deploy history by outcome"):
        assert english not in dashboard, english


def test_deploy_report_speaks_spanish_with_lang_es(deploy_history):
    out = StringIO()
    call_command("deploy_report", "--days", "7", "--lang", "es", stdout=out, no_color=True)
    lines = [" ".join(line.split()) for line in out.getvalue().splitlines()]
    assert "Últimos 7 días" in lines
    assert "Tasa de fallos de cambios 75 % (3 de 4)" in lines
    # --lang lasts for the one command: the next one speaks LANGUAGE_CODE (English here) again.
    out = StringIO()
    call_command("deploy_report", "--days", "7", stdout=out, no_color=True)
    assert "Last 7 days" in out.getvalue()


def test_an_unknown_lang_is_a_usage_error_that_names_it(db):
    with pytest.raises(CommandError, match="Unknown language 'xx' for --lang") as refused:
        call_command("deploy_report", "--lang", "xx")
    assert refused.value.returncode == 5


def test_the_health_checks_say_why_in_spanish(spanish, ops_dirs):
    started = timezone.now() - timedelta(minutes=5)
    DeploymentRecord.objects.create(
        kind=DeploymentRecord.Kind.DEPLOY,
        status=DeploymentRecord.Status.ROLLED_BACK,
        to_commit="b" * 40,
        from_commit="a" * 40,
        failed_stage="health",
        started_at=started,
        finished_at=started + timedelta(seconds=30),
    )
    with pytest.raises(ServiceWarning) as warned:
        LastDeployment().check_record()
    assert warned.value.message.startswith(f"El último despliegue (de {'b' * 12}, iniciado el ")
    assert warned.value.message.endswith(f"falló en la etapa 'health' y se revirtió a {'a' * 12}; la versión anterior está en servicio.")
    with pytest.raises(ServiceUnavailable) as failed:
        BackupFreshness().run()
    assert failed.value.message == "No hay ninguna copia de seguridad en BACKUP_DIR. Haga una con `manage.py backups create`."


def test_the_healthcheck_command_answers_in_spanish(spanish, ops_dirs, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_CHECKS": ["deploy_ops.health.checks.BackupFreshness"]}
    out = StringIO()
    with pytest.raises(CommandError, match=r"^1 comprobación de salud falló: BackupFreshness"):
        call_command("healthcheck", "--site", stdout=out, no_color=True)
    assert "No hay ninguna copia de seguridad en BACKUP_DIR" in out.getvalue()


@pytest.fixture
def failed_deploy(ops_dirs):
    started = timezone.now() - timedelta(seconds=42)
    return DeploymentRecord.objects.create(
        kind=DeploymentRecord.Kind.DEPLOY,
        status=DeploymentRecord.Status.FAILED,
        requested_ref="main",
        from_commit="a" * 40,
        to_commit="b" * 40,
        to_summary="Add the new signature field",
        failed_stage="migrate",
        error="django.db.utils.ProgrammingError: column missing",
        host="prod-1",
        started_at=started,
        duration=42.0,
    )


def test_a_notification_arrives_in_spanish_by_email_and_slack(spanish, settings, failed_deploy, smtp_receiver, http_receiver):
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "PROJECT_NAME": "certificados",
        "ENVIRONMENT": "produccion",
        "NOTIFICATIONS": [
            {"BACKEND": EMAIL, "RECIPIENTS": ["ops@example.org"]},
            {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + "/slack"},
        ],
    }
    deliveries = send(build_event(Level.ERROR, failed_deploy))
    assert all(delivery.ok for delivery in deliveries), deliveries

    [message] = smtp_receiver.messages
    # Non-ASCII, the subject is sent as encoded words on a folded line; unfolded, it starts with that fold's space.
    assert message["Subject"].strip() == f"[certificados/produccion] ERROR: Despliegue de {'b' * 12} fallido en la etapa migración"
    body = [" ".join(line.split()) for line in message.get_content().splitlines()]
    assert "Etapa fallida: migrate" in body and "Servidor: prod-1" in body and "Error (últimas líneas):" in body

    [request] = http_receiver.requests
    slack = request.json()
    assert slack["text"] == f"[certificados/produccion] ERROR: Despliegue de {'b' * 12} fallido en la etapa migración"
    fields = [field["text"] for field in slack["blocks"][1]["fields"]]
    assert fields[:3] == ["*Proyecto*\ncertificados", "*Entorno*\nproduccion", "*Servidor*\nprod-1"]


def test_manage_py_with_lang_es_prints_spanish_help_and_output(ops_dirs, tmp_path):
    environment = {"DEPLOY_OPS_BACKUP_DIR": str(tmp_path / "no-backups-yet"), "PATH": "/usr/bin:/bin"}
    listed = subprocess.run(
        [sys.executable, "manage.py", "backups", "list", "--lang", "es"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("No hay copias de seguridad en "), listed.stdout
    helped = subprocess.run(
        [sys.executable, "manage.py", "notify", "--help", "--lang", "es"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "Enviar un evento de prueba (no se despliega nada)." in " ".join(helped.stdout.split()), helped.stdout
