"""``manage.py notify --test``: send a test event through every notification channel.

Prints one line per channel; exits 2 when any channel failed (the deploy's "a human is needed").
"""

from django.core.management.base import BaseCommand, CommandError

from deploy_ops.exceptions import EXIT_NEEDS_HUMAN
from deploy_ops.notifications import Level, send_test_event


class Command(BaseCommand):
    help = "Send a test notification through the log and every channel in DEPLOY_OPS['NOTIFICATIONS'] and report each result."

    def add_arguments(self, parser):
        parser.add_argument("--test", action="store_true", help="Send a test event (nothing is deployed).")
        parser.add_argument(
            "--level", default="INFO", choices=[level.name for level in Level], type=str.upper,
            help="The test event's level, to try the channels' MIN_LEVEL filters (default INFO).",
        )

    def handle(self, *args, **options):
        if not options["test"]:
            raise CommandError("Nothing to do: use --test to send a test notification.")
        deliveries = send_test_event(Level[options["level"]])
        for delivery in deliveries:
            if delivery.skipped:
                self.stdout.write(f"{delivery.channel}: skipped ({delivery.error})")
            elif delivery.ok:
                self.stdout.write(self.style.SUCCESS(f"{delivery.channel}: ok ({delivery.attempts} attempt(s), {delivery.duration:.2f}s)"))
            else:
                self.stdout.write(self.style.ERROR(f"{delivery.channel}: FAILED after {delivery.attempts} attempt(s): {delivery.error}"))
        failed = [delivery.channel for delivery in deliveries if not delivery.ok]
        if failed:
            raise CommandError(f"{len(failed)} notification channel(s) failed: {', '.join(failed)}.", returncode=EXIT_NEEDS_HUMAN)
