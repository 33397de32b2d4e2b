from django.http import HttpResponseServerError

from . import flags


def injected_health_failure(get_response):
    """/health/ answers 500 while flags.HEALTH_FAIL is set; /health/live/ (the container's check) stays up."""

    def middleware(request):
        if flags.HEALTH_FAIL and request.path == "/health/":
            return HttpResponseServerError("unhealthy (HEALTH_FAIL is set in sitecfg/flags.py)\n")
        return get_response(request)

    return middleware
