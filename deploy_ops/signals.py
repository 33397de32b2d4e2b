"""Signals for project hooks.  ``sender`` is the dotted name of the module that sends it:
"deploy_ops.backups", "deploy_ops.pipeline" (deploys and their automatic rollback) or
"deploy_ops.rollback" (manual rollbacks)."""

from django.dispatch import Signal

# Backups: kwargs ``database`` (alias) and, after, ``backup`` (a deploy_ops.backups.Backup).
pre_backup = Signal()
post_backup = Signal()
# Restores: kwargs ``database`` and ``backup``.
pre_restore = Signal()
post_restore = Signal()

# Deploys: kwargs ``record`` (a DeploymentRecord).  deploy_failed also gets ``error``.
pre_deploy = Signal()
post_deploy = Signal()
deploy_failed = Signal()
# Any rollback, automatic or manual, when it ends: kwargs ``record`` and ``succeeded``.
rollback_finished = Signal()
