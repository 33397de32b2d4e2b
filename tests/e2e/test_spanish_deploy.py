"""A deploy, a deploy that rolls back by itself and a manual rollback, with ``LANGUAGE_CODE = "es"``:
what the operator reads (the commands' output and the notification log) is Spanish, with no English
message of deploy_ops left in it. The commands runtime on SQLite, a real git origin, as the other
end-to-end tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.helpers import deploy, failure_text, manage
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import health_fails, release
from tests.test_translations import CATALOG, messages, parse_po

pytestmark = pytest.mark.slow

PLACEHOLDER = re.compile(r"%(?:\([a-z_]+\))?[-#0 +]*\d*(?:\.\d+)?[sdifrg]|%%")
# Words of English prose that Spanish never uses (nor do the stage names, paths or commit summaries
# here): a line with one of them is English, whether or not its text is in the catalog (an unwrapped
# string is not).
ENGLISH_WORDS = {
    "the",
    "was",
    "were",
    "is",
    "are",
    "of",
    "from",
    "with",
    "for",
    "has",
    "have",
    "been",
    "this",
    "that",
    "its",
    "their",
    "after",
    "before",
    "which",
    "would",
    "could",
    "nothing",
    "every",
    "into",
    "and",
    "then",
    "over",
    "to",
    "at",
    "in",
    "not",
    "failed",
    "succeeded",
    "rolled",
    "rolling",
    "serving",
    "deployed",
    "deploying",
    "restored",
    "ago",
    "verified",
    "current",
    "last",
    "successful",
    "newest",
    "recent",
    "records",
    "lock",
    "project",
    # The stages' and steps' own words, and those of their results: printed translated.
    "stage",
    "stages",
    "backup",
    "safety",
    "database",
    "services",
    "code",
    "healthy",
    "answered",
    "tries",
    "kept",
    "removed",
    "stopped",
    "why",
    "but",
    "because",
    "again",
    "ok",
}
# What the sample release itself answers on /health/ when it is made to fail: the site's words, not deploy_ops'.
RELEASE_TEXT = "unhealthy (HEALTH_FAIL is set in sitecfg/flags.py)"


def english_fragments() -> list[str]:
    """The literal parts, three words or longer, of every English text in the Spanish catalog."""
    found = set()
    for entry in messages(parse_po(CATALOG.read_text(encoding="utf-8"))):
        for text in filter(None, (entry["msgid"], entry["msgid_plural"])):
            for piece in PLACEHOLDER.split(text):
                piece = piece.strip(" .,:;()'\"\n")
                if len(piece.split()) >= 3 and piece not in (entry["msgstr"][0] or ""):
                    found.add(piece)
    return sorted(found)


def english_lines(text: str) -> list[str]:
    leaks = []
    fragments = english_fragments()
    for line in text.replace(RELEASE_TEXT, "").splitlines():
        # Paths and identifiers (rolled_back, a pytest folder) are not prose.
        words = {word for token in line.lower().split() if "/" not in token and "_" not in token for word in re.findall(r"[a-z]+", token)}
        if words & ENGLISH_WORDS or any(fragment in line for fragment in fragments):
            leaks.append(line)
    return leaks


def operator_text(finished) -> str:
    # The site's own log lines (INFO/WARNING name the logger) are the site's, not deploy_ops' report.
    lines = [finished.stdout, *(line for line in finished.stderr.splitlines() if not re.match(r"(INFO|DEBUG) ", line))]
    return "\n".join(lines)


def test_a_deploy_its_automatic_rollback_and_a_manual_rollback_speak_only_spanish(sample_site):
    serving_release_1(sample_site)
    with Path(sample_site.production, ".env").open("a") as env:
        env.write("LANGUAGE_CODE='es'\n")
    said = []

    sample_site.commit_change(release("2"), "Release 2")
    good = deploy(sample_site)
    assert good.returncode == 0, failure_text(good)
    said.append(operator_text(good))

    sample_site.commit_change(health_fails(), "Release 3: health fails")
    broken = deploy(sample_site)
    assert broken.returncode == 1, failure_text(broken)
    said.append(operator_text(broken))

    rolled = manage(sample_site, "rollback", "--commit", sample_site.initial_sha[:12], "--noinput")
    assert rolled.returncode == 0, failure_text(rolled)
    said.append(operator_text(rolled))

    status = manage(sample_site, "rollback", "--status")
    said.append(operator_text(status))
    for line in Path(sample_site.production, "logs", "notifications.log").read_text(encoding="utf-8").splitlines():
        event = json.loads(line)  # the keys are a format; the title and the message are read
        said += [event["title"], event["message"]]
    everything = "\n".join(said)

    # Sentences known to be said: the notifications' titles and the backups listed by --status.
    missing = [spanish for spanish in ("Despliegue de", "Se revirtió a", "hace ", "sin verificar") if spanish not in everything]
    leaks = english_lines(everything)
    assert not leaks and not missing, (
        f"{len(leaks)} line(s) in English:\n" + "\n".join(leaks) + f"\n\nSpanish not found: {missing}\n\nEverything:\n{everything}"
    )
