"""API plumbing shared by every app: one error format, pagination, throttles."""

from __future__ import annotations

import logging

from django import db
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, pagination, parsers

from config import throttling
from config.errors import ApplicationError
from config.responses import error_body

logger = logging.getLogger("refrain.errors")


class Pagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 100


# The throttles named in REST_FRAMEWORK (and by views) live here; what they do in an outage of their cache
# is in config/throttling.py.
AnonThrottle, UserThrottle, ScopedThrottle = throttling.AnonThrottle, throttling.UserThrottle, throttling.ScopedThrottle


class JSONParser(parsers.JSONParser):
    """DRF's, except that JSON nested deeper than Python's recursion limit is a 400, not a 500: 1,000
    levels fit in 2 KB (`[[[...]]]`), and the decoder raises RecursionError, which DRF lets through."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.") from None


class DatabaseUnavailable(exceptions.APIException):
    """The database refused or dropped the connection: our side, and usually brief. A 503 with Retry-After."""

    status_code = 503
    default_code = "database_unavailable"
    default_detail = "The service is briefly unavailable (its database cannot be reached); try again shortly."

    def __init__(self):
        super().__init__()
        self.wait = database_retry_after()  # DRF's handler turns `wait` into Retry-After


def database_retry_after() -> int:
    from django.conf import settings

    return int(getattr(settings, "REFRAIN_DATABASE_RETRY_AFTER", 30))


def is_database_outage(exc: BaseException) -> bool:
    """Connection refused, dropped or timed out: Django wraps every driver's such errors in these two."""
    return isinstance(exc, (db.OperationalError, db.InterfaceError))


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        parts = []
        for field, value in detail.items():
            text = _flatten(value)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)


def exception_handler(exc, context):
    """Every error answers {"error": {"status", "code", "message", "fields"?}}."""
    # Imported here: rest_framework.views reads the throttle setting, which names this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, ApplicationError):
        exc = _as_drf(exc)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif is_database_outage(exc):
        logger.error("Database unavailable: %s: %s", type(exc).__name__, exc)
        exc = DatabaseUnavailable()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    fields = detail if isinstance(detail, dict) and not set(detail) <= {"detail"} else None
    code = getattr(exc, "app_code", None) or _code(exc, detail)
    response.data = error_body(response.status_code, code, _flatten(detail), fields)
    return response


def _code(exc, detail) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
    return codes if isinstance(codes, str) else getattr(exc, "default_code", "error")


def _as_drf(exc: ApplicationError) -> exceptions.APIException:
    drf_exc = exceptions.APIException(detail=exc.fields or exc.message)
    drf_exc.status_code = exc.status_code
    drf_exc.app_code = exc.code
    if exc.retry_after is not None:
        drf_exc.wait = exc.retry_after  # DRF's handler turns `wait` into Retry-After
    if exc.fields:
        drf_exc.detail = {"detail": exc.message, **exc.fields}
    return drf_exc
