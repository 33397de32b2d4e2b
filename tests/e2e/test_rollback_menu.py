"""The interactive ``manage.py rollback`` menu, driven over a real pseudo-terminal with pexpect,
as an operator at a terminal would: real process, real git, real database (commands runtime)."""

import os
import sys

import pexpect
import pytest

from tests.e2e.helpers import deploy, failure_text, records
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import release

pytestmark = pytest.mark.slow

PROMPT = "Choose: "


def open_menu(site) -> pexpect.spawn:
    menu = pexpect.spawn(
        sys.executable,
        ["manage.py", "rollback"],
        cwd=str(site.production),
        env=dict(os.environ),
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 200),
    )
    menu.expect_exact(PROMPT)
    return menu


def choose(menu: pexpect.spawn, *answers: tuple[str, str]) -> None:
    """Answer each (prompt, reply) in turn, the first being the menu's own prompt."""
    for prompt, reply in answers:
        menu.expect_exact(prompt)
        menu.sendline(reply)


def quit_menu(menu: pexpect.spawn) -> int:
    """Quit at the menu's prompt (already read); the exit status."""
    menu.sendline("q")
    menu.expect(pexpect.EOF)
    menu.close()
    return menu.exitstatus


def test_menu_shows_status_lists_commits_and_rolls_back_to_a_commit_after_yes(sample_site):
    serving_release_1(sample_site)
    release_2 = sample_site.commit_change(release("2"), "Release 2")
    assert (finished := deploy(sample_site)).returncode == 0, failure_text(finished)
    menu = open_menu(sample_site)

    menu.sendline("7")
    menu.expect_exact(f"Current commit: {release_2[:12]} Release 2")
    menu.expect_exact(f"Last successful deploy: {release_2[:12]}")
    menu.expect_exact("Lock: ")
    choose(menu, (PROMPT, "1"))
    menu.expect_exact(f"* {release_2[:12]}  Release 2")
    menu.expect_exact(f"  {sample_site.initial_sha[:12]}  Sample site, release 1")
    choose(menu, (PROMPT, "3"), ("Commit (sha, tag or branch): ", sample_site.initial_sha[:10]))
    menu.expect_exact(f"check out {sample_site.initial_sha[:12]} (Sample site, release 1)")
    choose(menu, ("Go ahead? [y/N] ", "y"))
    menu.expect_exact("Rolled back in")
    menu.expect_exact(f"{sample_site.initial_sha[:12]} is serving.")
    menu.expect_exact(PROMPT)

    assert quit_menu(menu) == 0
    assert sample_site.production_head() == sample_site.initial_sha
    assert "release 1" in sample_site.get("/")[1]
    assert sample_site.notes() == ["first", "second"]
    record = records(sample_site)[-1]["record"]
    assert (record["kind"], record["status"], record["to_commit"]) == ("rollback", "succeeded", sample_site.initial_sha)


def test_menu_answering_no_cancels_and_changes_nothing_and_q_quits_with_exit_0(sample_site):
    serving_release_1(sample_site)
    release_2 = sample_site.commit_change(release("2"), "Release 2")
    sample_site.checkout_latest()
    menu = open_menu(sample_site)

    menu.sendline("3")
    choose(menu, ("Commit (sha, tag or branch): ", sample_site.initial_sha), ("Go ahead? [y/N] ", "n"))
    menu.expect_exact("Cancelled; nothing was changed.")
    menu.expect_exact(PROMPT)
    # A refusal inside the menu is shown and the menu goes on.
    menu.sendline("4")
    choose(menu, ("Backup (name or path): ", "backup_20000101_000000.sql.gz"))
    menu.expect_exact("No backup 'backup_20000101_000000.sql.gz'")
    menu.expect_exact(PROMPT)

    assert quit_menu(menu) == 0
    assert sample_site.production_head() == release_2
    assert sample_site.notes() == ["first", "second"]
    assert records(sample_site) == []


def test_menu_quits_with_exit_0_on_ctrl_d(sample_site):
    sample_site.use_commands()
    menu = open_menu(sample_site)
    menu.sendeof()
    menu.expect(pexpect.EOF)
    menu.close()
    assert menu.exitstatus == 0, menu.before


def test_a_flag_rollback_on_a_terminal_asks_first_and_no_exits_3_with_nothing_changed(sample_site):
    serving_release_1(sample_site)
    release_2 = sample_site.commit_change(release("2"), "Release 2")
    sample_site.checkout_latest()
    command = pexpect.spawn(
        sys.executable,
        ["manage.py", "rollback", "--commit", sample_site.initial_sha],
        cwd=str(sample_site.production),
        env=dict(os.environ),
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 200),
    )

    choose(command, ("Go ahead? [y/N] ", "n"))
    command.expect_exact("Cancelled at the confirmation prompt; nothing was changed.")
    command.expect(pexpect.EOF)
    command.close()

    assert command.exitstatus == 3
    assert sample_site.production_head() == release_2
    assert records(sample_site) == []
