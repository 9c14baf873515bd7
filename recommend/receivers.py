"""How recommend follows the lower apps: receivers of their domain events. Each only enqueues a task.

Connected in RecommendConfig.ready(); delivered after the producer's transaction commits. A broker
outage is logged, not raised (the producer's write is already committed): embeddings are caught up
by `embed_missing` (every gpu worker start, `manage.py embed_catalog`), and a deleted track that
stays in an index is filtered out of every answer anyway.
"""

from __future__ import annotations

import logging

from config.celery import enqueue
from generation.selectors import model_version_active
from recommend.tasks import embed_missing_task, embed_tracks_task, index_remove_tracks_task

logger = logging.getLogger(__name__)


def embed_created_tracks(*, track_ids: list[int]) -> None:
    """catalog.tracks_created: embed them with the active version (nothing while none is active)."""
    if not track_ids or model_version_active() is None:
        return
    enqueue(embed_tracks_task, list(track_ids), recovery="embed_missing catches up at the next gpu worker start.")


def unindex_deleted_tracks(*, track_ids: list[int]) -> None:
    """catalog.tracks_deleted: drop them from every index (queue cpu)."""
    enqueue(index_remove_tracks_task, list(track_ids), recovery="answers filter deleted tracks out meanwhile.")


def reembed_for_activated_version(*, model_version_id: int) -> None:
    """generation.model_version_activated: embed the catalog in the new latent space (the feeds keep
    serving the previous version until the pass completes)."""
    enqueue(embed_missing_task, recovery=f"gpu workers re-embed for version {model_version_id} when they start.")
