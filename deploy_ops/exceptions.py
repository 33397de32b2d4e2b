"""One error hierarchy.  Management commands turn these into ``CommandError`` with ``exit_code``.

Exit codes (the deploy's, reused by rollback and backups):
0 done; 1 failed and rolled back, the previous release serves; 2 failed and a human is needed;
3 refused before anything changed; 4 an unexpected error (a bug, a full disk): a human should look;
5 the command line was wrong, nothing was done.  Only the pipeline's finished rollback returns 1.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from .argv import display_argv

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_NEEDS_HUMAN = 2
EXIT_REFUSED = 3
EXIT_UNEXPECTED = 4
EXIT_USAGE = 5


class DeployOpsError(Exception):
    """Base of every error deploy_ops raises on purpose."""

    exit_code = EXIT_NEEDS_HUMAN


class ConfigurationError(DeployOpsError):
    """DEPLOY_OPS or the project is set up wrongly."""

    exit_code = EXIT_REFUSED


class ToolMissing(DeployOpsError):
    """An executable deploy_ops needs is not installed on this host."""

    exit_code = EXIT_REFUSED

    def __init__(self, executable: str, hint: str = ""):
        self.executable = executable
        message = _("%(executable)r was not found on this host's PATH.") % {"executable": executable}
        if hint:
            message += f" {hint}"
        super().__init__(message)


class CommandFailed(DeployOpsError):
    """An external command exited non-zero or timed out.

    ``argv`` is already redacted; the message shows the command, the exit code,
    and the indented tail of what it printed on stderr.
    """

    def __init__(self, argv, returncode, stderr_tail="", stdout_tail="", duration=0.0, timed_out=False):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.stdout_tail = stdout_tail
        self.duration = duration
        self.timed_out = timed_out
        super().__init__(self._describe())

    def _describe(self) -> str:
        values = {"seconds": self.duration, "code": self.returncode, "command": display_argv(self.argv)}
        if self.timed_out:
            head = _("Command timed out after %(seconds).1fs: %(command)s") % values
        else:
            head = _("Command failed with exit code %(code)s after %(seconds).1fs: %(command)s") % values
        tail = self.stderr_tail.strip() or self.stdout_tail.strip()
        if tail:
            head += "\n" + "\n".join("    " + line for line in tail.splitlines())
        return head


class BackupError(DeployOpsError):
    """A backup could not be made, found, read or restored."""


class BackupNotFound(BackupError):
    exit_code = EXIT_REFUSED


class BackupCorrupt(BackupError):
    exit_code = EXIT_REFUSED


class BackupIncompatible(BackupError):
    """The backup is of another database engine than the target."""

    exit_code = EXIT_REFUSED


class RestoreRefused(BackupError):
    """The database holds something a restore could not bring back safely; nothing was changed."""

    exit_code = EXIT_REFUSED


class RestoreUndoFailed(BackupError):
    """A restore failed after it changed the database, and undoing that failed too."""


class GitError(DeployOpsError):
    """A git operation failed, or a ref/commit does not exist."""


class UnknownRef(GitError):
    exit_code = EXIT_REFUSED


class LockHeld(DeployOpsError):
    """Another deploy or rollback holds the lock (or left it behind)."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, holder: dict | None = None, stale: bool = False):
        self.holder = holder or {}
        self.stale = stale
        super().__init__(message)


class PreflightFailed(DeployOpsError):
    """A deploy was refused before it changed anything."""

    exit_code = EXIT_REFUSED


class ServiceError(DeployOpsError):
    """The service runtime could not build, start, stop or inspect the services."""


class HealthCheckFailed(DeployOpsError):
    """The release did not become healthy or failed integrity verification."""


class HealthUnverified(HealthCheckFailed):
    """The health URL never answered while every service reports running: not known to be down."""
