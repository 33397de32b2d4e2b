"""The docs cannot drift silently: settings, links and command-line flags are checked against the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from deploy_ops.conf import LEGACY_ENVIRONMENT_NAMES, OPTIONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "CONFIGURATION.md"
MARKDOWN_FILES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
# A documented default is compared with repr(default) when it is this short; a longer one
# (HEALTH_CHECKS) is listed item by item elsewhere on the page.
SHORT_DEFAULT = 80

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)
COMMAND_USE = re.compile(r"manage\.py (\w+)([^\n`|]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


def setting_rows() -> dict[str, str]:
    """The reference tables' rows, by key: `| `KEY` | default | type | `DEPLOY_OPS_KEY` | … |`."""
    rows = {}
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 5 and cells[3].startswith("`DEPLOY_OPS_"):
            rows[cells[0].strip("`")] = line
    return rows


def prose(text: str) -> str:
    """The text without code blocks and inline code, where link syntax means nothing."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("key", list(OPTIONS))
def test_every_setting_is_documented_with_its_environment_variable(key):
    rows = setting_rows()
    assert key in rows, f"docs/CONFIGURATION.md has no table row for DEPLOY_OPS[{key!r}]"
    assert f"`DEPLOY_OPS_{key}`" in rows[key]


@pytest.mark.parametrize("key", list(OPTIONS))
def test_every_documented_default_is_the_code_default(key):
    default = OPTIONS[key].default
    if len(repr(default)) <= SHORT_DEFAULT:
        assert f"`{default!r}`" in setting_rows()[key], f"the documented default of {key} is not {default!r}"
    else:
        text = CONFIGURATION.read_text(encoding="utf-8")
        missing = [item for item in default if f"`{item}`" not in text]
        assert not missing, f"docs/CONFIGURATION.md does not list {missing} in the default of {key}"


def test_configuration_documents_no_setting_that_does_not_exist():
    assert sorted(set(setting_rows()) - set(OPTIONS)) == []


def test_the_old_scripts_environment_names_are_documented():
    text = CONFIGURATION.read_text(encoding="utf-8")
    for name in LEGACY_ENVIRONMENT_NAMES:
        assert f"| `{name}` | `DEPLOY_OPS_{name}` |" in text


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(path):
    broken = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert broken == [], f"{path.relative_to(ROOT)} has broken links"


def test_the_docs_index_links_every_doc():
    index = prose((DOCS / "README.md").read_text(encoding="utf-8"))
    linked = {Path(target.partition("#")[0]).name for target in LINK.findall(index)}
    unlisted = [path.name for path in DOCS.glob("*.md") if path.name != "README.md" and path.name not in linked]
    assert unlisted == []


def documented_command_flags() -> dict[str, set[str]]:
    """Every `manage.py COMMAND --flag` written in the docs, by command."""
    used: dict[str, set[str]] = {}
    for path in MARKDOWN_FILES:
        # An escaped pipe separates alternatives inside a table cell: `--quick \\| --commit SHA`.
        for command, rest in COMMAND_USE.findall(path.read_text(encoding="utf-8").replace("\\|", " ")):
            used.setdefault(command, set()).update(FLAG.findall(rest))
    return used


def test_the_docs_use_only_commands_and_flags_that_exist():
    commands = get_commands()
    unknown = []
    for command, flags in sorted(documented_command_flags().items()):
        if command not in commands:
            unknown.append(f"manage.py {command}")
            continue
        parser = load_command_class(commands[command], command).create_parser("manage.py", command)
        known = set(parser._option_string_actions)
        if parser._subparsers:  # a command with subcommands (backups create, prune, …)
            for action in parser._subparsers._group_actions:
                for subparser in getattr(action, "choices", {}).values():
                    known |= set(subparser._option_string_actions)
        unknown += [f"manage.py {command} {flag}" for flag in sorted(flags - known)]
    assert unknown == []
