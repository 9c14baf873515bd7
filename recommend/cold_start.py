"""For listeners with no ratings yet: the catalog's typical tunes by group (the exploration slots of
recommend.ranking), and the best-rated tracks while there is no index at all."""

from __future__ import annotations

import numpy as np

from catalog.selectors import catalog_track_collections, rated_track_ids, track_list_best_rated
from recommend.algorithms import spherical_kmeans, unit
from recommend.feed_items import FeedItem
from recommend.index_readers import catalog_summary

COLD_START_MAX_GROUPS = 16


def cold_start_groups(index) -> list[list[FeedItem]]:
    """The catalog's k-means groups (up to 16), each ordered from its most typical tune outwards.

    Computed with the catalog summary (once per process while the catalog changes by less than
    SUMMARY_REUSE_SHARE): the catalog tracks are read with one query (no IN list, so it scales), a
    track deleted since is dropped when the page is served, and one added since joins at the next
    recomputation.
    """
    summary = catalog_summary(index)
    groups = summary.get("cold_start")
    if groups is not None:
        return groups
    collections = catalog_track_collections()
    keep = np.asarray([int(t) in collections for t in summary["ids"].tolist()], dtype=bool)
    groups = catalog_groups(summary["ids"][keep], summary["vectors"][keep], collections)
    summary["cold_start"] = groups
    return groups


def catalog_groups(ids: np.ndarray, vectors: np.ndarray, collections: dict[int, str]) -> list[list[FeedItem]]:
    """The pure core of cold_start_groups, which the evaluation calls too: spherical k-means groups
    of these unit vectors, each ordered from its most typical tune outwards, largest group first."""
    groups: list[list[FeedItem]] = []
    if len(ids):
        k = int(max(1, min(COLD_START_MAX_GROUPS, len(ids) // 4)))
        labels = spherical_kmeans(vectors, k)
        for j in range(labels.max() + 1):
            members = np.flatnonzero(labels == j)
            if not members.size:
                continue
            centre = unit(vectors[members].mean(axis=0))
            sims = vectors[members] @ centre
            order = np.argsort(-sims, kind="stable")
            names = [collections.get(int(ids[m]), "") for m in members]
            common = max(sorted(set(names)), key=names.count) if any(names) else ""
            reason = f"to start with: typical of {members.size} similar tunes" + (
                f", mostly {common}" if common else ""
            )
            groups.append(
                [
                    FeedItem(int(ids[members[i]]), float(sims[i]), reason, "recommended", vectors[members[i]])
                    for i in order
                ]
            )
        groups.sort(key=lambda g: (-len(g), g[0].track_id))
    return groups


def feed_popular(*, user, size: int) -> list[FeedItem]:
    """Without any index (no active model or nothing embedded yet): the best-rated catalog tracks."""
    rows = track_list_best_rated(exclude_ids=rated_track_ids(user=user), limit=size)
    return [FeedItem(pk, float(avg or 0.0), "popular in the catalog", "recommended") for pk, avg in rows]
