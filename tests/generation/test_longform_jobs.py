"""Jobs on the long-form model (a prior over 2-bar latents): each kind in process, the rules of its
parameters, and the recommender's embedding of a tune."""

import io

import numpy as np
import pretty_midi
import pytest

from generation import job_runner, runtime, services
from generation.models import GeneratedTrack, GenerationJob
from generation.vae.longform_jobs import LongformJobs

pytestmark = pytest.mark.django_db

URL = "/api/v1/generations/"


@pytest.fixture
def woken(monkeypatch):
    sent = []
    monkeypatch.setattr(services, "generation_job_wake", lambda job_id, countdown=None: sent.append(job_id))
    return sent


def run(user, kind, **params):
    job = services.generation_job_create(owner=user, kind=kind, params=params)
    job_runner.generation_jobs_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_a_latent_prior_checkpoint_registers_as_a_long_form_model(longform_version):
    assert longform_version.config["model_kind"] == "latent-prior"
    assert services.model_version_is_longform(longform_version)
    assert isinstance(runtime.vae_for(longform_version), LongformJobs)


def test_a_sampled_tune_has_the_asked_length_and_meter(user, longform_version, woken):
    job = run(user, "sample", count=2, bars=8, meter="6/8", seed=3)
    assert job.status == "done", job.error
    tracks = list(job.tracks.all())
    assert len(tracks) == 2 and all(t.time_signature == "6/8" for t in tracks)
    pm = pretty_midi.PrettyMIDI(io.BytesIO(tracks[0].midi_file.read()))
    bar_seconds = 6 * 0.5 / 2  # 6 eighths at 120 quarter notes a minute
    assert pm.get_end_time() <= 8 * bar_seconds + 1e-6
    assert job.params["temperature"] is None  # the model's own served temperature


def test_the_same_seed_gives_the_same_tunes(user, longform_version, woken):
    first = run(user, "sample", count=1, bars=4, seed=5)
    again = run(user, "sample", count=1, bars=4, seed=5)
    assert first.tracks.get().content_hash == again.tracks.get().content_hash


@pytest.mark.parametrize(
    "kind, params",
    [
        ("continue", {"prompt_bars": 2, "bars": 6}),
        ("infill", {"from_bar": 1, "to_bar": 2}),
        ("similar", {"count": 2}),
        ("steer", {"attribute": "note_density", "amount": -2, "count": 2}),
    ],
)
def test_each_kind_from_a_track(user, longform_version, track_factory, woken, kind, params):
    parent = track_factory()
    job = run(user, kind, track_id=parent.pk, **params)
    assert job.status == "done", job.error
    made = GeneratedTrack.objects.filter(job=job)
    # An untrained tiny decoder may turn nearby latents into the same notes, stored once (by content).
    assert 1 <= made.count() <= params.get("count", 1)
    assert all(list(g.parents.values_list("pk", flat=True)) == [parent.pk] for g in made)
    assert all(len(g.latent) == 16 for g in made)  # the tune's embedding: the mean of its chunk latents


def test_interpolate_travels_chunk_by_chunk(user, longform_version, track_factory, woken):
    a, b = track_factory(), track_factory()
    job = run(user, "interpolate", track_ids=[a.pk, b.pk], count=3)
    assert job.status == "done" and job.tracks.count() >= 1
    made = GeneratedTrack.objects.filter(job=job)
    assert made.exists() and all(sorted(g.parents.values_list("pk", flat=True)) == sorted([a.pk, b.pk]) for g in made)


def test_infill_past_the_end_of_the_track_fails_the_job_clearly(user, longform_version, track_factory, woken):
    job = run(user, "infill", track_id=track_factory().pk, from_bar=41, to_bar=44)
    assert job.status == "failed" and "past the tune's end" in job.error


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "sample", "bars": 1}, "bars"),
        ({"kind": "sample", "bars": 80}, "bars"),
        ({"kind": "sample", "meter": "5/4"}, "meter"),
        ({"kind": "continue", "prompt_bars": 2, "bars": 8}, "track_ids"),
        ({"kind": "infill", "track_id": 1}, "from_bar"),
        ({"kind": "infill", "track_id": 1, "from_bar": 4, "to_bar": 2}, "from_bar"),
    ],
)
def test_bad_long_form_requests_are_400_and_store_nothing(
    user_client, longform_version, track_factory, woken, body, field
):
    track_factory()
    response = user_client.post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"].get("fields", {}), response.json()
    assert not GenerationJob.objects.exists()


def test_the_16_bar_model_refuses_what_only_the_long_form_model_does(user_client, model_version, track_factory, woken):
    track = track_factory()
    refused = user_client.post(URL, {"kind": "continue", "track_id": track.pk}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_kind"
    shaped = user_client.post(URL, {"kind": "sample", "bars": 32}, format="json")
    assert shaped.status_code == 400 and shaped.json()["error"]["code"] == "unsupported_parameter"
    assert not GenerationJob.objects.exists()


def test_a_tracks_embedding_is_the_mean_of_its_chunk_latents(longform_version, track_factory):
    from recommend import services as recommend_services
    from recommend.selectors import embedding_get

    track = track_factory()
    report = recommend_services.track_embed_batch(track_ids=[track.pk], model_version=longform_version)
    assert report.embedded == [track.pk]
    vector = embedding_get(track=track, model_version=longform_version)
    tune = runtime.vae_for(longform_version).encode([track.midi_file.read()])[0]
    np.testing.assert_allclose(vector, tune.z.numpy().mean(axis=0), atol=1e-6)
