"""``rollback --commit`` finds the migrations to unapply with Django's loader, end to end: a real git
origin, the sample site deployed by the commands runtime, SQLite and PostgreSQL.

Release 3 has what a folder-name regex gets wrong: an app whose label (``stock``) is not its folder
(``stock_app``), a squashed migration (notes 0002+0003, the originals deleted), and a dependency
between the two apps (stock's first migration needs the squashed notes one).  Release 2 is the same
schema before the squash: going back to it unapplies nothing.
"""

import json

import pytest

from tests.e2e.helpers import deploy, failure_text, last_record, manage
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import postgres_url

pytestmark = pytest.mark.slow

NOTE_MODEL = """from django.db import models


class Note(models.Model):
    text = models.TextField()
    pinned = models.BooleanField(default=False)
    color = models.CharField(max_length=20, default="")

    def __str__(self):
        return self.text
"""
PINNED = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.AddField("note", "pinned", models.BooleanField(default=False))]
"""
COLOR = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0002_note_pinned")]
    operations = [migrations.AddField("note", "color", models.CharField(max_length=20, default=""))]
"""
SQUASHED = """from django.db import migrations, models


class Migration(migrations.Migration):
    replaces = [("notes", "0002_note_pinned"), ("notes", "0003_note_color")]
    dependencies = [("notes", "0001_initial")]
    operations = [
        migrations.AddField("note", "pinned", models.BooleanField(default=False)),
        migrations.AddField("note", "color", models.CharField(max_length=20, default="")),
    ]
"""
STOCK_APP = """from django.apps import AppConfig


class StockConfig(AppConfig):
    name = "stock_app"
    label = "stock"
"""
STOCK_MODELS = """from django.db import models


class Item(models.Model):
    note = models.ForeignKey("notes.Note", on_delete=models.CASCADE)
"""


def stock_initial(notes_migration: str) -> str:
    return f'''from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = [("notes", "{notes_migration}")]
    operations = [
        migrations.CreateModel(
            "Item",
            [
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("note", models.ForeignKey(on_delete=models.deletion.CASCADE, to="notes.note")),
            ],
        ),
    ]
'''


def releases_2_and_3(site) -> tuple[str, str]:
    settings = (site.work / "sitecfg/settings.py").read_text()
    assert '    "notes",\n]' in settings
    release_2 = site.commit_change(
        {
            "sitecfg/settings.py": settings.replace('    "notes",\n]', '    "notes",\n    "stock_app",\n]'),
            "notes/models.py": NOTE_MODEL,
            "notes/migrations/0002_note_pinned.py": PINNED,
            "notes/migrations/0003_note_color.py": COLOR,
            "stock_app/__init__.py": "",
            "stock_app/apps.py": STOCK_APP,
            "stock_app/models.py": STOCK_MODELS,
            "stock_app/migrations/__init__.py": "",
            "stock_app/migrations/0001_initial.py": stock_initial("0003_note_color"),
        },
        "Release 2: pinned and colored notes, a stock app",
    )
    release_3 = site.commit_change(
        {
            "notes/migrations/0002_note_pinned.py": None,
            "notes/migrations/0003_note_color.py": None,
            "notes/migrations/0002_squashed_0003_note_color.py": SQUASHED,
            "stock_app/migrations/0001_initial.py": stock_initial("0002_squashed_0003_note_color"),
        },
        "Release 3: notes' migrations squashed",
    )
    return release_2, release_3


def applied(site) -> list[str]:
    query = (
        "import json; from django.db.migrations.recorder import MigrationRecorder as R; "
        "print(json.dumps(sorted(f'{a}.{n}' for a, n in R.Migration.objects.values_list('app', 'name') if a in ('notes', 'stock'))))"
    )
    return json.loads(site.manage("shell", "--verbosity", "0", "-c", query).strip().splitlines()[-1])


def tables(site) -> list[str]:
    return site.manage(
        "shell", "--verbosity", "0", "-c", "from django.db import connection; print(*connection.introspection.table_names(), sep='\\n')"
    ).split()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_rollback_unapplies_by_app_label_through_a_squash_and_across_apps(sample_site, engine, request):
    database_url = postgres_url(request.getfixturevalue("postgres_database")) if engine == "postgresql" else "sqlite:///db.sqlite3"
    serving_release_1(sample_site, database_url)
    release_2, _ = releases_2_and_3(sample_site)
    deployed = deploy(sample_site)
    assert deployed.returncode == 0, failure_text(deployed)
    assert applied(sample_site) == [
        "notes.0001_initial",
        "notes.0002_note_pinned",
        "notes.0002_squashed_0003_note_color",
        "notes.0003_note_color",
        "stock.0001_initial",
    ]

    # Release 2 has the migrations the squash replaces: the schema is the same, nothing to unapply.
    to_release_2 = manage(sample_site, "rollback", "--commit", release_2, "--dry-run")
    assert to_release_2.returncode == 0, failure_text(to_release_2)
    assert "unapply" not in to_release_2.stdout, to_release_2.stdout

    # Release 1 has neither: stock's migration goes first (it depends on the squashed one), by its label.
    dry = manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--dry-run")
    assert (
        "unapply stock.0001_initial, notes.0002_squashed_0003_note_color (migrate notes 0001_initial; migrate stock zero)" in dry.stdout
    ), failure_text(dry)
    finished = manage(sample_site, "rollback", "--commit", sample_site.initial_sha, "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == sample_site.initial_sha
    assert applied(sample_site) == ["notes.0001_initial"]
    assert "stock_item" not in tables(sample_site)
    columns = sample_site.manage(
        "shell",
        "-c",
        "from django.db import connection; print([c.name for c in "
        "connection.introspection.get_table_description(connection.cursor(), 'notes_note')])",
    )
    assert "pinned" not in columns and "color" not in columns
    assert sample_site.notes() == ["first", "second"]
    assert [stage["name"] for stage in last_record(sample_site)["stages"]][:3] == ["safety backup", "unapply migrations", "revert code"]


def test_a_rollback_that_would_unapply_a_migration_the_target_keeps_is_refused_before_anything_changes(sample_site):
    """Release 3 edited stock's first migration to depend on a new notes one; release 2 has that stock
    migration (by name) but not the notes one.  Unapplying notes' would unapply stock's too."""
    sample_site.use_commands()
    settings = (sample_site.work / "sitecfg/settings.py").read_text()
    stock_app = {
        "stock_app/__init__.py": "",
        "stock_app/apps.py": STOCK_APP,
        "stock_app/models.py": STOCK_MODELS,
        "stock_app/migrations/__init__.py": "",
    }
    release_2 = sample_site.commit_change(
        {
            **stock_app,
            "sitecfg/settings.py": settings.replace('    "notes",\n]', '    "notes",\n    "stock_app",\n]'),
            "stock_app/migrations/0001_initial.py": stock_initial("0001_initial"),
        },
        "Release 2: a stock app",
    )
    sample_site.commit_change(
        {"notes/migrations/0002_note_pinned.py": PINNED, "stock_app/migrations/0001_initial.py": stock_initial("0002_note_pinned")},
        "Release 3: pinned notes, and stock's migration edited to need them",
    )
    head = sample_site.checkout_latest()
    sample_site.manage("migrate", "--verbosity", "0")
    before = applied(sample_site)

    finished = manage(sample_site, "rollback", "--commit", release_2, "--noinput")

    assert finished.returncode == 3, failure_text(finished)
    assert "unapplying them would also unapply stock.0001_initial, which that commit still has" in finished.stderr, failure_text(finished)
    assert sample_site.production_head() == head
    assert applied(sample_site) == before == ["notes.0001_initial", "notes.0002_note_pinned", "stock.0001_initial"]
