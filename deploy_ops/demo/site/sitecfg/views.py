from pathlib import Path

from django.conf import settings
from django.http import HttpResponse
from notes.models import Note


def release(request):
    """The release this process serves, and how many notes the database holds."""
    version = (Path(settings.BASE_DIR) / "site_release.txt").read_text().strip()
    return HttpResponse(f"release {version}\nnotes {Note.objects.count()}\n", content_type="text/plain")
