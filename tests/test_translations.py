"""The Spanish catalog is complete and compiled: every text deploy_ops marks for translation has a
Spanish translation in ``deploy_ops/locale/es/LC_MESSAGES/django.po`` that is not fuzzy, the
catalog holds nothing the code no longer says, and the committed ``django.mo`` is that ``.po``
compiled. Regenerating runs Django's ``makemessages`` (GNU xgettext, installed by .ci/gettext) over
a copy of the package, so the committed files are never touched.

To update the catalog after changing a text (the same command the test runs, then compile):

    cd deploy_ops && python ../manage.py makemessages -l es --ignore 'demo/site/*' --add-location file --no-obsolete
    python ../manage.py compilemessages -l es
"""

from __future__ import annotations

import gettext
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.environment import skip_or_fail

PACKAGE = Path(__file__).resolve().parent.parent / "deploy_ops"
CATALOG = PACKAGE / "locale" / "es" / "LC_MESSAGES" / "django.po"
COMPILED = CATALOG.with_suffix(".mo")
MANAGE = PACKAGE.parent / "manage.py"
MAKEMESSAGES = ["makemessages", "-l", "es", "--ignore", "demo/site/*", "--add-location", "file", "--no-obsolete"]


def require_gettext() -> None:
    for tool in ("xgettext", "msgmerge", "msgfmt"):
        if shutil.which(tool) is None:
            skip_or_fail(f"GNU gettext's {tool} is not installed (bash .ci/gettext installs it)")


def parse_po(text: str) -> list[dict]:
    """The entries of a .po file: msgctxt, msgid, msgid_plural, msgstr (a list), flags, obsolete."""
    entries, entry, field = [], None, None
    for raw in text.splitlines() + [""]:
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            if entry is not None:
                entries.append(entry)
            entry, field = None, None
            continue
        if line.startswith("#") and not line.startswith("#,"):
            continue  # translator comments and locations
        if entry is None:
            entry = {"msgctxt": None, "msgid": "", "msgid_plural": None, "msgstr": [], "flags": set(), "obsolete": False}
        entry["obsolete"] = entry["obsolete"] or obsolete
        if line.startswith("#,"):
            entry["flags"].update(flag.strip() for flag in line[2:].split(","))
            continue
        if line.startswith('"'):
            value = parse_string(line)
        else:
            field, _space, rest = line.partition(" ")
            value = parse_string(rest)
            if field.startswith("msgstr"):
                entry["msgstr"].append("")
        if field.startswith("msgstr"):
            entry["msgstr"][-1] += value
        else:
            entry[field] = (entry[field] or "") + value
    return entries


def parse_string(quoted: str) -> str:
    return quoted.strip()[1:-1].encode("raw_unicode_escape").decode("unicode_escape")


def messages(entries: list[dict]) -> list[dict]:
    """The translatable entries (not the header, not obsolete ones)."""
    return [entry for entry in entries if entry["msgid"] and not entry["obsolete"]]


def key(entry: dict) -> str:
    return (entry["msgctxt"] + " | " if entry["msgctxt"] else "") + entry["msgid"]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> list[dict]:
    """makemessages over a copy of the package that holds the committed catalog (msgmerge keeps its
    translations; a new text arrives untranslated, a changed one fuzzy, a removed one obsolete)."""
    require_gettext()
    copy = tmp_path_factory.mktemp("catalog") / "deploy_ops"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.mo"))
    finished = subprocess.run(
        [sys.executable, str(MANAGE), *MAKEMESSAGES],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
    )
    assert finished.returncode == 0, finished.stderr
    return parse_po((copy / CATALOG.relative_to(PACKAGE)).read_text(encoding="utf-8"))


def test_every_text_marked_for_translation_has_a_spanish_translation(regenerated):
    missing = [key(entry) for entry in messages(regenerated) if not all(entry["msgstr"])]
    assert not missing, f"{len(missing)} text(s) without a Spanish translation (see this module's docstring):\n" + "\n".join(missing)


def test_no_translation_is_fuzzy(regenerated):
    fuzzy = [key(entry) for entry in messages(regenerated) if "fuzzy" in entry["flags"]]
    assert not fuzzy, f"{len(fuzzy)} fuzzy translation(s), a guess by msgmerge for a changed text:\n" + "\n".join(fuzzy)


def test_the_committed_catalog_holds_exactly_what_the_code_says(regenerated):
    committed = {key(entry) for entry in messages(parse_po(CATALOG.read_text(encoding="utf-8")))}
    current = {key(entry) for entry in messages(regenerated)}
    assert not current - committed, f"texts missing from {CATALOG.name}: {sorted(current - committed)}"
    assert not committed - current, f"texts the code no longer says: {sorted(committed - current)}"


def test_the_placeholders_of_each_translation_are_those_of_its_text():
    import re

    placeholder = re.compile(r"%(?:\([a-z_]+\))?[-#0 +]*\d*(?:\.\d+)?[sdifrg%]")
    wrong = []
    for entry in messages(parse_po(CATALOG.read_text(encoding="utf-8"))):
        expected = sorted(placeholder.findall(entry["msgid"]))
        for translated in entry["msgstr"]:
            if translated and sorted(placeholder.findall(translated)) != expected:
                # A plural's singular may leave its count out ("one backup"); named ones must all be there.
                if entry["msgid_plural"] and set(placeholder.findall(translated)) <= set(placeholder.findall(entry["msgid_plural"])):
                    continue
                wrong.append(f"{entry['msgid']!r} -> {translated!r}")
    assert not wrong, "translations whose placeholders differ from the text's:\n" + "\n".join(wrong)


def test_the_committed_mo_is_the_compiled_po(tmp_path):
    require_gettext()
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check-format", "-o", str(fresh), str(CATALOG)], check=True, capture_output=True)
    assert COMPILED.is_file(), f"{COMPILED} is missing: run compilemessages"
    with COMPILED.open("rb") as committed, fresh.open("rb") as compiled:
        assert gettext.GNUTranslations(committed)._catalog == gettext.GNUTranslations(compiled)._catalog
