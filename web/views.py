"""The listening pages: the feed, browsing, a track, rating, the player and the taste map.

Thin like the API's views: read the request, call the same selector or service the API calls,
render. Browsing applies the API's own filter set, search and ordering (catalog.apis.TrackListApi).
"""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import InvalidPage, Paginator
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.request import Request

from catalog import selectors as catalog_selectors
from catalog import services as catalog_services
from catalog.apis import TrackListApi
from catalog.filters import TrackFilter
from catalog.serializers import RatingInputSerializer
from config.errors import ApplicationError, NotFoundError
from generation import selectors as generation_selectors
from generation import services as generation_services
from recommend import feeds
from recommend import services as recommend_services
from recommend.similar import track_similar
from web import taste_map
from web.pages import SCORES, cards_for, error_page, int_param, page, signed_in, tracks_by_ids

FEED_KINDS = ("mixed", "recommended", "generated")
ORDERINGS = [
    ("-created_at", "Newest"),
    ("title", "Title, A to Z"),
    ("-rating_average", "Best rated"),
    ("-rating_count", "Most rated"),
    ("duration_seconds", "Shortest"),
    ("-duration_seconds", "Longest"),
    ("-tempo_bpm", "Fastest"),
]


def long_form_active() -> bool:
    """Whether the active model writes whole tunes (then it also continues them, in any length and meter)."""
    version = generation_selectors.model_version_active()
    return version is not None and generation_services.model_version_is_longform(version)


@require_GET
@page
def home(request):
    if not request.user.is_authenticated:
        return render(request, "web/welcome.html")
    kind = request.GET.get("kind") or "mixed"
    if kind not in FEED_KINDS:
        raise ApplicationError(f"Unknown feed {kind!r}: choose one of {', '.join(FEED_KINDS)}.")
    size = settings.REFRAIN_WEB_PAGE_SIZE
    number = int_param(request.GET.get("page"), name="page", default=1)
    shown = {int_param(v, name="shown") for v in request.GET.getlist("shown")}
    items = feeds.feed(user=request.user, kind=kind)
    if kind != "recommended":
        recommend_services.feed_top_up_enqueue(user=request.user)  # as the API does; never waits
    if shown:  # "more" from a page the listener has been rating on: the feed as it is now, minus what is shown
        remaining = [it for it in items if it.track_id not in shown]
        page_items, has_next = remaining[:size], len(remaining) > size
    else:
        start = (number - 1) * size
        page_items, has_next = items[start : start + size], len(items) > start + size
    tracks = tracks_by_ids([it.track_id for it in page_items])
    reasons = {it.track_id: (it.reason, it.source) for it in page_items}
    context = {
        "kind": kind,
        "kinds": FEED_KINDS,
        "cards": cards_for(request.user, tracks, reasons),
        "next_page": number + 1 if has_next else None,
        "page_number": number,
    }
    if request.htmx and request.GET.get("more"):
        return render(request, "web/partials/feed_items.html", context)
    return render(request, "web/home.html", context)


@require_GET
@page
def browse(request):
    params = request.GET
    filterset = TrackFilter(params, queryset=catalog_selectors.track_list())
    if not filterset.is_valid():
        raise ApplicationError(
            "Some filters are not valid: " + "; ".join(f"{k}: {v[0]}" for k, v in filterset.errors.items())
        )
    # The API's own search and ordering (its fields, its parameters `search` and `ordering`).
    drf_request, view = Request(request), TrackListApi()
    tracks = SearchFilter().filter_queryset(drf_request, filterset.qs, view)
    tracks = OrderingFilter().filter_queryset(drf_request, tracks, view)
    paginator = Paginator(tracks, 2 * settings.REFRAIN_WEB_PAGE_SIZE)
    try:
        current = paginator.page(int_param(params.get("page"), name="page", default=1))
    except InvalidPage:
        raise NotFoundError("There is no such page of results.") from None
    query = params.copy()
    query.pop("page", None)
    context = {
        "cards": cards_for(request.user, list(current.object_list)),
        "page": current,
        "query": query.urlencode(),
        "params": params,
        "choices": catalog_selectors.track_filter_choices(),
        "orderings": ORDERINGS,
    }
    return render(request, "web/browse.html", context)


@require_GET
@page
def track_page(request, track_id: int):
    track = catalog_selectors.track_get(track_id=track_id)
    similar, similar_error = [], ""
    try:
        _, found = track_similar(track=track, k=8)
        similar = cards_for(request.user, [t for t, _ in found])
    except ApplicationError as exc:  # no model, no embedding yet, no index: say so, the page still works
        similar_error = exc.message
    card = cards_for(request.user, [track])[0]
    steers = [
        ("Denser", "note_density", 1.5),
        ("Sparser", "note_density", -1.5),
        ("Higher", "register", 1.5),
        ("Lower", "register", -1.5),
        ("More minor", "major_minor", -1.5),
        ("More major", "major_minor", 1.5),
    ]
    context = {
        "card": card,
        "track": track,
        "similar": similar,
        "similar_error": similar_error,
        "steers": steers,
        "can_continue": long_form_active(),
    }
    return render(request, "web/track.html", context)


@require_POST
@signed_in
@page
def rate(request, track_id: int):
    track = catalog_selectors.track_get(track_id=track_id)
    serializer = RatingInputSerializer(data={"score": request.POST.get("score")})  # the API's input rule
    if not serializer.is_valid():
        raise ApplicationError("Choose a rating from 1 to 5.")
    rating, _ = catalog_services.rating_set(user=request.user, track=track, score=serializer.validated_data["score"])
    if request.htmx:
        card = cards_for(request.user, [track])[0]
        return render(request, "web/partials/rating.html", {"card": card, "scores": SCORES, "just_rated": True})
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("web:track", kwargs={"track_id": track.pk})
    return redirect(target)


@require_GET
@page
def player(request, track_id: int):
    """The audio player of a track, or a spinner that asks again after Retry-After while the audio
    is rendered (the same service as GET /api/v1/tracks/{id}/audio/, which renders on first request)."""
    track = catalog_selectors.track_get(track_id=track_id)
    media = catalog_services.track_audio_request(track=track)
    state = "ready" if media.audio_is_current else media.audio_status
    context = {"track": track, "state": state, "retry_after": settings.REFRAIN_AUDIO_RETRY_AFTER, "media": media}
    return render(request, "web/partials/player.html", context)


@require_GET
@signed_in
@page
def taste(request):
    the_map = taste_map.taste_map(user=request.user)
    if the_map is None:
        return error_page(
            request, 503, "No model version serves embeddings yet, so there is no map to draw.", title="No map yet"
        )
    return render(request, "web/taste.html", {"map": the_map})
