"""Everything that reads the catalog."""

from __future__ import annotations

from django.db.models import Avg, Count, QuerySet

from catalog.models import Rating, Track, User
from config.errors import NotFoundError


def track_list() -> QuerySet[Track]:
    # Aggregates drop Meta.ordering (GROUP BY): order explicitly so pages are stable.
    return Track.objects.annotate(rating_count=Count("ratings"), rating_average=Avg("ratings__score")).order_by(
        "-created_at", "-id"
    )


def track_get(*, track_id: int) -> Track:
    track = track_list().filter(pk=track_id).first()
    if track is None:
        raise NotFoundError(f"There is no track {track_id}.")
    return track


def rating_list_for_user(*, user: User) -> QuerySet[Rating]:
    return Rating.objects.filter(user=user).select_related("track")


def rating_get(*, user: User, track: Track) -> Rating | None:
    return Rating.objects.filter(user=user, track=track).first()


def corpus_sources_present(*, collections: list[str]) -> set[str]:
    return set(Track.objects.filter(collection__in=collections).values_list("source", flat=True))
