"""A task goes through the configured broker to a real worker process and its effect is visible."""

import pytest

from catalog.models import Track
from catalog.tasks import track_refresh_metadata

pytestmark = [pytest.mark.worker]


def test_task_round_trip_through_a_real_worker(celery_worker, track_factory):
    track = track_factory()
    expected = track.note_count
    Track.objects.filter(pk=track.pk).update(note_count=0)

    track_refresh_metadata.delay(track.pk)

    celery_worker.wait_for(lambda: Track.objects.get(pk=track.pk).note_count == expected,
                           timeout=60, what="the worker to refresh the track")
    assert "track_refresh_metadata" in celery_worker.log()
    assert "succeeded" in celery_worker.log()
