"""The feeds: catalog tracks near a listener's taste (recommended), tracks composed for it
(generated), and the two interleaved (mixed). Answered from stored embeddings and the index only:
no model inference in a request."""

from __future__ import annotations

import numpy as np
from django.conf import settings

from catalog.selectors import catalog_track_collections, rated_track_ids, rating_history, track_ids_existing
from generation.selectors import generated_track_pool
from recommend.algorithms import unit
from recommend.cold_start import cold_start_groups, feed_popular
from recommend.feed_items import FeedItem, mmr, with_reasons
from recommend.index_readers import catalog_summary, serving_index
from recommend.model_readers import serving_ranker, serving_signals
from recommend.ranking import CatalogView, rank_feed, reference_sample
from recommend.selectors import embedding_matrix
from recommend.taste import TASTE_MAX_RATINGS, taste_vectors


def catalog_track_ids(index, candidates) -> set[int]:
    """The candidates that are catalog (not generated) tracks.

    The summary holds the answer for every track it knows, read with one query (no IN list) when it
    was taken; tracks added since are looked up by id. Tracks deleted since are filtered out of the
    finished feed (feed_recommended), so this only has to tell catalog from generated.
    """
    summary = catalog_summary(index)
    known = summary.get("catalog_ids")
    if known is None:
        known = summary["catalog_ids"] = set(catalog_track_collections())
        summary["known_ids"] = set(summary["ids"].tolist()) | known
    new = [i for i in candidates if i not in summary["known_ids"]]
    added = track_ids_existing(track_ids=new, generated=False) if new else set()
    return {i for i in candidates if i in known or i in added}


def index_vectors(index, track_ids: list[int], *, model_version) -> dict[int, np.ndarray]:
    """Unit vectors of these tracks: from the catalog summary, or from the database for tracks
    indexed since the summary was taken."""
    summary = catalog_summary(index)
    position = summary.get("position")
    if position is None:
        position = summary["position"] = {int(t): i for i, t in enumerate(summary["ids"].tolist())}
    found = {t: summary["vectors"][position[t]] for t in track_ids if t in position}
    missing = [t for t in track_ids if t not in found]
    if missing:
        ids, vectors = embedding_matrix(model_version=model_version, track_ids=missing)
        found.update(zip(ids.tolist(), unit(vectors)))
    return found


def serving_catalog(version=None, index=None) -> CatalogView | None:
    """The serving index as recommend.ranking sees it (None while there is no index)."""
    if index is None:
        version, index = serving_index()
    if index is None:
        return None
    summary = catalog_summary(index)

    def search(queries, k, exclude):
        result = index.search(queries, k, exclude_ids=exclude)
        return result.ids, result.scores

    return CatalogView(
        mean=summary["mean"],
        search=search,
        vectors_of=lambda ids: index_vectors(index, list(ids), model_version=version),
        servable=lambda ids: catalog_track_ids(index, list(ids)),
        explore=lambda: cold_start_groups(index),
        reference=catalog_reference(index),
    )


def catalog_reference(index) -> np.ndarray:
    """The catalog sample listeners' content scores are standardised against (once per summary)."""
    summary = catalog_summary(index)
    reference = summary.get("reference")
    if reference is None:
        reference = summary["reference"] = summary["vectors"][reference_sample(len(summary["ids"]))]
    return reference


def feed_recommended(*, user, size: int | None = None) -> list[FeedItem]:
    """The listener's ratings through recommend.ranking.rank_feed (the function the evaluation
    scores): candidates from the index, the collaborative model and popularity, blended by the
    learned ranker, MMR-diversified, each with a reason. Without an index: the best-rated tracks."""
    size = size or settings.REFRAIN_FEED_SIZE
    version, index = serving_index()
    if index is None:
        return feed_popular(user=user, size=size)
    ratings = rating_history(user=user, limit=TASTE_MAX_RATINGS)
    chosen = rank_feed(
        ratings=ratings,
        catalog=serving_catalog(version, index),
        signals=serving_signals(),
        ranker=serving_ranker(),
        size=size,
        exclude=rated_track_ids(user=user) if len(ratings) >= TASTE_MAX_RATINGS else (),
    )
    live = track_ids_existing(track_ids=[it.track_id for it in chosen], generated=False)  # deleted since
    return [it for it in chosen if it.track_id in live]


GENERATED_POOL = 5000  # newest generated tracks considered for a generated feed
GENERATED_NEAR = 0.5  # cosine to a taste vector above which a generated track counts as "near"


def feed_generated(*, user, size: int | None = None) -> list[FeedItem]:
    """Generated tracks the user has not rated, ranked by their taste vectors (MMR-diversified).

    Reads stored vectors: the track's embedding for the serving version, else the z it was decoded
    from when it was made by that version. Without taste: the newest ones.
    """
    size = size or settings.REFRAIN_FEED_SIZE
    version, index = serving_index()
    if version is None:
        return []
    pool = generated_track_pool(exclude_track_ids=rated_track_ids(user=user), limit=GENERATED_POOL)
    ids = [row[0] for row in pool]
    emb_ids, emb_vectors = embedding_matrix(model_version=version, track_ids=ids)
    vectors = dict(zip(emb_ids.tolist(), emb_vectors))
    for track_id, version_id, latent in pool:
        if track_id not in vectors and version_id == version.pk and latent:
            vectors[track_id] = np.asarray(latent, dtype=np.float32)
    ordered = [t for t in ids if t in vectors]
    if not ordered:
        return []
    matrix = unit(np.stack([vectors[t] for t in ordered]))
    tastes = taste_vectors(user=user, model_version=version, index=index) if index is not None else []
    if not tastes:
        return [FeedItem(t, 0.0, "new from the model", "generated", matrix[i]) for i, t in enumerate(ordered[:size])]
    queries = unit(np.stack([t.vector for t in tastes]))
    sims = matrix @ queries.T  # [n, tastes]
    best_taste = np.argmax(sims, axis=1)
    items = [
        FeedItem(t, float(sims[i, best_taste[i]]), "", "generated", matrix[i], taste=int(best_taste[i]))
        for i, t in enumerate(ordered)
    ]
    items.sort(key=lambda it: (-it.score, it.track_id))
    return with_reasons(mmr(items[: 4 * size], size), tastes, "composed near")


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


FEEDS = {"recommended": feed_recommended, "generated": feed_generated, "mixed": feed_mixed}


def feed(*, user, kind: str = "recommended") -> list[FeedItem]:
    return FEEDS[kind](user=user)


def generated_near_count(*, user) -> int:
    """Unrated generated tracks within GENERATED_NEAR of the user's taste."""
    return sum(1 for item in feed_generated(user=user) if item.score >= GENERATED_NEAR)
