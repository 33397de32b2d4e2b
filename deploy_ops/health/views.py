"""``/health/`` (every configured check) and ``/health/live/`` (liveness: no database, no Docker).

Status codes: 200 when every check passes or only warns, 500 when any check fails.  Stock
django-health-check v4 answers 500 for a warning too; here a warning (a rolled-back deploy, code
changed by hand) is shown in the details but does not page, because the site serves and the
deploy's own health stage must not fail on the very commit change it is making.

With ``DEPLOY_OPS['HEALTH_TOKEN']`` set, only a request carrying it (``?token=`` or an
``X-Health-Token`` header) sees the details; any other gets the same status code and a body of
``ok`` or ``error``.  The token is removed from the request before anything renders, so no
format (HTML, JSON, text, feeds, OpenMetrics) can echo it back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading

from django.http import HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from health_check.views import HealthCheckView

from ..conf import ops_settings
from .checks import configured_check_entries, is_failure

TOKEN_PARAMETER = "token"
TOKEN_HEADER = "X-Health-Token"

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
    """Whether the request may see details; strips the token from the request either way."""
    given = request.headers.get(TOKEN_HEADER, "")
    if TOKEN_PARAMETER in request.GET:
        given = given or request.GET[TOKEN_PARAMETER]
        query = request.GET.copy()
        del query[TOKEN_PARAMETER]
        request.GET = query
        request.META["QUERY_STRING"] = query.urlencode()
    expected = ops_settings.HEALTH_TOKEN
    return not expected or constant_time_compare(given, expected)


def wants_json(request) -> bool:
    return request.GET.get("format") == "json" or "json" in request.headers.get("Accept", "")


class HealthView(HealthCheckView):
    """The stock view over DEPLOY_OPS['HEALTH_CHECKS'], with the token and the warning rule above."""

    def get_checks(self):
        self.checks = configured_check_entries()
        return super().get_checks()

    def get_executor(self):
        # The stock view's per-request default executor; the sync checks here touch no database.
        return contextlib.nullcontext(_shared_executor())

    async def get(self, request, *args, **kwargs):
        detailed = take_token(request)
        response = await super().get(request, *args, **kwargs)
        healthy = not any(is_failure(result.error) for result in self.results)
        if not detailed:
            return minimal_response(request, healthy)
        if response.status_code == 500 and healthy:
            response.status_code = 200
        return response


def minimal_response(request, healthy: bool) -> HttpResponse:
    status = 200 if healthy else 500
    word = "ok" if healthy else "error"
    if wants_json(request):
        return JsonResponse({"status": word}, status=status)
    return HttpResponse(word + "\n", status=status, content_type="text/plain; charset=utf-8")


@never_cache
def live(request):
    """The process answers HTTP: nothing else is touched, so a busy database cannot fail it."""
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")
