"""Which migrations a code rollback must unapply, and which it must refuse, from Django's own loader.

``rollback --commit`` runs in the current release: its code has the migrations that the target
commit lacks, and Django can reverse a migration only while its file exists.  So the plan is made
here, with the current code's ``MigrationLoader`` (real app labels, squashed migrations, the
dependencies between apps), and the runtime runs ``migrate <label> <target>`` before the checkout
changes.  The target commit is only read from git: which migration files it has, and for a squashed
migration in its tree, the ``replaces`` list of that file.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path, PurePosixPath

from django.utils.translation import gettext as _

from .conf import ops_settings
from .exceptions import PreflightFailed
from .gitrepo import Checkout

Key = tuple[str, str]
# A migration file of an app the current code does not have: its folder's name is the best label we know.
UNKNOWN_APP_MIGRATION = re.compile(r"^(?:.*/)?(?P<app>[^/]+)/migrations/(?P<name>[^_~/][^/]*)\.py$")


class _Release:
    """The current release's migration graph, with the file in the checkout behind each migration."""

    def __init__(self, checkout: Checkout):
        from django.db import connections
        from django.db.migrations.executor import MigrationExecutor

        self.checkout = checkout
        self.executor = MigrationExecutor(connections[ops_settings.BACKUP_DATABASE])
        self.loader = self.executor.loader
        self.applied = set(self.loader.applied_migrations)
        root = Path(checkout.repo.working_tree_dir or checkout.project_dir).resolve()
        # app label -> its migrations folder, relative to the checkout (apps outside it are not ours to move).
        self.folders: dict[str, str] = {}
        for (label, _name), migration in self.loader.disk_migrations.items():
            module_file = getattr(sys.modules.get(migration.__module__), "__file__", None)
            if module_file and Path(module_file).resolve().is_relative_to(root):
                self.folders[label] = Path(module_file).resolve().parent.relative_to(root).as_posix()
        self._names: dict[Key, frozenset[str]] = {}

    def names_at(self, sha: str, label: str) -> frozenset[str]:
        """The migration names in ``label``'s folder at ``sha`` (Django's rule: modules not starting with _ or ~)."""
        if (sha, label) not in self._names:
            files = self.checkout.file_names(sha, self.folders[label])
            self._names[sha, label] = frozenset(name[:-3] for name in files if name.endswith(".py") and name[0] not in "_~")
        return self._names[sha, label]

    def kept_at(self, sha: str, key: Key) -> bool:
        """Whether the target still has this migration: its own file, or every migration a squash replaces."""
        label, name = key
        if label not in self.folders:
            return True
        if name in self.names_at(sha, label):
            return True
        replaces = self.loader.graph.nodes[key].replaces
        return bool(replaces) and all(app in self.folders and migration in self.names_at(sha, app) for app, migration in replaces)


def migrations_to_unapply(target_sha: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The applied migrations the target commit does not have (in the order Django unapplies them),
    and the ``migrate <label> <name>`` targets that unapply exactly those.

    A refusal (``PreflightFailed``) when no such targets exist: a migration the target keeps
    depends on one it lacks, so unapplying the one would unapply the other.
    """
    release = _Release(Checkout(ops_settings.project_dir))
    graph = release.loader.graph
    gone = {key for key in graph.nodes if key in release.applied and not release.kept_at(target_sha, key)}
    targets: list[tuple[str, str]] = []
    for label in sorted({label for label, _name in gone}):
        # Where the app stops: its own migrations just before the gone ones (a merge may have two).
        parents = {parent for key in gone if key[0] == label for parent in graph.node_map[key].parents}
        stops = sorted(name for parent_label, name in parents if parent_label == label and (parent_label, name) not in gone)
        targets.extend((label, name) for name in dict.fromkeys(stops or ["zero"]))
    plan = release.executor.migration_plan([(label, None if name == "zero" else name) for label, name in targets])
    unapplied = [(migration.app_label, migration.name) for migration, backwards in plan if backwards]
    if set(unapplied) != gone:
        kept = sorted(f"{label}.{name}" for label, name in set(unapplied) - gone)
        left = sorted(f"{label}.{name}" for label, name in gone - set(unapplied))
        sentences = [
            _("%(sha)s lacks migrations this database has applied, and Django cannot unapply exactly those:") % {"sha": target_sha[:12]}
        ]
        if kept:
            sentences.append(
                _("unapplying them would also unapply %(migrations)s, which that commit still has.") % {"migrations": ", ".join(kept)}
            )
        if left:
            sentences.append(_("%(migrations)s would stay applied.") % {"migrations": ", ".join(left)})
        sentences.append(_("Use --full with a backup taken before they were applied."))
        raise PreflightFailed(" ".join(sentences))
    return [f"{label}.{name}" for label, name in unapplied], targets


def refuse_forward_migrations(target_sha: str, ref: str) -> None:
    """A rollback never migrates forward: a commit with migrations this database lacks is a deploy's job.

    ``deploy --ref`` applies them after its backup and rolls back by itself when they fail; a
    rollback that did the same would need its own undo for a half-applied forward migration.
    """
    release = _Release(Checkout(ops_settings.project_dir))
    head = release.checkout.head().sha
    missing = []
    for label in sorted(release.folders):
        for name in sorted(release.names_at(target_sha, label) - release.names_at(head, label)):
            if (label, name) in release.applied or _replaced_all_applied(release, target_sha, label, name):
                continue
            missing.append(f"{label}.{name}")
    ours = {folder + "/" for folder in release.folders.values()}
    for path in release.checkout.added_files(head, target_sha):
        found = UNKNOWN_APP_MIGRATION.match(path)
        if found and not any(path.startswith(folder) for folder in ours) and (found["app"], found["name"]) not in release.applied:
            missing.append(f"{found['app']}.{found['name']}")
    if missing:
        raise PreflightFailed(
            _(
                "%(sha)s has migrations this database has not applied (%(migrations)s): going there is a "
                "deploy, not a rollback. Use `manage.py deploy --ref %(ref)s`, which applies them after a backup and rolls "
                "back by itself if they fail."
            )
            % {"sha": target_sha[:12], "migrations": ", ".join(missing), "ref": ref}
        )


def _replaced_all_applied(release: _Release, sha: str, label: str, name: str) -> bool:
    """A squashed migration in the target's tree counts as applied when all it replaces are (Django's own rule)."""
    path = str(PurePosixPath(release.folders[label]) / f"{name}.py")
    source = (release.checkout.repo.commit(sha).tree / path).data_stream.read().decode()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(isinstance(target, ast.Name) and target.id == "replaces" for target in node.targets):
            try:
                replaces = [tuple(pair) for pair in ast.literal_eval(node.value)]
            except (ValueError, TypeError):
                return False  # not a literal list: count it as not applied, so the refusal errs on the safe side
            return bool(replaces) and all(key in release.applied for key in replaces)
    return False
