"""Generation jobs: validation, in-process runs, micro-batching, idempotency, permissions."""

import io

import numpy as np
import pretty_midi
import pytest
import torch

from catalog.models import Track
from config.errors import ApplicationError
from generation import job_runner, runtime, services
from generation.models import GeneratedTrack, GenerationJob
from generation.vae.representation import canonicalize, midi_to_tokens

pytestmark = pytest.mark.django_db


def create(user, kind="sample", **params):
    return services.generation_job_create(owner=user, kind=kind, params=params)


@pytest.fixture
def no_broker(monkeypatch):
    """Jobs are run in-process here: do not send wake-up messages to a broker."""
    sent = []
    monkeypatch.setattr(services, "generation_job_wake", lambda job_id, countdown=None: sent.append(job_id))
    return sent


@pytest.mark.parametrize(
    "kind, params, field",
    [
        ("sample", {"count": 0}, "count"),
        ("sample", {"count": 999}, "count"),
        ("sample", {"temperature": 3.5}, "temperature"),
        ("sample", {"track_id": 1}, "track_ids"),
        ("similar", {}, "track_ids"),
        ("similar", {"track_id": 987654}, "track_ids"),
        ("interpolate", {"track_ids": [1]}, "track_ids"),
        ("steer", {"track_id": "T", "attribute": "loudness"}, "attribute"),
        ("dance", {}, "kind"),
    ],
)
def test_bad_parameters_are_refused_and_store_nothing(
    user, model_version, track_factory, no_broker, kind, params, field
):
    track = track_factory()
    if params.get("track_id") == "T":
        params["track_id"] = track.pk
    with pytest.raises(ApplicationError) as excinfo:
        create(user, kind, **params)
    assert field in excinfo.value.fields
    assert not GenerationJob.objects.exists() and no_broker == []


def test_a_job_runs_and_its_tracks_are_real_catalog_tracks(
    user, model_version, no_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = create(user, "sample", count=3, temperature=0.0, seed=11)
    assert no_broker == [job.pk] and job.status == "pending" and job.model_version == model_version
    job_runner.generation_jobs_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert job.progress == 100 and job.attempts == 1 and job.timings["decode_ms"] > 0
    tracks = list(job.tracks.all())
    assert 1 <= len(tracks) <= 3 and all(t.is_generated and t.created_by == user for t in tracks)
    vae = runtime.vae_for(model_version)
    for track in tracks:
        origin = GeneratedTrack.objects.get(track=track)
        assert origin.job == job and origin.model_version == model_version
        midi = track.midi_file.read()
        pm = pretty_midi.PrettyMIDI(io.BytesIO(midi))
        assert sum(len(i.notes) for i in pm.instruments) == track.note_count > 0
        # argmax decoding of the stored latent gives exactly the notes in the stored file
        expected = canonicalize(vae.decode(torch.tensor([origin.latent]), temperature=0)[0])
        got = midi_to_tokens(midi, length=len(expected))
        np.testing.assert_array_equal(got, expected)


def test_each_kind_uses_its_parents(user, model_version, track_factory, no_broker):
    a, b = track_factory(), track_factory()
    jobs = [
        create(user, "similar", track_id=a.pk, count=2, spread=0.2),
        create(user, "interpolate", track_ids=[a.pk, b.pk], count=3),
        create(user, "steer", track_id=b.pk, attribute="note_density", amount=2.0, count=2),
    ]
    for job in jobs:
        job_runner.generation_jobs_run(job_id=job.pk)
    for job, parents in zip(jobs, [{a.pk}, {a.pk, b.pk}, {b.pk}]):
        job.refresh_from_db()
        assert job.status == "done", job.error
        for origin in GeneratedTrack.objects.filter(job=job):
            assert set(origin.parents.values_list("pk", flat=True)) == parents
    # interpolation points lie between the two parents' latents
    vae = runtime.vae_for(model_version)
    za = vae.encode(a.midi_file.open("rb").read())[0][0]
    points = [torch.tensor(o.latent) for o in GeneratedTrack.objects.filter(job=jobs[1]).order_by("position")]
    distances = [float((p - za).norm()) for p in points]
    assert distances == sorted(distances)


def test_a_seed_makes_a_job_reproducible_and_spread_sets_how_far_similar_goes(
    user, model_version, track_factory, no_broker
):
    first = create(user, "sample", count=3, temperature=1.0, seed=7)
    again = create(user, "sample", count=3, temperature=1.0, seed=7)
    other = create(user, "sample", count=3, temperature=1.0, seed=8)
    parent = track_factory()
    near = create(user, "similar", track_id=parent.pk, count=4, spread=0.05)
    far = create(user, "similar", track_id=parent.pk, count=4, spread=1.5)
    for job in (first, again, other, near, far):
        job_runner.generation_jobs_run(job_id=job.pk)

    def latents(job):
        return [o.latent for o in GeneratedTrack.objects.filter(job=job).order_by("position")]

    assert latents(first) and latents(first) == latents(again) and latents(first) != latents(other)
    vae = runtime.vae_for(model_version)
    z = vae.encode(parent.midi_file.open("rb").read())[0][0]

    def mean_distance(job):
        return float(np.mean([float((torch.tensor(v) - z).norm()) for v in latents(job)]))

    assert mean_distance(far) > 5 * mean_distance(near)


def test_micro_batching_decodes_waiting_jobs_in_one_pass(user, model_version, no_broker):
    jobs = [create(user, "sample", count=2, seed=i) for i in range(5)]
    stats = job_runner.generation_jobs_run(job_id=jobs[2].pk)
    assert stats.forward_passes == 1 and stats.jobs == 5 and stats.melodies == 10
    batch_ids = set(GenerationJob.objects.values_list("batch_id", flat=True))
    assert len(batch_ids) == 1 and set(GenerationJob.objects.values_list("batch_jobs", flat=True)) == {5}
    assert set(GenerationJob.objects.values_list("status", flat=True)) == {"done"}
    # the other jobs' own messages arrive later and find nothing left to do
    tracks_before = Track.objects.count()
    for job in jobs:
        assert job_runner.generation_jobs_run(job_id=job.pk).jobs == 0
    assert Track.objects.count() == tracks_before


def test_batch_size_is_capped(user, model_version, no_broker, settings):
    settings.GENERATION_MAX_BATCH_JOBS = 2
    jobs = [create(user, "sample") for _ in range(3)]
    assert job_runner.generation_jobs_run(job_id=jobs[0].pk).jobs == 2
    assert GenerationJob.objects.filter(status="pending").count() == 1


def test_model_is_loaded_once_per_process_and_version(user, model_version, no_broker, tiny_checkpoint):
    before = runtime.loads
    for _ in range(3):
        job_runner.generation_jobs_run(job_id=create(user, "sample").pk)
    assert runtime.loads - before <= 1
    newer = services.model_version_register(name="newer", checkpoint_path=str(tiny_checkpoint))
    job = create(user, "sample")
    assert job.model_version == newer  # switching the active version takes effect for new jobs
    job_runner.generation_jobs_run(job_id=job.pk)
    assert runtime.loads - before <= 2 and (newer.pk, newer.checkpoint_path) in runtime._loaded


def test_abandoned_job_is_retaken_after_its_lease(user, model_version, no_broker, settings):
    from django.utils import timezone

    job = create(user, "sample", count=2)
    GenerationJob.objects.filter(pk=job.pk).update(status="running", lease_expires_at=timezone.now())
    assert services.generation_jobs_recover() == 1 and no_broker[-1] == job.pk
    job_runner.generation_jobs_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 1


def test_a_live_workers_job_is_not_taken(user, model_version, no_broker):
    from datetime import timedelta

    from django.utils import timezone

    job = create(user, "sample")
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running", lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert job_runner.generation_jobs_run(job_id=job.pk).jobs == 0
    assert services.generation_jobs_recover() == 0


# --- API ---


def test_api_create_and_permissions(user_client, other_client, staff_client, anon_client, model_version, no_broker):
    response = user_client.post(
        "/api/v1/generations/", {"kind": "sample", "count": 2, "temperature": 0.7}, format="json"
    )
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "pending" and job["params"]["count"] == 2 and job["model_version"] == "mel_test"
    url = f"/api/v1/generations/{job['id']}/"
    assert user_client.get(url).status_code == 200
    assert other_client.get(url).status_code == 404
    assert staff_client.get(url).status_code == 200
    assert anon_client.get(url).status_code == 401
    assert anon_client.post("/api/v1/generations/", {"kind": "sample"}, format="json").status_code == 401
    assert [j["id"] for j in user_client.get("/api/v1/generations/").json()["results"]] == [job["id"]]
    assert other_client.get("/api/v1/generations/").json()["count"] == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "sample", "count": 100}, "count"),
        ({"kind": "sample", "temperature": -1}, "temperature"),
        ({"kind": "similar", "track_id": 424242}, "track_ids"),
        ({"kind": "interpolate", "track_ids": [1, 2, 3]}, "track_ids"),
        ({"kind": "steer", "track_id": 1, "attribute": "volume"}, "attribute"),
        ({"kind": "remix"}, "kind"),
        ({}, "kind"),
    ],
)
def test_api_bad_parameters(user_client, model_version, no_broker, body, field):
    response = user_client.post("/api/v1/generations/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not GenerationJob.objects.exists()


def test_api_generation_throttle(user_client, model_version, no_broker, settings):
    from django.core.cache import cache

    cache.clear()
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "generation": "2/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    codes = [user_client.post("/api/v1/generations/", {"kind": "sample"}, format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert user_client.get("/api/v1/generations/").status_code == 200  # reading is not throttled by it
    cache.clear()


def test_admin_shows_jobs_and_their_tracks(client, django_user_model, user, model_version, no_broker):
    admin = django_user_model.objects.create_superuser("chief", "c@example.com", "a-long-passphrase-5")
    client.force_login(admin)
    job = create(user, "sample", count=2, temperature=0.0)
    job_runner.generation_jobs_run(job_id=job.pk)
    assert client.get("/admin/generation/generationjob/").status_code == 200
    page = client.get(f"/admin/generation/generationjob/{job.pk}/change/")
    assert page.status_code == 200 and b"resulting track" in page.content.lower()
    assert client.get("/admin/generation/generationjob/add/").status_code == 403


def test_an_unloadable_checkpoint_fails_the_job_clearly(user, model_version, no_broker, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    from generation.models import ModelVersion

    version = ModelVersion.objects.create(name="broken", checkpoint_path=str(broken), config={})
    services.model_version_activate(model_version=version)
    job = create(user, "sample")
    job_runner.generation_jobs_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "cannot be loaded" in job.error and job.lease_expires_at is None
    assert services.generation_jobs_recover() == 0  # not retried forever


def test_a_crash_while_storing_leaves_nothing_and_the_retry_stores_once(
    user, model_version, no_broker, monkeypatch, media_files
):
    """A worker that dies half-way through writing a job's tracks leaves no track and no file;
    the job is taken again once its lease runs out and then makes its tracks exactly once."""
    from django.utils import timezone

    from catalog import services as catalog_services

    real_ingest = catalog_services.track_ingest
    calls = {"n": 0}

    def dies_on_second_melody(**kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise SystemExit("worker killed")  # BaseException, like the worker's own death
        return real_ingest(**kwargs)

    monkeypatch.setattr(job_runner, "track_ingest", dies_on_second_melody)
    job = create(user, "sample", count=3, temperature=0.0, seed=5)
    with pytest.raises(SystemExit):
        job_runner.generation_jobs_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "running" and not Track.objects.exists() and media_files() == []

    monkeypatch.setattr(job_runner, "track_ingest", real_ingest)
    assert job_runner.generation_jobs_run(job_id=job.pk).jobs == 0  # its lease still holds
    GenerationJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())
    assert services.generation_jobs_recover() == 1
    job_runner.generation_jobs_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.attempts == 2
    assert Track.objects.count() == job.tracks.count() == GeneratedTrack.objects.filter(job=job).count() >= 1
    assert len(media_files()) == Track.objects.count()


def test_a_jobs_tracks_are_rendered_and_embedded_by_one_task_each(
    user, model_version, no_broker, monkeypatch, django_capture_on_commit_callbacks
):
    """A job of 5 melodies is one render message and one embedding message, not 5 of each."""
    from catalog import tasks as catalog_tasks
    from recommend import tasks as recommend_tasks

    renders, embeds = [], []
    monkeypatch.setattr(catalog_tasks.tracks_render_audio_task, "delay", renders.append)
    monkeypatch.setattr(catalog_tasks.track_render_audio_task, "delay", lambda *a, **k: renders.append(a))
    monkeypatch.setattr(recommend_tasks.embed_tracks_task, "delay", embeds.append)
    job = create(user, "sample", count=5, temperature=1.0, seed=11)
    with django_capture_on_commit_callbacks(execute=True):
        job_runner.generation_jobs_run(job_id=job.pk)
    made = sorted(job.tracks.values_list("pk", flat=True))
    assert len(made) >= 2
    assert [sorted(r) for r in renders] == [made]
    assert [sorted(e) for e in embeds] == [made]
