"""The base of deploy_ops's own commands: an exit code nothing can forge.

Exit 1 means "rolled back, the previous release serves", so nothing else may end with it: Django
and argparse would exit 1 on an unexpected exception and 2 on a usage error.  Here a
``DeployOpsError`` exits with its own code, any other exception with EXIT_UNEXPECTED and one
line (``--traceback`` shows where), and a usage error with EXIT_USAGE.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from deploy_ops.exceptions import EXIT_REFUSED, EXIT_UNEXPECTED, EXIT_USAGE, DeployOpsError

ARGPARSE_USAGE_ERROR = 2


class OpsCommand(BaseCommand):
    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        argparse_exit = parser.exit

        def exit(status=0, message=None):
            argparse_exit(EXIT_USAGE if status == ARGPARSE_USAGE_ERROR else status, message)

        parser.exit = exit
        return parser

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except CommandError:
            raise
        except DeployOpsError as error:
            prefix = "Refused, nothing was changed: " if error.exit_code == EXIT_REFUSED else ""
            raise CommandError(prefix + str(error), returncode=error.exit_code) from error
        except Exception as error:
            raise CommandError(
                f"Unexpected error: {type(error).__name__}: {error}\n"
                "deploy_ops did not expect this; check `manage.py rollback --status` (--traceback shows where it happened).",
                returncode=EXIT_UNEXPECTED,
            ) from error
