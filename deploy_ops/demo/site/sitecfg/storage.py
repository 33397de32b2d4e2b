from django.contrib.staticfiles.storage import StaticFilesStorage


class BrokenStorage(StaticFilesStorage):
    """What flags.COLLECTSTATIC_FAIL selects: every save fails, as on a full or read-only disk."""

    def _save(self, name, content):
        raise OSError(f"cannot write {name}: COLLECTSTATIC_FAIL is set in sitecfg/flags.py")
