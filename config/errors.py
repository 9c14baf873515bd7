"""Errors the business logic raises; the API turns each into a 4xx in one format."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request that cannot be honoured for a reason the caller can act on."""

    status_code = 400
    code = "invalid"
    retry_after: int | None = None  # seconds, answered as Retry-After where waiting helps

    def __init__(
        self, message: str, *, code: str | None = None, fields: dict | None = None, retry_after: int | None = None
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}
        if retry_after is not None:
            self.retry_after = retry_after


class NotFoundError(ApplicationError):
    status_code = 404
    code = "not_found"


class ConflictError(ApplicationError):
    status_code = 409
    code = "conflict"


class ServiceUnavailableError(ApplicationError):
    """Our side cannot produce this right now (a failed render, a missing dependency): a 503."""

    status_code = 503
    code = "unavailable"


class StorageUnavailableError(ServiceUnavailableError):
    """The file store refused a write (disk full, read-only, unreachable): a 503 the client can retry."""

    code = "storage_unavailable"
    retry_after = 60
