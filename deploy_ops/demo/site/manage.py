#!/usr/bin/env python
"""The sample site's manage.py: deploy, rollback and backups run from here on the host."""

import os
import sys

if __name__ == "__main__":
    # Always the site's own settings, even when a process with other Django settings (the
    # deploy_ops test suite) starts it.
    os.environ["DJANGO_SETTINGS_MODULE"] = "sitecfg.settings"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
