"""The base of deploy_ops's own commands: the operator's language, and an exit code nothing can forge.

Every command speaks ``settings.LANGUAGE_CODE`` (Django leaves the default language active in
management commands), or the language ``--lang`` names for one run (:class:`TranslatedCommand`).

Exit 1 means "rolled back, the previous release serves", so nothing else may end with it: Django
and argparse would exit 1 on an unexpected exception and 2 on a usage error.  Here a
``DeployOpsError`` exits with its own code, any other exception with EXIT_UNEXPECTED and one
line (``--traceback`` shows where), and a usage error with EXIT_USAGE.
"""

from __future__ import annotations

import argparse
import contextlib

from django.core.management.base import BaseCommand, CommandError
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from deploy_ops.exceptions import EXIT_REFUSED, EXIT_UNEXPECTED, EXIT_USAGE, DeployOpsError

ARGPARSE_USAGE_ERROR = 2
LANG_HELP = gettext_lazy("The language of this command's output, e.g. es or en (default: settings.LANGUAGE_CODE).")


def requested_language(argv: list[str]) -> str | None:
    """The value of ``--lang`` in a command line (``--lang es`` or ``--lang=es``), before argparse reads it."""
    for index, argument in enumerate(argv):
        if argument == "--lang" and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith("--lang="):
            return argument.partition("=")[2]
    return None


def check_language(code: str) -> str:
    """``code`` when deploy_ops or Django can speak it; otherwise a usage error that names it."""
    if not translation.check_for_language(code):
        raise CommandError(_("Unknown language %(code)r for --lang; try es or en.") % {"code": code}, returncode=EXIT_USAGE)
    return code


def evaluate_help(parser: argparse.ArgumentParser) -> None:
    """Lazy help texts as str in the language active now, subcommands' too: argparse's formatter needs str."""
    parser.description = str(parser.description) if isinstance(parser.description, Promise) else parser.description
    for action in parser._actions:
        if isinstance(action.help, Promise):
            action.help = str(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = str(choice.help) if isinstance(choice.help, Promise) else choice.help
            for subparser in action.choices.values():
                evaluate_help(subparser)


class TranslatedCommand(BaseCommand):
    """A command that speaks ``--lang`` when given, else ``settings.LANGUAGE_CODE``."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        self.help = str(self.help)  # a lazy class attribute, worded in the language active now
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--lang", metavar="CODE", help=LANG_HELP)  # type: ignore[arg-type]  # lazy: evaluate_help() makes it a str
        evaluate_help(parser)
        return parser

    def run_from_argv(self, argv):
        # Activated before the parser exists, so that --help and usage errors speak it too.
        language = requested_language(argv)
        if language and translation.check_for_language(language):
            translation.activate(language)
        return super().run_from_argv(argv)

    def execute(self, *args, **options):
        language = options.get("lang")
        with translation.override(check_language(language)) if language else contextlib.nullcontext():
            return self.execute_in_language(*args, **options)

    def execute_in_language(self, *args, **options):
        """BaseCommand.execute, inside the chosen language (subclasses' errors are worded in it too)."""
        return super().execute(*args, **options)


class OpsCommand(TranslatedCommand):
    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        argparse_exit = parser.exit

        def exit(status=0, message=None):
            argparse_exit(EXIT_USAGE if status == ARGPARSE_USAGE_ERROR else status, message)

        parser.exit = exit
        return parser

    def execute_in_language(self, *args, **options):
        try:
            return super().execute_in_language(*args, **options)
        except CommandError:
            raise
        except DeployOpsError as error:
            if error.exit_code == EXIT_REFUSED:
                message = _("Refused, nothing was changed: %(error)s") % {"error": error}
            else:
                message = str(error)
            raise CommandError(message, returncode=error.exit_code) from error
        except Exception as error:
            raise CommandError(
                _(
                    "Unexpected error: %(type)s: %(error)s\n"
                    "deploy_ops did not expect this; check `manage.py rollback --status` (--traceback shows where it happened)."
                )
                % {"type": type(error).__name__, "error": error},
                returncode=EXIT_UNEXPECTED,
            ) from error
