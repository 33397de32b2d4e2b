"""The delivery metrics, `manage.py deploy_report` and the admin pages, on a real deploy history
(records in the database, commits in a real git checkout). The browser tests are in
test_dashboard_browser.py."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deploy_ops import metrics
from tests.records import history

pytestmark = pytest.mark.django_db


@pytest.fixture
def deploy_history(ops_dirs):
    now = timezone.now().replace(microsecond=0)  # git keeps commit times to the second
    return now, history(ops_dirs, now)


def test_metrics_count_failures_restores_and_lead_time_from_git(deploy_history):
    now, _records = deploy_history
    week = metrics.delivery_metrics(7, now)
    assert (week.deploys, week.failed_deploys, week.change_failure_rate) == (4, 3, 0.75)
    assert week.deploys_per_week == 4
    # Rolled back by itself after 101 s; the failed rollback was repaired by a rollback 32 min after it began;
    # the interrupted deploy has no good release after it yet; the refused one changed nothing, so it is no deploy.
    assert (week.restored, week.still_failing, week.time_to_restore) == (2, 1, (101 + 1920) / 2)
    # The one successful deploy: its commit was made two hours before it started, and it took 71 s.
    assert (week.lead_time_samples, week.lead_time) == (1, 2 * 3600 + 71)


def test_metrics_leave_out_records_older_than_the_window(deploy_history):
    now, _records = deploy_history
    assert metrics.delivery_metrics(1, now).deploys == 0
    assert metrics.delivery_metrics(4, now).deploys == 2  # the failed rollback 3 days ago and the interrupted one


def test_lead_time_is_skipped_when_git_does_not_know_the_commit(ops_dirs):
    from tests.records import record

    record(timezone.now() - timedelta(hours=1), "succeeded", to_commit="f" * 40)
    found = metrics.delivery_metrics(7)
    assert (found.deploys, found.lead_time_samples, found.lead_time) == (1, 0, None)


def test_deploy_report_prints_each_window_in_human_units(deploy_history):
    out = StringIO()
    call_command("deploy_report", "--days", "7", stdout=out, no_color=True)
    text = out.getvalue()
    assert "Last 7 days" in text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "Change failure rate 75 % (3 of 4)" in lines
    assert "Time to restore (median) 16 min 50 s (1 not restored yet)" in lines
    assert "Lead time (median) 2 h 1 min" in lines


def test_deploy_report_json_is_the_dashboards_metrics(deploy_history):
    now, _records = deploy_history
    out = StringIO()
    call_command("deploy_report", "--json", stdout=out)
    found = json.loads(out.getvalue())
    assert [window["days"] for window in found] == [7, 30, 90]
    assert found[0]["change_failure_rate"] == 0.75
    assert found[0]["lead_time"] == metrics.delivery_metrics(7, now).lead_time


def test_deploy_report_refuses_a_window_under_one_day(db):
    with pytest.raises(CommandError, match="--days must be 1 or more") as refused:
        call_command("deploy_report", "--days", "0")
    assert refused.value.returncode == 3


def test_record_list_shows_badges_with_words_durations_summaries_and_excerpts(admin_client, deploy_history):
    page = admin_client.get("/admin/deploy_ops/deploymentrecord/").content.decode()
    for words in ("✓</span> succeeded", "↺</span> rolled back", "‼</span> rollback failed", "⚡</span> interrupted", "⊘</span> refused"):
        assert words in page
    assert "1 min 11 s" in page  # the successful deploy's 71 s
    assert "Rename the customer table" in page
    assert "django.db.utils.ProgrammingError: relation &quot;customer&quot; does not exist" in page
    assert 'class="do-stagebar"' in page
    assert "Delivery dashboard" in page


def test_record_detail_shows_the_error_once_and_links_to_its_neighbours(admin_client, deploy_history):
    _now, records = deploy_history
    page = admin_client.get(f"/admin/deploy_ops/deploymentrecord/{records['rollback_failed'].pk}/change/").content.decode()
    assert page.count("The rollback failed too: the database restore failed") == 1
    assert f"/admin/deploy_ops/deploymentrecord/{records['rolled_back'].pk}/change/" in page  # previous
    assert f"/admin/deploy_ops/deploymentrecord/{records['repair'].pk}/change/" in page  # next


def test_record_detail_shows_the_backups_size_age_and_verification(admin_client, deploy_history, ops_dirs):
    _now, records = deploy_history
    backup_dir = ops_dirs / "backups"
    backup_dir.mkdir()
    (backup_dir / "backup_20261124_101500.sql.gz").write_bytes(b"x" * 3000)
    page = admin_client.get(f"/admin/deploy_ops/deploymentrecord/{records['succeeded'].pk}/change/").content.decode()
    assert "2.9\xa0KB" in page and "not verified" in page and " ago" in page
    missing = admin_client.get(f"/admin/deploy_ops/deploymentrecord/{records['rolled_back'].pk}/change/").content.decode()
    assert "Backup" in missing


def test_admin_index_links_to_the_dashboard(admin_client, db):
    page = admin_client.get("/admin/").content.decode()
    assert "/admin/deploy_ops/deliverydashboard/" in page and "Delivery dashboard" in page


def test_dashboard_draws_metrics_and_three_svg_charts(admin_client, deploy_history):
    page = admin_client.get("/admin/deploy_ops/deliverydashboard/?days=7").content.decode()
    assert "Last 7 days" in page and "Last 90 days" in page and "75 %" in page
    assert page.count('<svg class="do-chart"') == 2  # timeline and stage durations; no backups here
    assert "No backups in this period." in page
    assert "<title>" in page and "rollback failed</title>" in page
    assert "http://" not in page.split("<svg", 1)[1].split("</svg>", 1)[0].replace("http://www.w3.org", "")


def test_dashboard_is_refused_to_staff_without_view_permission(client, django_user_model, db):
    user = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(user)
    assert client.get("/admin/deploy_ops/deliverydashboard/").status_code == 403
