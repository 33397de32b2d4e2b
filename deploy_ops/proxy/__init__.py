"""The reverse proxy in front of the site, which a zero-downtime deploy switches between releases.

A proxy does three things (``ReverseProxy``): send the traffic to one address, gracefully; answer
every request with 503, ``Retry-After`` and a maintenance page while no release serves; and say
where it sends the traffic now.  nginx is the first (a file deploy_ops rewrites, then a graceful
reload); Caddy (its admin API) and Traefik (its file provider) implement the same three calls, as
docs/RUNTIMES.md describes.
"""

from __future__ import annotations

from pathlib import Path

from ..conf import ops_settings
from .base import MAINTENANCE, ProxyError, ReverseProxy
from .nginx import NginxProxy

__all__ = ["MAINTENANCE", "NginxProxy", "ProxyError", "ReverseProxy", "configured_proxy"]

DEFAULT_RELOAD_COMMAND = ["nginx", "-s", "reload"]
DEFAULT_RETRY_AFTER = 30
DEFAULT_DRAIN_TIMEOUT = 30


def configured_proxy() -> ReverseProxy | None:
    """The proxy of DEPLOY_OPS['PROXY'] (validated by conf), or None when there is none."""
    config = ops_settings.PROXY
    if not config:
        return None

    def inside(path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else ops_settings.project_dir / path

    return NginxProxy(
        inside(config["ROUTE_FILE"]),
        config.get("RELOAD_COMMAND", DEFAULT_RELOAD_COMMAND),
        test_command=config.get("TEST_COMMAND"),
        pid_file=inside(config["PID_FILE"]) if config.get("PID_FILE") else None,
        drain_timeout=config.get("DRAIN_TIMEOUT", DEFAULT_DRAIN_TIMEOUT),
    )


def proxy_address() -> str:
    """Where the proxy sends the traffic while a release serves (DEPLOY_OPS['PROXY']['ADDRESS'])."""
    return ops_settings.PROXY["ADDRESS"]


def retry_after() -> int:
    return int(ops_settings.PROXY.get("RETRY_AFTER", DEFAULT_RETRY_AFTER))
