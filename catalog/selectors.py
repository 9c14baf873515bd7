"""Everything that reads the catalog."""

from __future__ import annotations

from django.db.models import Avg, Count, F, QuerySet

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


def rating_scores_for_taste(*, user: User, limit: int) -> list[tuple[int, int, str]]:
    """(track id, score, title) of the user's latest `limit` ratings other than the neutral 3."""
    return list(
        Rating.objects.filter(user=user)
        .exclude(score=3)
        .order_by("-updated_at", "-id")
        .values_list("track_id", "score", "track__title")[:limit]
    )


def rated_track_ids(*, user: User) -> set[int]:
    return set(Rating.objects.filter(user=user).values_list("track_id", flat=True))


def track_ids_existing(*, track_ids, generated: bool | None = None) -> set[int]:
    """The ids among `track_ids` whose track still exists (and is, or is not, generated)."""
    rows = Track.objects.filter(pk__in=[int(i) for i in track_ids])
    if generated is not None:
        rows = rows.filter(is_generated=generated)
    return set(rows.values_list("pk", flat=True))


def catalog_track_collections() -> dict[int, str]:
    """Collection of every catalog (not generated) track, by id: one query, no IN list."""
    return dict(Track.objects.filter(is_generated=False).values_list("pk", "collection"))


def track_list_best_rated(*, exclude_ids, limit: int) -> list[tuple[int, float | None]]:
    """(id, mean rating) of the best-rated catalog tracks, most ratings first among equals."""
    return list(
        track_list()
        .filter(is_generated=False)
        .exclude(pk__in=list(exclude_ids))
        .order_by(F("rating_average").desc(nulls_last=True), "-rating_count", "-id")
        .values_list("pk", "rating_average")[:limit]
    )


def track_filter_choices() -> dict[str, list[str]]:
    """The values each browse filter can take (distinct, non-empty, sorted): for the pages' menus."""
    fields = {"collection": "collection", "region": "region", "time_signature": "time_signature", "key": "key"}
    return {
        name: list(Track.objects.exclude(**{field: ""}).order_by(field).values_list(field, flat=True).distinct())
        for name, field in fields.items()
    }


def rating_history(*, user: User, limit: int) -> list[tuple[int, int, str]]:
    """(track id, score, title) of the user's latest `limit` ratings, every score (the feed's input)."""
    return list(
        Rating.objects.filter(user=user)
        .order_by("-updated_at", "-id")
        .values_list("track_id", "score", "track__title")[:limit]
    )


def rating_log() -> tuple[list[int], list[int], list[int], list[float]]:
    """Every rating of a catalog track as parallel lists: user ids, track ids, scores, and the time
    each was last set (epoch seconds). One query, streamed (the collaborative refit reads it)."""
    users, tracks, scores, times = [], [], [], []
    rows = (
        Rating.objects.filter(track__is_generated=False)
        .order_by()
        .values_list("user_id", "track_id", "score", "updated_at")
    )
    for user_id, track_id, score, updated in rows.iterator(chunk_size=20000):
        users.append(user_id)
        tracks.append(track_id)
        scores.append(score)
        times.append(updated.timestamp())
    return users, tracks, scores, times


def catalog_track_added() -> tuple[list[int], list[float]]:
    """(ids, creation times in epoch seconds) of every catalog (not generated) track, by id."""
    rows = Track.objects.filter(is_generated=False).order_by("pk").values_list("pk", "created_at")
    ids, added = [], []
    for pk, created in rows.iterator(chunk_size=20000):
        ids.append(pk)
        added.append(created.timestamp())
    return ids, added
