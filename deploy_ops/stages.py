"""The names of the deploy's stages and the recovery's steps, the order the steps run in, and how the
printed output words them.

Kept apart from ``recovery`` so that what only shows a record (the admin, its charts, the
notifications) does not import the recovery machinery, and with it GitPython, the proxy and
the runtimes: every management command loads the admin.
"""

from __future__ import annotations

from django.utils.translation import pgettext_lazy

REVERT_CODE = "revert code"
STOP_SERVICES = "stop services"
SAFETY_BACKUP = "safety backup"
UNAPPLY_MIGRATIONS = "unapply migrations"
RESTORE_DATABASE = "restore database"
# The release's kept images back in place (Compose); built again only when they are gone, and
# under the commands runtime, which keeps no images, its build step.
RESTORE_IMAGES = "restore images"
START_SERVICES = "start services"
COLLECT_STATIC = "collect static"
VERIFY_HEALTH = "verify health"
# With a reverse proxy (DEPLOY_OPS['PROXY']): the traffic back to the release, once it is verified.
ROUTE_TRAFFIC = "route traffic"
# Blue/green: the proxy back to the release that kept serving beside the new one, and the new
# release's slot removed.
SWITCH_BACK = "switch traffic back"
REMOVE_NEW_RELEASE = "remove new release"
# A rollback without downtime: the release it brings back starts in the free slot beside the
# serving one, is verified there, the proxy switches, then the release it leaves is stopped.
START_BESIDE = "start beside"
SWITCH_TRAFFIC = "switch traffic"
RETIRE_OLD_RELEASE = "retire old release"


# The safety backup comes first: a manual rollback whose safety backup fails has changed nothing.
# Migrations are unapplied by the release that has their files, so before the code goes back.
STEP_ORDER = [
    SAFETY_BACKUP,
    UNAPPLY_MIGRATIONS,
    SWITCH_BACK,
    REVERT_CODE,
    STOP_SERVICES,
    REMOVE_NEW_RELEASE,
    RESTORE_DATABASE,
    RESTORE_IMAGES,
    START_SERVICES,
    COLLECT_STATIC,
    START_BESIDE,
    VERIFY_HEALTH,
    SWITCH_TRAFFIC,
    RETIRE_OLD_RELEASE,
    ROUTE_TRAFFIC,
]


# The stages' and steps' names as the printed output words them; records and JSON keep the
# identifiers.  A name without a label here is printed as it is.
STAGE_LABELS = {
    "backup": pgettext_lazy("stage", "backup"),
    "checkout": pgettext_lazy("stage", "checkout"),
    "build": pgettext_lazy("stage", "build"),
    "collectstatic": pgettext_lazy("stage", "collectstatic"),
    "stop": pgettext_lazy("stage", "stop"),
    "migrate": pgettext_lazy("stage", "migrate"),
    "start": pgettext_lazy("stage", "start"),
    "health": pgettext_lazy("stage", "health"),
    "verify": pgettext_lazy("stage", "verify"),
    "route": pgettext_lazy("stage", "route"),
    "cleanup": pgettext_lazy("stage", "cleanup"),
    "prune images": pgettext_lazy("stage", "prune images"),
    REVERT_CODE: pgettext_lazy("stage", "revert code"),
    STOP_SERVICES: pgettext_lazy("stage", "stop services"),
    SAFETY_BACKUP: pgettext_lazy("stage", "safety backup"),
    UNAPPLY_MIGRATIONS: pgettext_lazy("stage", "unapply migrations"),
    RESTORE_DATABASE: pgettext_lazy("stage", "restore database"),
    RESTORE_IMAGES: pgettext_lazy("stage", "restore images"),
    START_SERVICES: pgettext_lazy("stage", "start services"),
    COLLECT_STATIC: pgettext_lazy("stage", "collect static"),
    VERIFY_HEALTH: pgettext_lazy("stage", "verify health"),
    ROUTE_TRAFFIC: pgettext_lazy("stage", "route traffic"),
    "switch": pgettext_lazy("stage", "switch"),
    "migrate after switch": pgettext_lazy("stage", "migrate after switch"),
    SWITCH_BACK: pgettext_lazy("stage", "switch traffic back"),
    REMOVE_NEW_RELEASE: pgettext_lazy("stage", "remove new release"),
    START_BESIDE: pgettext_lazy("stage", "start beside"),
    SWITCH_TRAFFIC: pgettext_lazy("stage", "switch traffic"),
    RETIRE_OLD_RELEASE: pgettext_lazy("stage", "retire old release"),
}


def stage_label(name: str) -> str:
    return str(STAGE_LABELS.get(name, name))
