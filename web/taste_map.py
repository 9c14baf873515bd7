"""Your taste as a map: the serving model version's embeddings projected to 2D (PCA), the catalog
as a faint cloud coloured by collection, your rated, recommended and generated tracks on top.

The projection is computed once per index version (a process cache, like recommend.index_readers'
catalog summary): PCA of a few thousand 16..512-dimensional unit vectors is an SVD of milliseconds,
reading the vectors from the database dominates. Tracks embedded since (new generated tracks) are
projected with the cached basis.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
from django.conf import settings

from catalog import selectors as catalog_selectors
from generation import selectors as generation_selectors
from recommend import feeds
from recommend.index_readers import serving_index
from recommend.selectors import embedding_count, embedding_matrix

WIDTH, HEIGHT, PAD = 960, 600, 24
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
FEED_POINTS = 20


@dataclasses.dataclass
class Projection:
    mean: np.ndarray  # [z]
    basis: np.ndarray  # [z, 2]
    ids: np.ndarray  # [n]
    xy: np.ndarray  # [n, 2]
    low: np.ndarray  # [2] bounds of the catalog, for scaling
    high: np.ndarray

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return (_unit(vectors) - self.mean) @ self.basis


_cache: dict[tuple, Projection] = {}
_lock = threading.Lock()


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def projection(model_version, index) -> Projection | None:
    """PCA of the version's stored embeddings (unit vectors: the index's cosine geometry)."""
    key = (model_version.pk, index.version if index is not None else embedding_count(model_version=model_version))
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    ids, vectors = embedding_matrix(model_version=model_version)
    if len(ids) < 3:
        return None
    units = _unit(vectors)
    mean = units.mean(axis=0)
    _, _, vt = np.linalg.svd(units - mean, full_matrices=False)
    basis = vt[:2].T.astype(np.float32)
    xy = (units - mean) @ basis
    found = Projection(mean, basis, ids, xy, xy.min(axis=0), xy.max(axis=0))
    with _lock:
        if len(_cache) > 4:
            _cache.clear()
        _cache[key] = found
    return found


@dataclasses.dataclass
class Point:
    track_id: int
    title: str
    x: float
    y: float
    kind: str  # "catalog", "liked", "disliked", "feed", "generated"
    colour: str = ""
    label: str = ""


def taste_map(*, user) -> dict | None:
    version, index = serving_index()
    if version is None:
        return None
    proj = projection(version, index)
    if proj is None:
        return None
    position = {int(t): i for i, t in enumerate(proj.ids.tolist())}
    collections = catalog_selectors.catalog_track_collections()
    ratings = list(catalog_selectors.rating_list_for_user(user=user).values_list("track_id", "score", "track__title"))
    feed_items = feeds.feed(user=user, kind="recommended")[:FEED_POINTS]
    jobs = generation_selectors.generation_job_list(user=user).filter(owner=user)[:50]
    generated = [t.pk for job in jobs for t in job.tracks.all()]
    layers = [
        ("liked", [(t, f"{title}: you rated it {s}") for t, s, title in ratings if s >= 4]),
        ("disliked", [(t, f"{title}: you rated it {s}") for t, s, title in ratings if s <= 2]),
        ("feed", [(it.track_id, "") for it in feed_items]),
        ("generated", [(t, "") for t in generated]),
    ]
    wanted = sorted({t for _, items in layers for t, _ in items})
    titles = dict(catalog_selectors.track_list().filter(pk__in=wanted).values_list("pk", "title"))
    missing = [t for t in wanted if t not in position and t in titles]
    extra_xy: dict[int, np.ndarray] = {}
    if missing:  # embedded since the projection was cached
        ids, vectors = embedding_matrix(model_version=version, track_ids=missing)
        if len(ids):
            extra_xy = dict(zip(ids.tolist(), proj.project(vectors)))

    def xy_of(track_id: int):
        if track_id in position:
            return proj.xy[position[track_id]]
        return extra_xy.get(track_id)

    span = np.maximum(proj.high - proj.low, 1e-6)

    def scaled(xy) -> tuple[float, float]:
        x = PAD + float((xy[0] - proj.low[0]) / span[0]) * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - float((xy[1] - proj.low[1]) / span[1]) * (HEIGHT - 2 * PAD)
        return round(min(max(x, 4), WIDTH - 4), 1), round(min(max(y, 4), HEIGHT - 4), 1)

    names = sorted({c or "(none)" for c in collections.values()})
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    cloud_ids = [t for t in proj.ids.tolist() if t in collections]
    limit = settings.REFRAIN_TASTE_MAP_POINTS
    if len(cloud_ids) > limit:  # an even sample: the shape of the catalog, not its first rows
        cloud_ids = [cloud_ids[i] for i in np.linspace(0, len(cloud_ids) - 1, limit).astype(int)]
    cloud_titles = dict(catalog_selectors.track_list().filter(pk__in=cloud_ids).values_list("pk", "title"))
    cloud = []
    for t in cloud_ids:
        collection = collections[t] or "(none)"
        x, y = scaled(proj.xy[position[t]])
        cloud.append(Point(t, cloud_titles.get(t, ""), x, y, "catalog", colours[collection], collection))
    drawn = []
    seen: set[tuple[str, int]] = set()
    for kind, items in layers:
        for track_id, label in items:
            xy = xy_of(track_id)
            if xy is None or track_id not in titles or (kind, track_id) in seen:
                continue
            seen.add((kind, track_id))
            x, y = scaled(xy)
            drawn.append(Point(track_id, titles[track_id], x, y, kind, label=label or titles[track_id]))
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "cloud": cloud,
        "points": drawn,
        "legend": [(name, colours[name]) for name in names],
        "model_version": version,
        "counts": {kind: sum(1 for p in drawn if p.kind == kind) for kind, _ in layers},
    }
