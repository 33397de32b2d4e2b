"""The small interface every reverse proxy implements for deploy_ops."""

from __future__ import annotations

import abc

from ..exceptions import DeployOpsError

# What ``routed_to`` says while the proxy answers 503 itself.
MAINTENANCE = "maintenance"

DEFAULT_MAINTENANCE_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><title>Back in a moment</title></head>'
    "<body><h1>Back in a moment</h1><p>The site is being updated and will be back within a minute.</p></body></html>"
)


class ProxyError(DeployOpsError):
    """The proxy could not be switched; it still sends the traffic where it did before."""


class ReverseProxy(abc.ABC):
    kind: str

    @abc.abstractmethod
    def route_to(self, address: str) -> str:
        """Send new requests to ``address`` (host:port); requests in flight finish where they began."""

    @abc.abstractmethod
    def serve_maintenance(self, retry_after: int, page: str = DEFAULT_MAINTENANCE_PAGE) -> str:
        """Answer every request with 503, ``Retry-After: retry_after`` and ``page``, never a refused connection."""

    @abc.abstractmethod
    def routed_to(self) -> str | None:
        """The address the proxy sends traffic to, MAINTENANCE, or None when deploy_ops never set it."""
