"""``/health/`` (every configured check) and ``/health/live/`` (liveness: no database, no Docker).

Status codes: 200 when every check passes or only warns, 500 when any check fails.  Stock
django-health-check v4 answers 500 for a warning too; here a warning (a rolled-back deploy, code
changed by hand) is shown in the details but does not page, because the site serves and the
deploy's own health stage must not fail on the very commit change it is making.

Details (each check and its message) are shown only to a request that carries
``DEPLOY_OPS['HEALTH_TOKEN']`` (``?token=`` or an ``X-Health-Token`` header), to a staff
session, or to everyone with ``HEALTH_DETAILS_PUBLIC``.  Any other request gets the status
alone: the same status code and ``ok`` or ``error``, computed at most once every
``HEALTH_STATUS_CACHE_SECONDS`` per process, so a flood of anonymous polls does not run every
check (a ``docker compose config`` among them) each time.  The token is removed from the request
before anything renders, so no format (HTML, JSON, text, feeds, OpenMetrics) can echo it back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time

from django.http import HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from health_check.views import HealthCheckView, MediaType

from ..conf import ops_settings
from .checks import configured_check_entries, is_failure

TOKEN_PARAMETER = "token"
TOKEN_HEADER = "X-Health-Token"
FORMATS = ("json", "text", "atom", "rss", "openmetrics")
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

# The configured checks (as a repr) -> (monotonic expiry, healthy): the status-only answer.
_status_cache: dict[str, tuple[float, bool]] = {}

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _shared_executor() -> concurrent.futures.ThreadPoolExecutor:
    # Created on first use (after a pre-forking server forks), then kept: a new pool per
    # request would start and join threads on every poll.
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="deploy-ops-health")
        return _executor


def take_token(request) -> bool:
    """Whether the request carries HEALTH_TOKEN; strips the token from the request either way."""
    given = request.headers.get(TOKEN_HEADER, "")
    if TOKEN_PARAMETER in request.GET:
        given = given or request.GET[TOKEN_PARAMETER]
        query = request.GET.copy()
        del query[TOKEN_PARAMETER]
        request.GET = query
        request.META["QUERY_STRING"] = query.urlencode()
    expected = ops_settings.HEALTH_TOKEN
    return bool(expected) and constant_time_compare(given, expected)


async def may_see_details(request) -> bool:
    if take_token(request) or ops_settings.HEALTH_DETAILS_PUBLIC:
        return True
    # request.auser exists where AuthenticationMiddleware runs; without it there are no sessions.
    if not hasattr(request, "auser"):
        return False
    user = await request.auser()
    return user.is_active and user.is_staff


def accept_is_valid(request) -> bool:
    """Whether the stock view can read the Accept header (it answers a malformed one with a 500)."""
    if request.GET.get("format") in FORMATS:
        return True
    try:
        list(MediaType.parse_header(request.headers.get("Accept", "*/*")))
    except ValueError:
        return False
    return True


def requested_format(request) -> str:
    """json, openmetrics or text: the status-only answer's shape, by ?format= first, then Accept."""
    asked = request.GET.get("format") or request.headers.get("Accept", "")
    if "openmetrics" in asked:
        return "openmetrics"
    return "json" if "json" in asked else "text"


class HealthView(HealthCheckView):
    """The stock view over DEPLOY_OPS['HEALTH_CHECKS'], with the details rule and the warning rule above."""

    def get_checks(self):
        self.checks = configured_check_entries()
        return super().get_checks()

    def get_executor(self):
        # The stock view's per-request default executor; the sync checks here touch no database.
        return contextlib.nullcontext(_shared_executor())

    async def get(self, request, *args, **kwargs):
        if not (await may_see_details(request) and accept_is_valid(request)):
            return status_response(request, await self.cached_health())
        response = await super().get(request, *args, **kwargs)
        healthy = self.healthy()
        if response.status_code == 500 and healthy:
            response.status_code = 200
        return response

    def healthy(self) -> bool:
        return not any(is_failure(result.error) for result in self.results)

    async def cached_health(self) -> bool:
        key = repr(ops_settings.HEALTH_CHECKS)
        cached = _status_cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        with self.get_executor() as executor:
            self.results = await asyncio.gather(*(check.get_result(executor) for check in self.get_checks()))
        healthy = self.healthy()
        _status_cache[key] = (time.monotonic() + ops_settings.HEALTH_STATUS_CACHE_SECONDS, healthy)
        return healthy


def status_response(request, healthy: bool) -> HttpResponse:
    """The status alone: 200 ``ok`` or 500 ``error`` (OpenMetrics: the overall gauge, always 200, as the stock format)."""
    status = 200 if healthy else 500
    word = "ok" if healthy else "error"
    shape = requested_format(request)
    if shape == "json":
        return JsonResponse({"status": word}, status=status)
    if shape == "openmetrics":
        lines = [
            "# HELP django_health_check_overall_status Overall health check status (1 = all healthy, 0 = at least one unhealthy)",
            "# TYPE django_health_check_overall_status gauge",
            f"django_health_check_overall_status {int(healthy)}",
            "# EOF",
        ]
        return HttpResponse("\n".join(lines) + "\n", content_type=OPENMETRICS_TYPE)
    return HttpResponse(word + "\n", status=status, content_type="text/plain; charset=utf-8")


@never_cache
def live(request):
    """The process answers HTTP: nothing else is touched, so a busy database cannot fail it."""
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")
