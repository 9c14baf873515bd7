"""Error answers outside DRF's views: unknown URLs, uncaught exceptions and database outages.

Under /api/ (and to any client that asks for JSON and not HTML) they answer the API's error shape,
`{"error": {"status", "code", "message"}}`; pages elsewhere (the admin) get HTML. A database that
refuses or drops connections is a 503 with Retry-After, not a 500: our side, and usually brief.
"""

from __future__ import annotations

import logging
import sys

from django.http import HttpResponse
from django.views import defaults

from config.api import database_retry_after, is_database_outage
from config.responses import error_response, wants_json

logger = logging.getLogger("refrain.errors")


def database_unavailable(request) -> HttpResponse:
    retry_after = database_retry_after()
    return error_response(
        request,
        503,
        "database_unavailable",
        f"The service is briefly unavailable (its database cannot be reached); try again in {retry_after} s.",
        title="Service unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def not_found(request, exception=None):
    """handler404."""
    if wants_json(request):
        return error_response(request, 404, "not_found", f"Nothing is here: {request.path}")
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500. Django calls it inside its `except` block, so the exception is at hand."""
    exc = sys.exc_info()[1]
    if exc is not None and is_database_outage(exc):
        return database_unavailable(request)
    if wants_json(request):
        return error_response(request, 500, "server_error", "Something went wrong on our side; it has been logged.")
    return defaults.server_error(request)


class DatabaseUnavailableMiddleware:
    """A view (the admin, a page) that fails on a dead database answers 503, not a 500 page.

    DRF's views get the same from config.api.exception_handler; errors raised in other middleware
    (sessions, authentication) reach server_error above.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_database_outage(exception):
            return None
        logger.error("Database unavailable: %s: %s", type(exception).__name__, exception)
        return database_unavailable(request)
