"""What a feed is made of: items with their vector and reason, diversified by MMR, explained."""

from __future__ import annotations

import dataclasses

import numpy as np

from recommend.algorithms import MMR_LAMBDA, mmr_order
from recommend.taste import Taste


@dataclasses.dataclass
class FeedItem:
    track_id: int
    score: float
    reason: str
    source: str  # "recommended" | "generated"
    vector: np.ndarray | None = None
    taste: int = -1  # which taste vector found it


def mmr(items: list[FeedItem], size: int, lam: float = MMR_LAMBDA) -> list[FeedItem]:
    """The items re-ranked by maximal marginal relevance (recommend.algorithms.mmr_order)."""
    if not items:
        return []
    order = mmr_order(np.stack([it.vector for it in items]), np.asarray([it.score for it in items]), size, lam)
    return [items[i] for i in order]


def with_reasons(items: list[FeedItem], tastes: list[Taste], verb: str) -> list[FeedItem]:
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
