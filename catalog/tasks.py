"""Catalog tasks (queue `cpu`): thin wrappers that load by id and call a service."""

from __future__ import annotations

from celery import shared_task

from catalog import services
from catalog.models import Track


@shared_task(acks_late=True, ignore_result=True)
def track_refresh_metadata(track_id: int) -> None:
    """Re-read a track's stored MIDI and correct its metadata (after a limits or parser change)."""
    track = Track.objects.filter(pk=track_id).first()
    if track is None:
        return  # deleted meanwhile: nothing to do
    services.track_refresh_metadata(track=track)


@shared_task(acks_late=True, ignore_result=True)
def track_render_audio(track_id: int, force: bool = False) -> None:
    """Render a track's audio and piano rolls (queue cpu, the default); skipped when already current."""
    track = Track.objects.filter(pk=track_id).first()
    if track is None:
        return  # deleted meanwhile: nothing to do
    services.track_media_render(track=track, force=force)


@shared_task(ignore_result=True)
def prune_orphan_files() -> int:
    """Daily under beat: files left behind by a process killed between file and row."""
    return len(services.media_prune_orphans())
