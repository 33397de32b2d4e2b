import logging
import os
import sys

from django.core.wsgi import get_wsgi_application

from . import flags

os.environ["DJANGO_SETTINGS_MODULE"] = "sitecfg.settings"  # as in manage.py
application = get_wsgi_application()

if flags.EXIT_AT_START:
    sys.exit("The sample site refuses to start: EXIT_AT_START is set in sitecfg/flags.py")

if flags.LOG_STARTUP_ERROR:
    try:
        raise RuntimeError("LOG_STARTUP_ERROR is set in sitecfg/flags.py")
    except RuntimeError:
        logging.getLogger("sitecfg").critical("startup problem", exc_info=True)
