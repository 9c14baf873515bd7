"""The read side of the index in a web or worker process: one reader per index directory, the
serving index, and the per-index catalog summary the feeds share.

Process-level caches live here and nowhere else; everything is derived from the database
(recommend.selectors) and the files under REFRAIN_INDEX_DIR.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache

from recommend.index import IndexCorruptError, IndexNotFoundError, IndexReader, LayeredIndex, VectorIndex
from recommend.selectors import serving_version
from recommend.tasks import index_sync_task

logger = logging.getLogger(__name__)


def index_root() -> Path:
    """settings.REFRAIN_INDEX_DIR, or `index/` next to MEDIA_ROOT (var/index by default).

    Next to MEDIA_ROOT rather than fixed, so that anything pointed at its own media folder (a test,
    the worker a test starts) also gets its own index and never writes into the developer's one.
    """
    configured = getattr(settings, "REFRAIN_INDEX_DIR", None)
    return Path(configured) if configured else Path(settings.MEDIA_ROOT).parent / "index"


def index_dir(model_version_id: int) -> Path:
    return index_root() / f"v{model_version_id}"


# --- readers: one per version directory and process, reloaded when a new version is saved ----------

_readers: dict[str, IndexReader] = {}
_readers_lock = threading.Lock()


def index_reader(*, model_version_id: int) -> IndexReader:
    directory = str(index_dir(model_version_id))
    with _readers_lock:
        reader = _readers.get(directory)
        if reader is None:
            reader = _readers[directory] = IndexReader(directory)
        return reader


def serving_index() -> tuple[Any, LayeredIndex | None]:
    """(serving model version, its loaded index), or (version or None, None) when there is none.

    An unreadable index (a truncated or deleted file) answers like a missing one, so feeds fall back
    instead of failing, and asks a worker to rebuild it (at most once a minute). On a host of its own,
    its `index_sync --follow` repairs its folder the same way.
    """
    version = serving_version()
    if version is None:
        return None, None
    try:
        return version, index_reader(model_version_id=version.pk).index
    except IndexCorruptError:
        logger.exception("The index of model version %s is unreadable; asking for a rebuild.", version.pk)
        if cache.add(f"recommend:index-repair:{version.pk}", 1, timeout=60):
            try:
                index_sync_task.delay(version.pk)
            except Exception:
                logger.exception("Could not enqueue the repair of the index of model version %s.", version.pk)
        return version, None
    except IndexNotFoundError:
        return version, None


# --- the catalog summary: mean, ids and unit vectors of an index, shared by every feed -------------

_summary_cache: dict[object, dict] = {}
_summary_lock = threading.Lock()
# A catalog summary (mean, ids, vectors, cold-start groups) is reused across index versions while the
# catalog has changed by at most this share: every upload and every generated track saves a new
# version, and recomputing the summary (export every vector, read every track row, k-means) made the
# first request after each save slow (0.3 s for a feed, 1.4 s for a cold start at 100k tracks).
SUMMARY_REUSE_SHARE = 0.05


def catalog_summary(index: LayeredIndex | VectorIndex) -> dict:
    """{"mean", "ids", "vectors", ...} of the catalog in an index, per index directory.

    Tracks added since the summary was taken are absent from it (callers look them up: see
    feeds.catalog_track_ids and feeds.index_vectors); tracks deleted since are filtered when a page is
    served. Other modules memoise what they derive from it in the same dict (e.g. "cold_start").
    """
    key = index.source or id(index)
    with _summary_lock:
        cached = _summary_cache.get(key)
    grown = cached is not None and abs(len(index) - cached["n"]) > SUMMARY_REUSE_SHARE * max(cached["n"], 1)
    if cached is not None and cached["version"] != index.version and grown:
        cached = None
    if cached is None:
        ids, vectors = index.export()
        mean = vectors.mean(axis=0) if len(ids) else np.zeros(index.dim, np.float32)
        cached = {
            "mean": mean.astype(np.float32),
            "ids": ids,
            "vectors": vectors,
            "version": index.version,
            "n": len(ids),
        }
        with _summary_lock:
            if len(_summary_cache) > 8:
                _summary_cache.clear()
            _summary_cache[key] = cached
    return cached
