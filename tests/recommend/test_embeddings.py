"""Track embeddings: stored per model version, pooled over windows, skipped when unreadable, scheduled on ingest."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from catalog import services as catalog_services
from generation import runtime
from generation import services as generation_services
from generation.vae.representation import extract_melody
from recommend import services
from recommend.models import TrackEmbedding
from recommend.selectors import embedding_get

pytestmark = pytest.mark.django_db


def test_embeddings_are_stored_per_model_version(model_version, track_factory, tiny_checkpoint):
    tracks = [track_factory() for _ in range(3)]
    ids = [t.pk for t in tracks]
    report = services.track_embed_batch(track_ids=ids, model_version=model_version, batch_size=2)
    assert sorted(report.embedded) == sorted(ids) and not report.skipped
    rows = TrackEmbedding.objects.filter(model_version=model_version)
    assert rows.count() == 3
    row = rows.get(track=tracks[0])
    assert row.dim == 16 and row.array.shape == (16,) and row.sigma_mean > 0 and row.window_count == 1
    # the stored vector is the posterior mean of the model's own encoding of the file
    with tracks[0].midi_file.open("rb") as handle:
        mu, _ = runtime.vae_for(model_version).encode(handle.read())
    np.testing.assert_allclose(row.array, mu[0].numpy(), rtol=1e-5, atol=1e-6)

    other = generation_services.model_version_register(
        name="second", checkpoint_path=str(tiny_checkpoint), activate=False
    )
    services.track_embed_batch(track_ids=ids, model_version=other)
    assert TrackEmbedding.objects.count() == 6
    assert TrackEmbedding.objects.filter(track=tracks[0]).count() == 2
    # embedding again replaces, never duplicates
    services.track_embed_batch(track_ids=ids, model_version=model_version)
    assert TrackEmbedding.objects.count() == 6


def test_long_tunes_pool_the_mean_of_every_window(model_version, track_factory, midi_bytes):
    # 40 notes of a quarter (4 sixteenths) each: 160 steps, so windows at 0, 64 and 128 (seq_len 64)
    long_midi = midi_bytes([60 + (i * 5) % 17 for i in range(40)], step=0.5)
    track = track_factory(midi=long_midi)
    services.track_embed_batch(track_ids=[track.pk], model_version=model_version)
    row = TrackEmbedding.objects.get(track=track)
    assert row.window_count == 3
    vae = runtime.vae_for(model_version)
    windows = services.embedding_windows(extract_melody(long_midi), vae.seq_len)
    assert len(windows) == 3 and all(len(w) == 64 for w in windows)
    mu, sigma = vae.encode(windows)
    np.testing.assert_allclose(row.array, mu.numpy().mean(axis=0), rtol=1e-5, atol=1e-6)
    assert row.sigma_mean == pytest.approx(float(sigma.mean()), rel=1e-5)
    # not just the first window, which is all the model's own encode() would read
    first, _ = vae.encode(long_midi)
    assert not np.allclose(row.array, first[0].numpy())


def test_windows_of_silence_are_not_pooled(midi_bytes):
    import io

    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=0)
    inst.notes.append(pretty_midi.Note(velocity=90, pitch=60, start=0.0, end=0.5))
    inst.notes.append(pretty_midi.Note(velocity=90, pitch=64, start=20.0, end=20.5))  # step 160
    pm.instruments.append(inst)
    buffer = io.BytesIO()
    pm.write(buffer)
    windows = services.embedding_windows(extract_melody(buffer.getvalue()), 64)
    assert len(windows) == 2  # windows 0 and 128..191; 64..127 is silence
    assert len(services.embedding_windows(extract_melody(buffer.getvalue()), 16, max_windows=1)) == 1


def test_unreadable_tracks_are_skipped_and_logged(model_version, track_factory, caplog):
    good, bad = track_factory(), track_factory()
    with open(bad.midi_file.path, "wb") as handle:
        handle.write(b"this is not MIDI any more")
    with caplog.at_level(logging.WARNING, logger="recommend.services"):
        report = services.track_embed_batch(track_ids=[good.pk, bad.pk], model_version=model_version)
    assert report.embedded == [good.pk]
    assert bad.pk in report.skipped
    assert f"Not embedding track {bad.pk}" in caplog.text
    assert embedding_get(track=bad, model_version=model_version) is None


def test_ingestion_enqueues_embedding_on_commit_only_with_an_active_model(
    db, midi_bytes, monkeypatch, django_capture_on_commit_callbacks
):
    from recommend import tasks

    sent = []
    monkeypatch.setattr(tasks.embed_tracks_task, "delay", lambda ids: sent.append(ids))
    with django_capture_on_commit_callbacks(execute=True):
        catalog_services.track_ingest(midi_bytes=midi_bytes([60, 62]), title="no model yet")
    assert sent == []  # no active model version: nothing to embed with


def test_ingestion_enqueues_embedding(model_version, midi_bytes, monkeypatch, django_capture_on_commit_callbacks):
    from recommend import tasks

    sent = []
    monkeypatch.setattr(tasks.embed_tracks_task, "delay", lambda ids: sent.append(ids))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        track = catalog_services.track_ingest(midi_bytes=midi_bytes([60, 64, 67]), title="new").track
        assert sent == []  # not before the commit
    assert callbacks and sent == [[track.pk]]
    # the task embeds with the active version and indexes the track
    tasks.embed_tracks_task(sent[0])
    assert embedding_get(track=track, model_version=model_version) is not None


def test_embed_task_routes_to_the_bulk_gpu_queue():
    from config.celery import app

    route = app.amqp.router.route({}, "recommend.tasks.embed_tracks_task")
    assert route["queue"].name == "gpu-bulk"  # behind the interactive generation queue
    assert app.amqp.router.route({}, "recommend.tasks.index_remove_tracks_task")["queue"].name == "cpu"


def test_embed_catalog_command_embeds_what_is_missing(model_version, track_factory):
    from io import StringIO

    from django.core.management import call_command

    from recommend.index_readers import index_reader

    tracks = [track_factory() for _ in range(5)]
    services.track_embed_batch(track_ids=[tracks[0].pk], model_version=model_version)
    out = StringIO()
    call_command("embed_catalog", "--batch", "2", "--no-progress", stdout=out)
    assert "embedded 4 tracks" in out.getvalue()
    assert TrackEmbedding.objects.filter(model_version=model_version).count() == 5
    assert len(index_reader(model_version_id=model_version.pk).index) == 5
    out = StringIO()
    call_command("embed_catalog", "--no-progress", stdout=out)
    assert "embedded 0 tracks" in out.getvalue()


@pytest.mark.worker
def test_a_new_track_is_embedded_and_indexed_by_a_real_worker(start_worker, model_version, track_factory):
    from recommend.index_readers import index_reader

    worker = start_worker()
    track = track_factory()  # ingestion alone: the embed task is enqueued on commit
    worker.wait_for(
        lambda: TrackEmbedding.objects.filter(track=track, model_version=model_version).exists(),
        timeout=90,
        what="the embedding",
    )

    def indexed() -> bool:
        try:
            return track.pk in index_reader(model_version_id=model_version.pk).index.ids()
        except FileNotFoundError:  # IndexNotFoundError: not written yet
            return False

    worker.wait_for(indexed, timeout=30, what="the index")


def test_embed_missing_catches_up_in_chunks(model_version, track_factory, monkeypatch):
    from recommend import tasks

    tracks = [track_factory() for _ in range(5)]
    with open(tracks[0].midi_file.path, "wb") as handle:
        handle.write(b"not MIDI")  # never embeddable: must not make the task loop
    requeued = []
    monkeypatch.setattr(tasks.embed_missing_task, "delay", lambda *args: requeued.append(args))
    assert tasks.embed_missing_task(2) == 1  # the broken track is passed over, one good one embedded
    assert requeued == [(2, tracks[1].pk)]
    assert tasks.embed_missing_task(*requeued[-1]) == 2
    assert requeued[-1] == (2, tracks[3].pk)
    assert tasks.embed_missing_task(*requeued[-1]) == 1 and len(requeued) == 2  # done: nothing more queued
    assert TrackEmbedding.objects.filter(model_version=model_version).count() == 4
    assert tasks.embed_missing_task() == 0  # a new pass retries only the broken track


def test_embed_missing_without_an_active_model_does_nothing(track_factory):
    from recommend import tasks

    track_factory()
    assert tasks.embed_missing_task() == 0
    assert not TrackEmbedding.objects.exists()
