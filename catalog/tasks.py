"""Catalog tasks (queue `cpu`): thin wrappers that load by id and call a service.

Each task imports its service inside its body and services import the tasks at module level
(HackSoft's rule: that way round there is no import cycle).
"""

from __future__ import annotations

from celery import shared_task

from catalog.models import Track
from config.celery import durable_task_options


@shared_task(name="catalog.tasks.track_refresh_metadata", acks_late=True, ignore_result=True)
def track_refresh_metadata_task(track_id: int) -> None:
    """Re-read a track's stored MIDI and correct its metadata (after a limits or parser change)."""
    from catalog.services import track_refresh_metadata

    track = Track.objects.filter(pk=track_id).first()
    if track is None:
        return  # deleted meanwhile: nothing to do
    track_refresh_metadata(track=track)


@shared_task(name="catalog.tasks.track_render_audio", **durable_task_options())
def track_render_audio_task(track_id: int, force: bool = False) -> None:
    """Render a track's audio and piano rolls (queue cpu, the default); skipped when already current."""
    from catalog.services import track_media_render

    track = Track.objects.filter(pk=track_id).first()
    if track is None:
        return  # deleted meanwhile: nothing to do
    track_media_render(track=track, force=force)


@shared_task(name="catalog.tasks.tracks_render_audio", **durable_task_options())
def tracks_render_audio_task(track_ids: list[int]) -> None:
    """Render the audio of a batch of new tracks (one message for a generation job's melodies)."""
    from catalog.services import tracks_media_render

    tracks_media_render(track_ids=track_ids)


@shared_task(name="catalog.tasks.prune_orphan_files", ignore_result=True)
def prune_orphan_files_task() -> int:
    """Daily under beat: files left behind by a process killed between file and row."""
    from catalog.services import media_prune_orphans

    return len(media_prune_orphans())


@shared_task(name="catalog.tasks.recover_pending_renders", ignore_result=True)
def recover_pending_renders_task() -> int:
    """Every few minutes under beat: renders whose message was lost are queued again."""
    from catalog.services import media_renders_recover

    return media_renders_recover()
