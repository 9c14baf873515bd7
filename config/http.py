"""Serving stored files over HTTP with validators and single byte ranges (RFC 9110 sections 13-14).

Browser audio players seek with `Range: bytes=a-`; that needs 206 with Content-Range, Accept-Ranges
on every answer, and 416 for a range that starts past the end. Multiple ranges in one request are
answered with the whole file (a server may ignore Range, and no player asks for several).
"""

from __future__ import annotations

import re

from django.http import FileResponse, HttpResponse, JsonResponse
from django.utils.http import parse_etags

from config.responses import error_body

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def parse_byte_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """One `bytes=` range -> (first, last) inclusive, clipped to the file.

    Returns None when the header should be ignored (absent, malformed, several ranges, other unit)
    and False when it is syntactically fine but unsatisfiable (a 416).
    """
    match = _RANGE.match(header or "")
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            return False
        return max(0, size - length), size - 1
    start = int(first)
    if last != "" and int(last) < start:
        return None  # invalid per RFC 9110: ignore the header
    if start >= size:
        return False
    return start, size - 1 if last == "" else min(int(last), size - 1)


def ranged_file_response(
    request, field_file, *, content_type: str, etag: str, filename: str = "", max_age: int = 3600
) -> HttpResponse:
    """200 with the whole file, 206 with one range, 304 when the client's copy is current, or 416."""
    quoted = f'"{etag}"'
    headers = {"Accept-Ranges": "bytes", "ETag": quoted, "Cache-Control": f"public, max-age={max_age}"}
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and (if_none_match.strip() == "*" or quoted in parse_etags(if_none_match)):
        response = HttpResponse(status=304)
        for name, value in headers.items():
            response[name] = value
        return response
    try:
        return _file_response(request, field_file, content_type=content_type, headers=headers, filename=filename)
    except FileNotFoundError:  # removed between the lookup and the read (a staff delete): gone, not a 500
        return JsonResponse(error_body(404, "not_found", "No such file (it has just been deleted)."), status=404)


def _file_response(request, field_file, *, content_type: str, headers: dict, filename: str) -> HttpResponse:
    size = field_file.size
    wanted = parse_byte_range(request.headers.get("Range", ""), size)
    if_range = request.headers.get("If-Range")
    if wanted is not None and if_range and if_range.strip() != headers["ETag"]:
        wanted = None  # the client's partial copy is of another version: send it all
    if wanted is False:
        response = JsonResponse(
            error_body(416, "range_not_satisfiable", f"The range is outside the file ({size} bytes)."), status=416
        )
        response["Content-Range"] = f"bytes */{size}"
    elif wanted is None:
        response = FileResponse(field_file.open("rb"), content_type=content_type)
    else:
        first, last = wanted
        with field_file.open("rb") as handle:
            handle.seek(first)
            body = handle.read(last - first + 1)
        response = HttpResponse(body, status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
        response["Content-Length"] = str(len(body))
    for name, value in headers.items():
        response[name] = value
    if filename and response.status_code in (200, 206):
        response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


class FileContentNegotiation:
    """For endpoints that answer with a file: never 406. A player that sends `Accept: audio/ogg` gets the
    audio; the JSON answers (202, errors) fall back to the first renderer."""

    def select_parser(self, request, parsers):
        from rest_framework.negotiation import DefaultContentNegotiation

        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        from rest_framework.exceptions import NotAcceptable
        from rest_framework.negotiation import DefaultContentNegotiation

        try:
            return DefaultContentNegotiation().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type
