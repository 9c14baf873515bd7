"""A task goes through the configured broker to a real worker process and its effect is visible."""

import pytest

from catalog.models import Track
from catalog.tasks import track_refresh_metadata_task as track_refresh_metadata

pytestmark = [pytest.mark.worker]


def test_task_round_trip_through_a_real_worker(celery_worker, track_factory):
    track = track_factory()
    expected = track.note_count
    Track.objects.filter(pk=track.pk).update(note_count=0)

    track_refresh_metadata.delay(track.pk)

    celery_worker.wait_for(
        lambda: Track.objects.get(pk=track.pk).note_count == expected,
        timeout=60,
        what="the worker to refresh the track",
    )
    assert "track_refresh_metadata" in celery_worker.log()
    assert "succeeded" in celery_worker.log()


def test_healthz_reports_the_workers_consuming_the_gpu_queue(start_worker, anon_client):
    from django.core.cache import cache

    cache.clear()
    assert anon_client.get("/healthz").json()["gpu_queue"] == {"consumed": False, "workers": []}
    start_worker("cpuonly", queues="cpu")
    cache.clear()
    assert anon_client.get("/healthz").json()["gpu_queue"]["consumed"] is False
    start_worker("gpu", queues="gpu")
    cache.clear()
    body = anon_client.get("/healthz").json()
    assert body["gpu_queue"]["consumed"] is True
    assert [w.split("@")[0] for w in body["gpu_queue"]["workers"]] == ["gpu1"]
    cache.clear()
