"""Similar tracks: the nearest neighbours of a track in the serving latent space."""

from __future__ import annotations

from catalog.selectors import track_list
from config.errors import ConflictError, ServiceUnavailableError
from recommend.index_readers import serving_index
from recommend.selectors import embedding_get

EXTRA_NEIGHBOURS = 5  # tracks deleted since the index was written are dropped from the answer


def tracks_in_order(ids, scores) -> list[tuple[object, float]]:
    """Tracks (with the list annotations) in the given order; ids whose track is gone are dropped."""
    ids = [int(i) for i in ids if int(i) >= 0]
    found = {t.pk: t for t in track_list().filter(pk__in=ids)}
    return [(found[i], float(s)) for i, s in zip(ids, scores) if i in found]


def track_similar(*, track, k: int = 10) -> tuple[object, list[tuple[object, float]]]:
    """(the serving model version, the k tracks nearest this one in its latent space with cosine
    scores): the version comes back with the answer so the caller names the one that was searched."""
    version, index = serving_index()
    if version is None:
        raise ServiceUnavailableError("No model version is active, so tracks have no embeddings yet.", code="no_model")
    vector = embedding_get(track=track, model_version=version)
    if vector is None:
        raise ConflictError(
            f"Track {track.pk} has no embedding yet: it is computed shortly after upload. Try again in a minute.",
            code="not_embedded",
        )
    if index is None:
        raise ConflictError(
            "The similarity index is not built yet (manage.py rebuild_index builds it).", code="index_missing"
        )
    result = index.search(vector[None], k + EXTRA_NEIGHBOURS, exclude_ids=[track.pk])
    return version, tracks_in_order(result.ids[0], result.scores[0])[:k]
