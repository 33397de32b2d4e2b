"""The production checkout.

Reads (current commit, summaries, history, dirty state) go through GitPython; the commands
that change the checkout (fetch, checkout) are pure builders run by the runner, so that a
dry run can print them and the log shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git
from django.utils.translation import gettext as _

from .exceptions import GitError, PreflightFailed, UnknownRef
from .runner import Command, run


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    summary: str
    author: str
    committed_at: datetime

    @property
    def short(self) -> str:
        return self.sha[:12]


def fetch_command(project_dir: Path, remote: str) -> Command:
    return Command(("git", "fetch", "--prune", "--tags", "--force", remote), cwd=str(project_dir))


def checkout_command(project_dir: Path, sha: str) -> Command:
    # Detached at an exact commit: what runs is always a sha, never a moving branch.
    return Command(("git", "checkout", "--quiet", "--detach", sha), cwd=str(project_dir))


class Checkout:
    def __init__(self, project_dir: Path):
        self.project_dir = Path(project_dir)
        try:
            self.repo = git.Repo(self.project_dir)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(
                _("%(folder)s is not a git checkout; deploy_ops deploys a git working tree.") % {"folder": self.project_dir}
            ) from None

    def head(self) -> CommitInfo:
        try:
            return self._info(self.repo.head.commit)
        except ValueError:
            raise GitError(_("%(folder)s has no commits yet.") % {"folder": self.project_dir}) from None

    def dirty_files(self) -> list[str]:
        """Tracked files changed in the working tree or the index (untracked files do not count)."""
        changed = {item.a_path for item in self.repo.index.diff(None) if item.a_path}
        changed |= {item.a_path for item in self.repo.index.diff("HEAD") if item.a_path}
        return sorted(changed)

    def forget_git_processes(self) -> None:
        """Drop GitPython's persistent ``git cat-file`` children (a Ctrl-C may have killed them); new ones start when needed."""
        self.repo.git.clear_cache()

    def refuse_if_dirty(self, why: str) -> None:
        """PreflightFailed (exit 3, nothing changed) while tracked files have uncommitted changes."""
        dirty = self.dirty_files()
        if dirty:
            raise PreflightFailed(
                _("The checkout has uncommitted changes (%(files)s). Commit or discard them: %(why)s.")
                % {"files": ", ".join(dirty[:5]) + ("…" if len(dirty) > 5 else ""), "why": why}
            )

    def fetch(self, remote: str) -> None:
        if remote not in [existing.name for existing in self.repo.remotes]:
            raise GitError(_("The checkout has no git remote named %(remote)r; set DEPLOY_OPS['GIT_REMOTE'].") % {"remote": remote})
        run(fetch_command(self.project_dir, remote), timeout=300)

    def resolve(self, ref: str, remote: str) -> CommitInfo:
        """A branch (as on the remote), a tag, or a (short) sha → the commit; UnknownRef otherwise."""
        candidates = [f"refs/remotes/{remote}/{ref}", f"refs/tags/{ref}", ref]
        for candidate in candidates:
            try:
                return self._info(self.repo.commit(candidate))
            except (git.BadName, ValueError, git.BadObject):
                continue
        raise UnknownRef(
            _(
                "%(ref)r is not a branch on %(remote)r, a tag, or a commit in this checkout. "
                "List what exists with `git branch -r`, `git tag` or `manage.py rollback --list-commits`."
            )
            % {"ref": ref, "remote": remote}
        )

    def checkout(self, sha: str) -> None:
        run(checkout_command(self.project_dir, sha), timeout=300)

    def summary(self, sha: str) -> str:
        try:
            summary = self.repo.commit(sha).summary
        except (git.BadName, ValueError, git.BadObject):
            return ""
        return summary if isinstance(summary, str) else summary.decode("utf-8", "replace")

    def history(self, ref: str, count: int) -> list[CommitInfo]:
        try:
            return [self._info(commit) for commit in self.repo.iter_commits(ref, max_count=count)]
        except git.GitCommandError as error:
            raise UnknownRef(_("Cannot list the history of %(ref)r: %(error)s") % {"ref": ref, "error": error.stderr.strip()}) from None

    def pending_commits(self, from_sha: str, to_sha: str) -> list[CommitInfo]:
        """Commits that a move from from_sha to to_sha would bring (newest first)."""
        return [self._info(commit) for commit in self.repo.iter_commits(f"{from_sha}..{to_sha}")]

    def added_files(self, from_sha: str, to_sha: str) -> list[str]:
        """Paths that exist at to_sha but not at from_sha."""
        return [item.b_path for item in self.repo.commit(from_sha).diff(to_sha) if item.new_file and item.b_path]

    def file_names(self, sha: str, folder: str) -> list[str]:
        """The names of the files directly in ``folder`` at ``sha`` (empty if it has no such folder)."""
        try:
            tree = self.repo.commit(sha).tree / folder
        except KeyError:
            return []
        return [blob.name for blob in tree.blobs]

    @staticmethod
    def _info(commit) -> CommitInfo:
        return CommitInfo(
            sha=commit.hexsha,
            summary=commit.summary,
            author=str(commit.author),
            committed_at=commit.committed_datetime,
        )
