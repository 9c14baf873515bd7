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


# Answers whose cause is in the request as a whole rather than in one view, documented where they can
# happen: every operation may meet a bad or expired token (401; 403 for a session without its CSRF
# token or a listener on a staff action); parameters and bodies can be invalid (400); a path naming
# something, or a page past the end, can miss (404).
CONDITIONAL = {
    "400": "Invalid request: the message and `fields` say what to change.",
    "401": "Not signed in, or the token is not valid (any more).",
    "403": "Signed in, but not allowed to do this (staff only, or the CSRF token is missing).",
    "404": "Not found: no such item (or it is not yours), or a page past the end.",
    "415": "The body's Content-Type is not one this operation reads.",
}


def _may_answer(status: str, path: str, operation: dict) -> bool:
    if status in ("401", "403"):
        return True
    has_params = bool(operation.get("parameters")) or "requestBody" in operation
    if status == "400":
        return has_params
    if status == "415":
        return "requestBody" in operation
    if status == "404":
        paginated = any(p.get("name") == "page" for p in operation.get("parameters", []))
        return "{" in path or paginated
    return False


def add_error_responses(result, generator, request, public):
    """Adds the Error component; 429 and 503 (with Retry-After) to every operation; 400, 401, 403
    and 404 where the operation can answer them (CONDITIONAL); all in the one error shape."""
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
            for status, description in CONDITIONAL.items():
                if status not in responses and _may_answer(status, path, operation):
                    responses[status] = {"description": description, "content": ref}
    return result
