"""Recommendation tasks: thin; the work is in recommend.services.

embed_tracks goes to the `gpu` queue (route `recommend.tasks.embed_*`): the model is loaded once per
worker process (generation.runtime). Index removal is housekeeping on `cpu`.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

from config.celery import durable_task_options, worker_queues
from recommend import services


@shared_task(name="recommend.tasks.embed_tracks", **durable_task_options())
def embed_tracks(track_ids: list[int]) -> None:
    # Idempotent: embeddings are upserted per (track, version) and index adds replace.
    services.tracks_embed_for_active(track_ids=track_ids)


@shared_task(name="recommend.tasks.embed_missing", **durable_task_options())
def embed_missing(limit: int = 512, after: int = 0) -> int:
    """Embed a chunk of the tracks the active version has no embedding for; re-enqueue for the next
    chunk while more remain (short tasks: uploads queued behind one are not kept waiting long)."""
    embedded, next_after = services.tracks_embed_missing(limit=limit, after=after)
    if next_after is not None:
        embed_missing.delay(limit, next_after)
    return embedded


@worker_ready.connect
def _embed_missing_on_start(sender=None, **kwargs) -> None:
    """A gpu worker that starts (after a deploy, a crash, a new model version) catches up on embeddings."""
    queues = worker_queues(sender.app) if sender else set()
    if "gpu" in queues:
        try:
            embed_missing.delay()
        except Exception:  # noqa: BLE001 - the worker must start even if the broker blinks
            pass


@shared_task(name="recommend.tasks.index_remove_tracks", **durable_task_options())
def index_remove_tracks(track_ids: list[int]) -> None:
    services.index_remove(track_ids=track_ids)


@shared_task(name="recommend.tasks.feed_top_up", ignore_result=True)
def feed_top_up(user_id: int) -> None:
    from catalog.models import User

    user = User.objects.filter(pk=user_id).first()
    if user is not None:
        services.generated_feed_top_up(user=user)
