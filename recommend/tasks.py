"""Recommendation tasks: thin; the work is in recommend.services.

Embedding goes to the `gpu-bulk` queue (route `recommend.tasks.embed_*`), which gpu workers consume
after `gpu`: a listener's generation job never waits behind a catalog's worth of embeddings. The
model is loaded once per worker process (generation.runtime). Index removal is housekeeping on `cpu`.
Each task imports its service inside its body and services import the tasks at module level
(HackSoft's rule: that way round there is no import cycle).
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready

from catalog.models import User
from config.celery import durable_task_options, enqueue, worker_queues


@shared_task(name="recommend.tasks.embed_tracks", **durable_task_options())
def embed_tracks_task(track_ids: list[int]) -> None:
    # Idempotent: embeddings are upserted per (track, version) and index adds replace.
    from recommend.services import tracks_embed_for_active

    tracks_embed_for_active(track_ids=track_ids)


@shared_task(name="recommend.tasks.embed_missing", **durable_task_options())
def embed_missing_task(limit: int = 32, after: int = 0) -> int:
    """Embed a chunk of the tracks the active version has no embedding for; re-enqueue for the next
    chunk while more remain (short tasks, so a gpu worker goes back to its `gpu` queue often)."""
    from recommend.services import tracks_embed_missing

    embedded, next_after = tracks_embed_missing(limit=limit, after=after)
    if next_after is not None:
        embed_missing_task.delay(limit, next_after)
    return embedded


@worker_ready.connect
def _embed_missing_on_start(sender=None, **kwargs) -> None:
    """A gpu worker that starts (after a deploy, a crash, a new model version) catches up on embeddings."""
    queues = worker_queues(sender.app) if sender else set()
    if "gpu-bulk" in queues:
        enqueue(embed_missing_task, recovery="the next worker start tries again.")  # never stops the start


@shared_task(name="recommend.tasks.index_remove_tracks", **durable_task_options())
def index_remove_tracks_task(track_ids: list[int]) -> None:
    from recommend.services import index_remove

    index_remove(track_ids=track_ids)


@shared_task(name="recommend.tasks.index_sync", **durable_task_options())
def index_sync_task(model_version_id: int) -> None:
    """Bring the worker's folder of an index up to the change log (a rebuild when it is unreadable)."""
    from generation.models import ModelVersion
    from recommend.services import index_sync

    version = ModelVersion.objects.filter(pk=model_version_id).first()
    if version is not None:
        index_sync(model_version=version)


@shared_task(name="recommend.tasks.feed_top_up", ignore_result=True)
def feed_top_up_task(user_id: int) -> None:
    from recommend.services import generated_feed_top_up

    user = User.objects.filter(pk=user_id).first()
    if user is not None:
        generated_feed_top_up(user=user)


@shared_task(name="recommend.tasks.refit_collaborative", **durable_task_options())
def refit_collaborative_task() -> int:
    """Beat: refit ALS and popularity on every rating (new ratings reach the feed before this, by
    fold-in at request time; the refit brings them into everyone else's)."""
    from recommend.model_services import collaborative_refit

    return collaborative_refit().pk


@shared_task(name="recommend.tasks.train_ranker", **durable_task_options())
def train_ranker_task() -> int | None:
    """Beat: learn the feed's blend again from the ratings log (time-ordered split)."""
    from recommend.model_services import ranker_train

    trained = ranker_train()
    return trained[0].pk if trained else None
