"""The reverse proxy in front of the site, which a zero-downtime deploy switches between releases.

A proxy does three things (``ReverseProxy``): send the traffic to one address, gracefully; answer
every request with 503, ``Retry-After`` and a maintenance page while no release serves; and say
where it sends the traffic now.  nginx is the first (a file deploy_ops rewrites, then a graceful
reload); Caddy (its admin API) and Traefik (its file provider) implement the same three calls, as
docs/RUNTIMES.md describes.
"""

from .base import MAINTENANCE, ProxyError, ReverseProxy
from .nginx import NginxProxy

__all__ = ["MAINTENANCE", "NginxProxy", "ProxyError", "ReverseProxy"]
