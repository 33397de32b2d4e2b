"""Service runtimes, chosen by DEPLOY_OPS['RUNTIME']."""

from ..conf import ops_settings
from .base import ServiceRuntime, ServiceState

__all__ = ["ServiceRuntime", "ServiceState", "get_runtime"]


def get_runtime() -> ServiceRuntime:
    if ops_settings.RUNTIME == "commands":
        from .commands import CommandsRuntime

        return CommandsRuntime(ops_settings.project_dir)
    if ops_settings.RUNTIME == "swarm":
        from .swarm import SwarmRuntime

        return SwarmRuntime(ops_settings.project_dir)
    from .compose import ComposeRuntime

    return ComposeRuntime(ops_settings.project_dir)
