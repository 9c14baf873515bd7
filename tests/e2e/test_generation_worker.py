"""Generation through the API and a real Celery worker on the configured broker."""

import contextlib
import io
import sqlite3

import pretty_midi
import pytest
from django.db import connection

from catalog.models import Track
from generation.models import GeneratedTrack, GenerationJob

pytestmark = [pytest.mark.worker]


def job_status(job_id: int) -> str:
    return GenerationJob.objects.get(pk=job_id).status


def test_every_kind_end_to_end(start_worker, user_client, model_version, track_factory):
    a, b = track_factory(), track_factory()
    worker = start_worker()
    bodies = [
        {"kind": "sample", "count": 2, "temperature": 0.8},
        {"kind": "similar", "track_id": a.pk, "count": 2},
        {"kind": "interpolate", "track_ids": [a.pk, b.pk], "count": 2},
        {"kind": "steer", "track_id": b.pk, "attribute": "register", "amount": 1.5, "count": 2},
    ]
    ids = []
    for body in bodies:
        response = user_client.post("/api/v1/generations/", body, format="json")
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    for job_id in ids:
        worker.wait_for(lambda j=job_id: job_status(j) in ("done", "failed"), timeout=120, what=f"job {job_id}")
    for job_id in ids:
        job = user_client.get(f"/api/v1/generations/{job_id}/").json()
        assert job["status"] == "done", job
        assert job["tracks"], job
        for track in job["tracks"]:
            assert track["is_generated"]
            midi = b"".join(user_client.get(track["midi_url"]).streaming_content)
            pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
            assert sum(len(i.notes) for i in pm.instruments) == track["note_count"] > 0
    # generated tracks are catalog tracks: listable and ratable
    listed = user_client.get("/api/v1/tracks/?is_generated=true").json()
    assert listed["count"] == GeneratedTrack.objects.count() >= 4
    first = listed["results"][0]["id"]
    assert user_client.put(f"/api/v1/tracks/{first}/rating/", {"score": 4}, format="json").status_code == 201
    assert "loaded model version" in worker.log()
    assert worker.log().count("loaded model version") == 1  # once per process, not per task


@contextlib.contextmanager
def database_write_lock():
    """Hold the job table so a worker blocks inside its task (a crash at a known point)."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        raw = sqlite3.connect(settings_dict["NAME"], timeout=30, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
    else:
        import psycopg

        raw = psycopg.connect(
            host=settings_dict["HOST"] or None,
            port=settings_dict["PORT"] or None,
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"] or None,
            dbname=settings_dict["NAME"],
        )
        try:
            raw.execute("LOCK TABLE generation_generationjob IN ACCESS EXCLUSIVE MODE")
            yield
        finally:
            raw.rollback()
            raw.close()


def test_killed_worker_job_completes_exactly_once(start_worker, user_client, model_version):
    # Worker A gathers a burst for a moment before claiming, which gives the test time to block it.
    worker_a = start_worker("a", GENERATION_BATCH_WAIT_MS=1500)
    response = user_client.post("/api/v1/generations/", {"kind": "sample", "count": 3}, format="json")
    job_id = response.json()["id"]
    with database_write_lock():
        worker_a.wait_for(
            lambda: "run_generation" in worker_a.log() and "received" in worker_a.log(),
            timeout=60,
            what="worker A to take the job",
        )
        worker_a.kill9()  # kill -9 while the task is executing
    assert job_status(job_id) == "pending" and not Track.objects.exists()

    # Worker B starts, finds the job the dead worker left (its message was never acknowledged),
    # and runs it; the job's own message, when redelivered, then finds nothing to do.
    worker_b = start_worker("b", GENERATION_PENDING_STALE_SECONDS=0)
    worker_b.wait_for(lambda: job_status(job_id) == "done", timeout=120, what="the job to complete on worker B")
    job = GenerationJob.objects.get(pk=job_id)
    assert job.attempts == 1
    assert job.tracks.count() == GeneratedTrack.objects.filter(job=job).count() == Track.objects.count() >= 1
    from generation import job_runner

    job_runner.generation_jobs_run(job_id=job_id)  # a late redelivery
    assert Track.objects.count() == job.tracks.count()


def test_every_kind_of_the_long_form_model_end_to_end(start_worker, user_client, longform_version, track_factory):
    """Whole tunes: sample in a chosen length and meter, continue and infill a track, and the three
    kinds rebuilt on chunk latents, each through the API and a real worker."""
    a, b = track_factory(), track_factory()
    worker = start_worker()
    bodies = [
        {"kind": "sample", "count": 2, "bars": 8, "meter": "3/4"},
        {"kind": "continue", "track_id": a.pk, "prompt_bars": 2, "bars": 8},
        {"kind": "infill", "track_id": b.pk, "from_bar": 1, "to_bar": 2},
        {"kind": "similar", "track_id": a.pk, "count": 2},
        {"kind": "interpolate", "track_ids": [a.pk, b.pk], "count": 2},
        {"kind": "steer", "track_id": b.pk, "attribute": "register", "amount": 1.5, "count": 2},
    ]
    ids = []
    for body in bodies:
        response = user_client.post("/api/v1/generations/", body, format="json")
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    for job_id in ids:
        worker.wait_for(lambda j=job_id: job_status(j) in ("done", "failed"), timeout=180, what=f"job {job_id}")
    for job_id in ids:
        job = user_client.get(f"/api/v1/generations/{job_id}/").json()
        assert job["status"] == "done", job
        assert job["tracks"], job
    sample = Track.objects.get(pk=user_client.get(f"/api/v1/generations/{ids[0]}/").json()["tracks"][0]["id"])
    pm = pretty_midi.PrettyMIDI(io.BytesIO(sample.midi_file.read()))
    ts = pm.time_signature_changes[0]
    assert (ts.numerator, ts.denominator) == (3, 4) and sample.time_signature == "3/4"
