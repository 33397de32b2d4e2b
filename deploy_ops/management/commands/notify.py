"""``manage.py notify --test``: send a test event through every notification channel.

Prints one line per channel; exits 2 when any channel failed (the deploy's "a human is needed").
"""

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from deploy_ops.exceptions import EXIT_NEEDS_HUMAN
from deploy_ops.management.base import TranslatedCommand
from deploy_ops.notifications import Level, send_test_event


class Command(TranslatedCommand):
    # Django accepts a lazy help and shows it in the active language; django-stubs types it str.
    help = gettext_lazy("Send a test notification through the log and every channel in DEPLOY_OPS['NOTIFICATIONS'] and report each result.")  # type: ignore[assignment]

    def add_arguments(self, parser):
        parser.add_argument("--test", action="store_true", help=gettext_lazy("Send a test event (nothing is deployed)."))
        parser.add_argument(
            "--level",
            default="INFO",
            choices=[level.name for level in Level],
            type=str.upper,
            help=gettext_lazy("The test event's level, to try the channels' MIN_LEVEL filters (default INFO)."),
        )

    def handle(self, *args, **options):
        if not options["test"]:
            raise CommandError(_("Nothing to do: use --test to send a test notification."))
        deliveries = send_test_event(Level[options["level"]])
        for delivery in deliveries:
            if delivery.skipped:
                self.stdout.write(_("%(channel)s: skipped (%(reason)s)") % {"channel": delivery.channel, "reason": delivery.error})
            elif delivery.ok:
                self.stdout.write(
                    self.style.SUCCESS(
                        ngettext(
                            "%(channel)s: ok (%(count)d attempt, %(seconds).2fs)",
                            "%(channel)s: ok (%(count)d attempts, %(seconds).2fs)",
                            delivery.attempts,
                        )
                        % {"channel": delivery.channel, "count": delivery.attempts, "seconds": delivery.duration}
                    )
                )
            else:
                self.stdout.write(
                    self.style.ERROR(
                        ngettext(
                            "%(channel)s: FAILED after %(count)d attempt: %(error)s",
                            "%(channel)s: FAILED after %(count)d attempts: %(error)s",
                            delivery.attempts,
                        )
                        % {"channel": delivery.channel, "count": delivery.attempts, "error": delivery.error}
                    )
                )
        failed = [delivery.channel for delivery in deliveries if not delivery.ok]
        if failed:
            raise CommandError(
                ngettext(
                    "%(count)d notification channel failed: %(names)s.", "%(count)d notification channels failed: %(names)s.", len(failed)
                )
                % {"count": len(failed), "names": ", ".join(failed)},
                returncode=EXIT_NEEDS_HUMAN,
            )
