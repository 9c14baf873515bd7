"""The one error shape as plain Django responses, for what answers outside DRF (middleware, handlers,
throttled forms): JSON under /api/ and for clients that ask for it, a short HTML page elsewhere."""

from __future__ import annotations

from html import escape

from django.http import HttpResponse, JsonResponse


def error_body(status: int, code: str, message: str, fields: dict | None = None) -> dict:
    body = {"status": status, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{message}</p></body></html>
"""


def wants_json(request) -> bool:
    if request.path.startswith("/api/") or request.path == "/healthz":
        return True
    accept = request.headers.get("Accept", "")
    return ("application/json" in accept or "+json" in accept) and "text/html" not in accept


def error_response(
    request, status: int, code: str, message: str, *, title: str = "", headers: dict | None = None
) -> HttpResponse:
    if wants_json(request):
        response: HttpResponse = JsonResponse(error_body(status, code, message), status=status)
    else:
        page = _PAGE.format(title=escape(title or message), message=escape(message))
        response = HttpResponse(page, status=status, content_type="text/html; charset=utf-8")
    for name, value in (headers or {}).items():
        response[name] = value
    return response
