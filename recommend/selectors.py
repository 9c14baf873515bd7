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
from django.db.models import F, Q

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
    data = (
        TrackEmbedding.objects.filter(track=track, model_version=model_version).values_list("vector", flat=True).first()
    )
    return None if data is None else vector_from_bytes(data)


def tracks_missing_embedding(*, model_version):
    from catalog.models import Track

    return Track.objects.exclude(embeddings__model_version=model_version).order_by("pk").values_list("pk", flat=True)


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


def serving_version():
    """The model version whose latent space the feeds use.

    The active version once its first full embedding pass has completed; until then the version
    that most recently completed one, so that activating a new model never serves a half-filled
    index (the swap happens on the first request after the pass ends). With no completed version
    at all (a fresh install filling its first index), the active one. One query: every feed and
    similar-tracks request asks.
    """
    from generation.models import ModelVersion

    candidates = list(
        ModelVersion.objects.filter(Q(is_active=True) | Q(index_status__complete=True))
        .annotate(completed_at=F("index_status__completed_at"), complete=F("index_status__complete"))
        .order_by(F("completed_at").desc(nulls_last=True))
    )
    active = next((v for v in candidates if v.is_active), None)
    if active is None or active.complete:
        return active
    return next((v for v in candidates if v.complete), active)


def serving_index():
    """(serving model version, its loaded VectorIndex), or (version or None, None) when there is none."""
    from recommend.index import IndexNotFoundError

    version = serving_version()
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
    # A little extra: tracks deleted since the index was written are dropped below.
    result = index.search(vector[None], k + 5, exclude_ids=[track.pk])
    return version, _tracks_in_order(result.ids[0], result.scores[0])[:k]


# --- taste vectors --------------------------------------------------------------------------------


@dataclasses.dataclass
class Anchor:
    track_id: int
    title: str
    score: int  # the user's rating
    vector: np.ndarray  # unit


@dataclasses.dataclass
class Taste:
    """One direction of a user's taste: a query vector and the rated tracks it came from."""

    vector: np.ndarray
    likes: list[Anchor]  # the liked tracks of this group (empty when only dislikes are known)
    dislikes: list[Anchor]


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


_summary_cache: dict[object, dict] = {}
_summary_lock = threading.Lock()
# A catalog summary (mean, ids, vectors, cold-start groups) is reused across index versions while the
# catalog has changed by at most this share: every upload and every generated track saves a new
# version, and recomputing the summary (export every vector, read every track row, k-means) made the
# first request after each save slow (0.3 s for a feed, 1.4 s for a cold start at 100k tracks).
SUMMARY_REUSE_SHARE = 0.05


def _catalog_summary(index):
    """(mean unit vector, ids, unit vectors, ...) of the catalog in an index, per index directory.

    Tracks added since the summary was taken are absent from it (callers look them up: see
    _catalog_track_ids and _index_vectors); tracks deleted since are filtered when a page is served.
    """
    key = index.source or id(index)
    with _summary_lock:
        cached = _summary_cache.get(key)
    if cached is not None and cached["version"] != index.version:
        if abs(len(index) - cached["n"]) > SUMMARY_REUSE_SHARE * max(cached["n"], 1):
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


def _kmeans(x: np.ndarray, k: int, iterations: int = 20) -> np.ndarray:
    """Spherical k-means on unit rows; deterministic farthest-point start. Returns labels."""
    centres = [x[0]]
    for _ in range(1, k):
        sims = np.max(x @ np.stack(centres).T, axis=1)
        centres.append(x[int(np.argmin(sims))])
    c = np.stack(centres)
    labels = np.zeros(len(x), dtype=int)
    for _ in range(iterations):
        new = np.argmax(x @ c.T, axis=1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        c = _unit(np.stack([x[labels == j].mean(axis=0) if np.any(labels == j) else c[j] for j in range(k)]))
    return labels


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance; -1 when a cluster is a singleton-only split."""
    k = labels.max() + 1
    if k < 2 or min(np.count_nonzero(labels == j) for j in range(k)) < 2:
        return -1.0
    dist = 1.0 - x @ x.T
    values = []
    for i in range(len(x)):
        own = labels == labels[i]
        a = dist[i, own].sum() / max(1, own.sum() - 1)
        b = min(dist[i, labels == j].mean() for j in range(k) if j != labels[i])
        values.append((b - a) / max(a, b, 1e-12))
    return float(np.mean(values))


TASTE_MAX_GROUPS = 3
TASTE_SPLIT_SILHOUETTE = 0.25  # likes split into groups only when the groups are clearly apart
TASTE_MAX_RATINGS = 500


def taste_vectors(*, user, model_version=None, index=None) -> list[Taste]:
    """The user's taste in the active version's latent space, from their ratings.

    Ratings of 4 and 5 pull with weight score-3, ratings of 1 and 2 push with weight 3-score (3 is
    neutral). Vectors are unit embeddings, mean-centred on the catalog mean m:
        taste = m + sum_i w_i (e_i - m) / sum_i |w_i|       (w negative for pushes)
    so with likes only the taste is their weighted mean, and a dislike moves it away from that
    track relative to the catalog as a whole (not away from everything the catalog shares).
    When the likes form clearly separate groups (spherical k-means, k = 2 or 3, chosen by cosine
    silhouette above TASTE_SPLIT_SILHOUETTE), each group gets its own taste vector (its likes plus
    all the pushes). Returns [] when nothing usable is rated: a cold start.
    """
    from catalog.models import Rating

    if model_version is None or index is None:
        model_version, index = serving_index()
    if model_version is None or index is None:
        return []
    ratings = list(
        Rating.objects.filter(user=user)
        .exclude(score=3)
        .order_by("-updated_at")
        .values_list("track_id", "score", "track__title")[:TASTE_MAX_RATINGS]
    )
    if not ratings:
        return []
    ids, vectors = embedding_matrix(model_version=model_version, track_ids=[r[0] for r in ratings])
    if not len(ids):
        return []
    return tastes_from_ratings(
        ratings=ratings, unit_vectors=dict(zip(ids.tolist(), _unit(vectors))), mean=_catalog_summary(index)["mean"]
    )


def tastes_from_ratings(*, ratings, unit_vectors: dict[int, np.ndarray], mean: np.ndarray) -> list[Taste]:
    """The pure core of taste_vectors (no database, no index): ratings are (track id, score, title)
    triples, unit_vectors the unit embeddings by track id, mean the catalog's mean unit vector.
    The offline evaluation (recommend.evaluation) calls this directly, so it measures the feed's rule."""
    by_id = unit_vectors
    likes = [Anchor(t, title, s, by_id[t]) for t, s, title in ratings if s >= 4 and t in by_id]
    dislikes = [Anchor(t, title, s, by_id[t]) for t, s, title in ratings if s <= 2 and t in by_id]
    if not likes and not dislikes:
        return []
    push = sum(((3 - a.score) * (a.vector - mean) for a in dislikes), np.zeros_like(mean))
    push_weight = sum(3 - a.score for a in dislikes)

    def taste(group: list[Anchor]) -> Taste:
        pull = sum(((a.score - 3) * (a.vector - mean) for a in group), np.zeros_like(mean))
        weight = sum(a.score - 3 for a in group) + push_weight
        return Taste(
            vector=(mean + (pull - push) / max(weight, 1e-9)).astype(np.float32), likes=group, dislikes=dislikes
        )

    groups = [likes]
    if len(likes) >= 4:
        x = np.stack([a.vector for a in likes])
        best, best_labels = TASTE_SPLIT_SILHOUETTE, None
        for k in range(2, min(TASTE_MAX_GROUPS, len(likes) // 2) + 1):
            labels = _kmeans(x, k)
            score = _silhouette(x, labels)
            if score > best:
                best, best_labels = score, labels
        if best_labels is not None:
            groups = [[a for a, label in zip(likes, best_labels) if label == j] for j in range(best_labels.max() + 1)]
            groups.sort(key=lambda g: -sum(a.score - 3 for a in g))
    return [taste(g) for g in groups]


# --- feeds ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FeedItem:
    track_id: int
    score: float
    reason: str
    source: str  # "recommended" | "generated"
    vector: np.ndarray | None = None
    taste: int = -1  # which taste vector found it


MMR_LAMBDA = 0.7  # relevance vs novelty; 1.0 = plain nearest neighbours


def mmr(items: list[FeedItem], size: int, lam: float = MMR_LAMBDA) -> list[FeedItem]:
    """Maximal marginal relevance: greedily take the item best at lam*score - (1-lam)*max similarity
    to what is already taken, so the feed does not fill up with near-duplicates of one tune."""
    if not items:
        return []
    vectors = _unit(np.stack([it.vector for it in items]))
    relevance = np.asarray([it.score for it in items], dtype=np.float32)
    taken: list[int] = []
    closest = np.full(len(items), -np.inf, dtype=np.float32)  # max similarity to the taken set
    available = np.ones(len(items), dtype=bool)
    for _ in range(min(size, len(items))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        gain = np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)
        pick = int(np.argmax(gain))
        taken.append(pick)
        available[pick] = False
        closest = np.maximum(closest, vectors @ vectors[pick])
    return [items[i] for i in taken]


def _with_reasons(items: list[FeedItem], tastes: list[Taste], verb: str) -> list[FeedItem]:
    """Name, for each chosen item, the liked track of its taste group that it lies nearest to (or,
    with dislikes only, the disliked track it lies farthest from). Done after MMR: only for the
    items that are shown."""
    for t, taste in enumerate(tastes):
        mine = [it for it in items if it.taste == t]
        if not mine:
            continue
        anchors = taste.likes or taste.dislikes
        sims = np.stack([it.vector for it in mine]) @ np.stack([a.vector for a in anchors]).T
        picks = np.argmax(sims, axis=1) if taste.likes else np.argmin(sims, axis=1)
        for item, pick in zip(mine, picks):
            anchor = anchors[int(pick)]
            item.reason = (
                f"{verb} {anchor.title}, which you rated {anchor.score}"
                if taste.likes
                else f"unlike {anchor.title}, which you rated {anchor.score}"
            )
    return items


def _live_track_ids(ids, *, generated: bool) -> set[int]:
    from catalog.models import Track

    return set(Track.objects.filter(pk__in=[int(i) for i in ids], is_generated=generated).values_list("pk", flat=True))


def _catalog_track_ids(index, candidates) -> set[int]:
    """The candidates that are catalog (not generated) tracks.

    The summary holds the answer for every track it knows, read with one query (no IN list) when it
    was taken; tracks added since are looked up by id. Tracks deleted since are filtered out of the
    finished feed (feed_recommended), so this only has to tell catalog from generated.
    """
    from catalog.models import Track

    summary = _catalog_summary(index)
    known = summary.get("catalog_ids")
    if known is None:
        known = summary["catalog_ids"] = set(Track.objects.filter(is_generated=False).values_list("pk", flat=True))
        summary["known_ids"] = set(summary["ids"].tolist()) | known
    new = [i for i in candidates if i not in summary["known_ids"]]
    added = set(Track.objects.filter(pk__in=new, is_generated=False).values_list("pk", flat=True)) if new else set()
    return {i for i in candidates if i in known or i in added}


def _rated_ids(user) -> set[int]:
    from catalog.models import Rating

    return set(Rating.objects.filter(user=user).values_list("track_id", flat=True))


def feed_recommended(*, user, size: int | None = None) -> list[FeedItem]:
    """Catalog tracks near the user's taste vectors, unrated, re-ranked for diversity (MMR)."""
    size = size or settings.REFRAIN_FEED_SIZE
    version, index = serving_index()
    if index is None:
        return _feed_popular(user=user, size=size)
    tastes = taste_vectors(user=user, model_version=version, index=index)
    if not tastes:
        return feed_cold_start(user=user, size=size, index=index)
    rated = _rated_ids(user)
    fetch = size + 100  # room for MMR to trade a little relevance for variety
    result = index.search(np.stack([t.vector for t in tastes]), fetch, exclude_ids=rated)
    best: dict[int, tuple[float, int]] = {}  # track id -> (score, taste)
    for t, (row_ids, row_scores) in enumerate(zip(result.ids, result.scores)):
        for track_id, score in zip(row_ids.tolist(), row_scores.tolist()):
            if track_id >= 0 and (track_id not in best or score > best[track_id][0]):
                best[track_id] = (score, t)
    catalog = _catalog_track_ids(index, list(best))
    vectors = _index_vectors(index, [i for i in best if i in catalog], model_version=version)
    items = []
    for track_id, vector in vectors.items():
        score, t = best[track_id]
        items.append(FeedItem(track_id, score, "", "recommended", vector, taste=t))
    items.sort(key=lambda it: -it.score)
    chosen = mmr(items, size)
    live = _live_track_ids([it.track_id for it in chosen], generated=False)  # deleted since the index was saved
    return _with_reasons([it for it in chosen if it.track_id in live], tastes, "near")


def _index_vectors(index, track_ids: list[int], *, model_version) -> dict[int, np.ndarray]:
    """Unit vectors of these tracks: from the catalog summary, or from the database for tracks
    indexed since the summary was taken."""
    summary = _catalog_summary(index)
    position = summary.get("position")
    if position is None:
        position = summary["position"] = {int(t): i for i, t in enumerate(summary["ids"].tolist())}
    found = {t: summary["vectors"][position[t]] for t in track_ids if t in position}
    missing = [t for t in track_ids if t not in found]
    if missing:
        ids, vectors = embedding_matrix(model_version=model_version, track_ids=missing)
        found.update(zip(ids.tolist(), _unit(vectors)))
    return found


def _cold_start_groups(index) -> list[list[FeedItem]]:
    """The catalog's k-means groups (up to 16), each ordered from its most typical tune outwards.

    Computed with the catalog summary (once per process while the catalog changes by less than
    SUMMARY_REUSE_SHARE): the catalog tracks are read with one query (no IN list, so it scales), a
    track deleted since is dropped when the page is served, and one added since joins at the next
    recomputation.
    """
    from catalog.models import Track

    summary = _catalog_summary(index)
    groups = summary.get("cold_start")
    if groups is not None:
        return groups
    collections = dict(Track.objects.filter(is_generated=False).values_list("pk", "collection"))
    keep = np.asarray([int(t) in collections for t in summary["ids"].tolist()], dtype=bool)
    ids, vectors = summary["ids"][keep], summary["vectors"][keep]
    groups = []
    if len(ids):
        k = int(max(1, min(16, len(ids) // 4)))
        labels = _kmeans(vectors, k) if k > 1 else np.zeros(len(ids), dtype=int)
        for j in range(labels.max() + 1):
            members = np.flatnonzero(labels == j)
            if not members.size:
                continue
            centre = _unit(vectors[members].mean(axis=0))
            sims = vectors[members] @ centre
            order = np.argsort(-sims)
            names = [collections.get(int(ids[m]), "") for m in members]
            common = max(set(names), key=names.count) if any(names) else ""
            reason = f"to start with: typical of {members.size} similar tunes" + (
                f", mostly {common}" if common else ""
            )
            groups.append(
                [
                    FeedItem(int(ids[members[i]]), float(sims[i]), reason, "recommended", vectors[members[i]])
                    for i in order
                ]
            )
        groups.sort(key=len, reverse=True)
    summary["cold_start"] = groups
    return groups


def feed_cold_start(*, user, size: int, index=None) -> list[FeedItem]:
    """No usable ratings yet: a diverse sample of the catalog, the tunes most typical of each of up to
    16 groups (k-means centres of the catalog's embeddings), taken round-robin from the groups."""
    if index is None:
        _, index = serving_index()
        if index is None:
            return _feed_popular(user=user, size=size)
    rated = _rated_ids(user)
    queues = [[item for item in group if item.track_id not in rated] for group in _cold_start_groups(index)]
    feed: list[FeedItem] = []
    depth = 0
    while len(feed) < size and any(depth < len(q) for q in queues):
        feed.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return feed[:size]


def _feed_popular(*, user, size: int) -> list[FeedItem]:
    """Without any index (no active model or nothing embedded yet): the best-rated catalog tracks."""
    from django.db.models import F

    from catalog.selectors import track_list

    rows = (
        track_list()
        .filter(is_generated=False)
        .exclude(pk__in=_rated_ids(user))
        .order_by(F("rating_average").desc(nulls_last=True), "-rating_count", "-id")
        .values_list("pk", "rating_average")[:size]
    )
    return [FeedItem(pk, float(avg or 0.0), "popular in the catalog", "recommended") for pk, avg in rows]


GENERATED_POOL = 5000  # newest generated tracks considered for a generated feed
GENERATED_NEAR = 0.5  # cosine to a taste vector above which a generated track counts as "near"


def feed_generated(*, user, size: int | None = None) -> list[FeedItem]:
    """Generated tracks the user has not rated, ranked by their taste vectors (MMR-diversified).

    Reads stored vectors: the track's embedding for the active version, else the z it was decoded
    from when it was made by that version. Without taste: the newest ones.
    """
    from generation.models import GeneratedTrack

    size = size or settings.REFRAIN_FEED_SIZE
    version, index = serving_index()
    rated = _rated_ids(user)
    if version is None:
        return []
    pool = list(
        GeneratedTrack.objects.filter(track__is_generated=True)
        .exclude(track_id__in=rated)
        .order_by("-track_id")
        .values_list("track_id", "model_version_id", "latent")[:GENERATED_POOL]
    )
    ids = [row[0] for row in pool]
    emb_ids, emb_vectors = embedding_matrix(model_version=version, track_ids=ids)
    vectors = dict(zip(emb_ids.tolist(), emb_vectors))
    for track_id, version_id, latent in pool:
        if track_id not in vectors and version_id == version.pk and latent:
            vectors[track_id] = np.asarray(latent, dtype=np.float32)
    ordered = [t for t in ids if t in vectors]
    if not ordered:
        return []
    matrix = _unit(np.stack([vectors[t] for t in ordered]))
    tastes = taste_vectors(user=user, model_version=version, index=index) if index is not None else []
    if not tastes:
        return [FeedItem(t, 0.0, "new from the model", "generated", matrix[i]) for i, t in enumerate(ordered[:size])]
    queries = _unit(np.stack([t.vector for t in tastes]))
    sims = matrix @ queries.T  # [n, tastes]
    best_taste = np.argmax(sims, axis=1)
    items = [
        FeedItem(t, float(sims[i, best_taste[i]]), "", "generated", matrix[i], taste=int(best_taste[i]))
        for i, t in enumerate(ordered)
    ]
    items.sort(key=lambda it: -it.score)
    return _with_reasons(mmr(items[: 4 * size], size), tastes, "composed near")


def feed_mixed(*, user, size: int | None = None) -> list[FeedItem]:
    """Two recommended catalog tracks, then one generated, and so on; either list fills in when
    the other runs out."""
    size = size or settings.REFRAIN_FEED_SIZE
    recommended, generated = feed_recommended(user=user, size=size), feed_generated(user=user, size=size)
    out: list[FeedItem] = []
    r = g = 0
    while len(out) < size and (r < len(recommended) or g < len(generated)):
        take_generated = (len(out) % 3 == 2 and g < len(generated)) or r >= len(recommended)
        if take_generated:
            out.append(generated[g])
            g += 1
        else:
            out.append(recommended[r])
            r += 1
    return out


def feed(*, user, kind: str = "recommended") -> list[FeedItem]:
    return {"recommended": feed_recommended, "generated": feed_generated, "mixed": feed_mixed}[kind](user=user)


def generated_near_count(*, user) -> int:
    """Unrated generated tracks within GENERATED_NEAR of the user's taste."""
    return sum(1 for item in feed_generated(user=user) if item.score >= GENERATED_NEAR)
