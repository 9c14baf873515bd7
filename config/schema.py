"""drf-spectacular post-processing: the error answers every endpoint can give, in the one error shape."""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": True},
            },
        }
    },
}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before trying again."}}
COMMON = {
    "429": ("Throttled: too many requests; see Retry-After.", True),
    "503": (
        "Briefly unavailable (database unreachable, or a sign-in counter that cannot be reached); see Retry-After.",
        True,
    ),
}


def add_error_responses(result, generator, request, public):
    """Adds the Error component, and 429 and 503 (with Retry-After) to every operation that lacks them."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, (description, retry) in COMMON.items():
                if status not in responses:
                    responses[status] = {"description": description, "content": ref}
                    if retry:
                        responses[status]["headers"] = _RETRY_AFTER
    return result
