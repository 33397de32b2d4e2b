"""The deploy's health probe: one GET of the serving release's health URL, sent the way the site's reverse proxy sends it.

By default it probes the release the proxy routes to (``proxy.serving.serving_release``): a
blue/green slot's HEALTH_CHECK_URL once a zero-downtime deploy moved the site there, else
HEALTH_CHECK_URL.

A site behind a proxy trusts the proxy's headers: its ``ALLOWED_HOSTS`` names the domain, not
127.0.0.1, and ``SECURE_SSL_REDIRECT`` sends plain http to https unless ``X-Forwarded-Proto`` says
https.  So the probe sends the configured ``Host`` (HEALTH_CHECK_HOST), the forwarding headers
(HEALTH_CHECK_FORWARDED_PROTO) and the health token as a header (never in the URL), and it does
not follow redirects: a redirect is reported, with the setting that avoids it.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.utils.translation import gettext as _

from .conf import ops_settings

BODY_LIMIT = 4000


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # Returning None makes urllib raise the 3xx as an HTTPError, which the probe reports.
    def redirect_request(self, request, fp, code, message, headers, new_url):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


@dataclass(frozen=True)
class ProbeResult:
    url: str
    # 0 when nothing answered.
    status: int
    # The start of the body, or why nothing answered.
    body: str
    # Where a redirect points.
    location: str = ""

    @property
    def healthy(self) -> bool:
        return self.status == 200

    def problem(self) -> str:
        """Why this answer is not healthy, with the usual fix."""
        if self.status == 0:
            return _("%(url)s did not answer: %(error)s") % {"url": self.url, "error": self.body}
        if 300 <= self.status < 400:
            return _(
                "%(url)s answered HTTP %(status)s, a redirect to %(location)s (not followed). "
                "With SECURE_SSL_REDIRECT, set DEPLOY_OPS['HEALTH_CHECK_FORWARDED_PROTO'] = 'https' (the site must set "
                "SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https')), or exempt the health path with "
                "SECURE_REDIRECT_EXEMPT = [r'^health/']."
            ) % {"url": self.url, "status": self.status, "location": self.location or _("an unnamed place")}
        text = _("%(url)s answered HTTP %(status)s: %(answer)s") % {
            "url": self.url,
            "status": self.status,
            "answer": summarise_health_body(self.body),
        }
        if self.status == 400:
            text += " " + _(
                "A 400 is usually Django refusing the Host header %(host)r (not in ALLOWED_HOSTS): "
                "set DEPLOY_OPS['HEALTH_CHECK_HOST'] to the site's domain."
            ) % {"host": probe_host(self.url)}
        return text


def probe_host(url: str | None = None) -> str:
    """The Host the probe sends: HEALTH_CHECK_HOST, else the URL's own host (and port)."""
    return ops_settings.HEALTH_CHECK_HOST or urlsplit(url or ops_settings.HEALTH_CHECK_URL).netloc


def request_headers(url: str) -> dict[str, str]:
    headers = {"Accept": "application/json", "Host": probe_host(url)}
    if ops_settings.HEALTH_CHECK_FORWARDED_PROTO:
        headers["X-Forwarded-Proto"] = ops_settings.HEALTH_CHECK_FORWARDED_PROTO
        headers["X-Forwarded-For"] = "127.0.0.1"
    if ops_settings.HEALTH_TOKEN:
        from .health.views import TOKEN_HEADER

        headers[TOKEN_HEADER] = ops_settings.HEALTH_TOKEN
    return headers


def probe_health(url: str | None = None, timeout: float | None = None) -> ProbeResult:
    """GET the health URL once (default: the serving release's), as the site's proxy would."""
    if not url:
        from .proxy.serving import serving_release

        url = serving_release().health_url
    timeout = ops_settings.HEALTH_CHECK_TIMEOUT if timeout is None else timeout
    request = urllib.request.Request(url, headers=request_headers(url))
    try:
        with _opener.open(request, timeout=timeout) as response:
            return ProbeResult(url, response.status, _read(response))
    except urllib.error.HTTPError as error:
        return ProbeResult(url, error.code, _read(error), location=error.headers.get("Location", ""))
    except (urllib.error.URLError, OSError) as error:
        return ProbeResult(url, 0, str(getattr(error, "reason", error)))


def _read(response) -> str:
    return response.read(BODY_LIMIT).decode("utf-8", "replace")


def summarise_health_body(body: str) -> str:
    """The failing checks of a JSON /health/ answer, else the body's text on one line."""
    try:
        results = json.loads(body)
    except ValueError:
        results = None
    failing = [f"{name}: {result}" for name, result in results.items() if result != "OK"] if isinstance(results, dict) else []
    # An error page is HTML: its words are enough, on one line.
    return "; ".join(failing) or " ".join(re.sub(r"<[^>]*>", " ", body).split())[:300]
