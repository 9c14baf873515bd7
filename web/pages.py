"""What every page shares: application errors as HTML pages with their status, sign-in checks that
also suit htmx requests, and track cards (a track, its rating by the viewer, and why it is shown)."""

from __future__ import annotations

import dataclasses
import functools

from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse
from django.shortcuts import render

from catalog import selectors as catalog_selectors
from catalog.models import Track
from config.errors import ApplicationError

SCORES = (1, 2, 3, 4, 5)


def error_page(request, status: int, message: str, *, title: str = "") -> HttpResponse:
    template = "web/partials/error.html" if request.htmx else "web/error.html"
    titles = {400: "That did not work", 401: "Sign in first", 403: "Not allowed", 404: "Not found"}
    context = {"status": status, "message": message, "title": title or titles.get(status, "Something is wrong")}
    return render(request, template, context, status=status)


def page(view):
    """A refusal from a service or selector (ApplicationError: bad input, not found, conflict) is an
    HTML page with that status and the service's message, never a 500."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except ApplicationError as exc:
            response = error_page(request, exc.status_code, exc.message)
            if exc.retry_after:
                response["Retry-After"] = str(exc.retry_after)
            return response

    return wrapped


def signed_in(view):
    """Like login_required, but an htmx request is sent to the sign-in page as a whole page
    (HX-Redirect) instead of having it swapped into a fragment."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        response = redirect_to_login(request.get_full_path())
        if request.htmx:
            return HttpResponse(status=204, headers={"HX-Redirect": response["Location"]})
        return response

    return wrapped


def int_param(raw, *, name: str, default: int | None = None, low: int = 1, high: int = 10**9) -> int | None:
    """A whole number from a query string, or ApplicationError (a 400 page) naming the parameter."""
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApplicationError(f"{name} must be a whole number.") from None
    if not low <= value <= high:
        raise ApplicationError(f"{name} must be between {low} and {high}.")
    return value


@dataclasses.dataclass
class Card:
    track: Track
    score: int | None = None  # the viewer's rating
    reason: str = ""
    source: str = ""


def cards_for(user, tracks: list[Track], reasons: dict[int, tuple[str, str]] | None = None) -> list[Card]:
    """Cards for these tracks in this order, with the viewer's ratings (one query)."""
    scores: dict[int, int] = {}
    if user.is_authenticated and tracks:
        scores = dict(
            catalog_selectors.rating_list_for_user(user=user)
            .filter(track_id__in=[t.pk for t in tracks])
            .values_list("track_id", "score")
        )
    reasons = reasons or {}
    return [Card(t, scores.get(t.pk), *reasons.get(t.pk, ("", ""))) for t in tracks]


def tracks_by_ids(track_ids: list[int]) -> list[Track]:
    """These tracks (with the list's rating annotations), in this order; deleted ones dropped."""
    found = {t.pk: t for t in catalog_selectors.track_list().filter(pk__in=track_ids)}
    return [found[i] for i in track_ids if i in found]
