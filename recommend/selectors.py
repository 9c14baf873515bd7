"""Everything that reads recommendation state: embeddings, the index (through a process-level
reader per model version), similar tracks, taste vectors and feeds. No model inference here: every
request is answered from stored embeddings and the FAISS index.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
from django.conf import settings

from config.errors import ConflictError, ServiceUnavailableError
from recommend.models import TrackEmbedding, vector_from_bytes


def index_root() -> Path:
    """settings.REFRAIN_INDEX_DIR, or `index/` next to MEDIA_ROOT (var/index by default).

    Next to MEDIA_ROOT rather than fixed, so that anything pointed at its own media folder (a test,
    the worker a test starts) also gets its own index and never writes into the developer's one.
    """
    configured = getattr(settings, "REFRAIN_INDEX_DIR", None)
    return Path(configured) if configured else Path(settings.MEDIA_ROOT).parent / "index"


def index_dir(model_version_id: int) -> Path:
    return index_root() / f"v{model_version_id}"


def embedding_matrix(*, model_version, track_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """(track ids int64 [n], vectors float32 [n, z]) of the stored embeddings of a version."""
    rows = TrackEmbedding.objects.filter(model_version=model_version)
    if track_ids is not None:
        rows = rows.filter(track_id__in=list(track_ids))
    ids, vectors = [], []
    for track_id, data in rows.order_by("track_id").values_list("track_id", "vector").iterator(chunk_size=2000):
        ids.append(track_id)
        vectors.append(vector_from_bytes(data))
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
    return np.asarray(ids, dtype=np.int64), np.stack(vectors).astype(np.float32)


def embedding_get(*, track, model_version) -> np.ndarray | None:
    data = (TrackEmbedding.objects.filter(track=track, model_version=model_version)
            .values_list("vector", flat=True).first())
    return None if data is None else vector_from_bytes(data)


def tracks_missing_embedding(*, model_version):
    from catalog.models import Track

    return (Track.objects.exclude(embeddings__model_version=model_version).order_by("pk")
            .values_list("pk", flat=True))


# --- readers: one per version directory and process, reloaded when a new version is saved ----------

_readers: dict[str, object] = {}
_readers_lock = threading.Lock()


def index_reader(*, model_version_id: int):
    from recommend.index import IndexReader

    directory = str(index_dir(model_version_id))
    with _readers_lock:
        reader = _readers.get(directory)
        if reader is None:
            reader = _readers[directory] = IndexReader(directory)
        return reader


def active_index():
    """(active model version, its loaded VectorIndex), or (version or None, None) when there is none."""
    from generation.selectors import model_version_active
    from recommend.index import IndexNotFoundError

    version = model_version_active()
    if version is None:
        return None, None
    try:
        return version, index_reader(model_version_id=version.pk).index
    except IndexNotFoundError:
        return version, None


def _tracks_in_order(ids, scores) -> list[tuple[object, float]]:
    """Tracks (with the list annotations) in the given order; ids whose track is gone are dropped."""
    from catalog.selectors import track_list

    ids = [int(i) for i in ids if int(i) >= 0]
    found = {t.pk: t for t in track_list().filter(pk__in=ids)}
    return [(found[i], float(s)) for i, s in zip(ids, scores) if i in found]


def track_similar(*, track, k: int = 10) -> list[tuple[object, float]]:
    """The k tracks nearest this one in the active version's latent space, with cosine scores."""
    version, index = active_index()
    if version is None:
        raise ServiceUnavailableError("No model version is active, so tracks have no embeddings yet.",
                                      code="no_model")
    vector = embedding_get(track=track, model_version=version)
    if vector is None:
        raise ConflictError(f"Track {track.pk} has no embedding yet: it is computed shortly after upload. "
                            "Try again in a minute.", code="not_embedded")
    if index is None:
        raise ConflictError("The similarity index is not built yet (manage.py rebuild_index builds it).",
                            code="index_missing")
    # A little extra: tracks deleted since the index was written are dropped below.
    result = index.search(vector[None], k + 5, exclude_ids=[track.pk])
    return _tracks_in_order(result.ids[0], result.scores[0])[:k]
