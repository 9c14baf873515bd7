"""Rendered audio and piano rolls: scheduling on ingestion, the two endpoints, the admin, the worker check."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.urls import reverse
from PIL import Image

from catalog import rendering, services, tasks
from catalog.apps import check_audio_renderer_on_worker_start
from catalog.models import Track, TrackMedia
from catalog.rendering import PIANOROLL_SIZE, THUMBNAIL_SIZE
from tests.catalog.rendering.conftest import corpus_midi, decode_ogg, requires_renderer  # noqa: F401

pytestmark = pytest.mark.django_db

FAKE_OGG = b"OggS" + bytes(range(256)) * 40  # 10,244 known bytes for the range tests


def audio_url(track_id: int) -> str:
    return reverse("api:track-audio", kwargs={"track_id": track_id})


def roll_url(track_id: int) -> str:
    return reverse("api:track-pianoroll", kwargs={"track_id": track_id})


@pytest.fixture
def enqueued(monkeypatch):
    """Replace the broker: record what would be enqueued."""
    calls = []
    monkeypatch.setattr(tasks.track_render_audio_task, "delay", lambda *a, **kw: calls.append((a, kw)))
    # New tracks are rendered in batches (one message per write): record one call per track.
    monkeypatch.setattr(tasks.tracks_render_audio_task, "delay", lambda ids: calls.extend(((i,), {}) for i in ids))
    return calls


@pytest.fixture
def fake_render(monkeypatch):
    """A render that returns known bytes at once (the real one is tested on its own)."""
    calls = []

    def render(midi_bytes, **kwargs):
        calls.append(kwargs)
        return rendering.RenderedAudio(
            data=FAKE_OGG, duration_seconds=2.0, loudness_lufs=-16.0, gain_db=3.0, peak_dbfs=-1.5, render_seconds=0.01
        )

    monkeypatch.setattr(rendering, "render_audio", render)
    return calls


def test_ingestion_schedules_a_render_after_commit_for_uploaded_and_generated_tracks(
    track_factory, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        uploaded = track_factory()
        generated = track_factory(is_generated=True)
    assert [call[0][0] for call in enqueued] == [uploaded.pk, generated.pk]
    for track in (uploaded, generated):
        assert track.media.audio_status == TrackMedia.AudioStatus.PENDING
    with django_capture_on_commit_callbacks(execute=True):
        services.track_ingest(midi_bytes=uploaded.midi_file.open("rb").read())  # the same bytes again
    assert len(enqueued) == 2, "a duplicate upload schedules nothing"


def test_pending_audio_answers_202_with_retry_after(anon_client, track_factory, enqueued, settings):
    settings.REFRAIN_AUDIO_RETRY_AFTER = 7
    track = track_factory()
    response = anon_client.get(audio_url(track.pk), HTTP_ACCEPT="audio/ogg")
    assert response.status_code == 202
    assert response["Retry-After"] == "7"
    assert response.json() == {
        "status": "pending",
        "retry_after": 7,
        "message": "The audio is being rendered; try again in 7 s.",
    }


def test_audio_never_requested_is_enqueued_by_the_first_request(
    anon_client, track_factory, enqueued, django_capture_on_commit_callbacks
):
    track = track_factory()
    TrackMedia.objects.filter(track=track).delete()  # e.g. a track from before media existed
    with django_capture_on_commit_callbacks(execute=True):
        assert anon_client.get(audio_url(track.pk)).status_code == 202
    assert enqueued == [((track.pk,), {"force": False})]
    with django_capture_on_commit_callbacks(execute=True):
        assert anon_client.get(audio_url(track.pk)).status_code == 202
    assert len(enqueued) == 1, "a pending render is not enqueued twice"


def test_a_lost_pending_render_is_enqueued_again(
    anon_client, track_factory, enqueued, settings, django_capture_on_commit_callbacks
):
    settings.REFRAIN_AUDIO_PENDING_TIMEOUT = 0
    track = track_factory()
    with django_capture_on_commit_callbacks(execute=True):
        anon_client.get(audio_url(track.pk))
    assert len(enqueued) == 1


def test_rendered_audio_is_served_whole_and_by_ranges(anon_client, track_factory, fake_render):
    track = track_factory()
    tasks.track_render_audio_task(track.pk)  # what the worker runs
    url = audio_url(track.pk)

    whole = anon_client.get(url)
    assert whole.status_code == 200
    assert whole["Content-Type"] == "audio/ogg" and whole["Accept-Ranges"] == "bytes"
    assert b"".join(whole.streaming_content) == FAKE_OGG
    assert whole["Content-Length"] == str(len(FAKE_OGG))

    size = len(FAKE_OGG)
    for header, first, last in (
        ("bytes=0-99", 0, 99),
        ("bytes=5000-", 5000, size - 1),
        ("bytes=-300", size - 300, size - 1),
        ("bytes=10000-99999", 10000, size - 1),
    ):
        part = anon_client.get(url, HTTP_RANGE=header)
        assert part.status_code == 206, header
        assert part.content == FAKE_OGG[first : last + 1], header
        assert part["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert part["Content-Length"] == str(last - first + 1)
        assert part["Content-Type"] == "audio/ogg"

    beyond = anon_client.get(url, HTTP_RANGE=f"bytes={size}-")
    assert beyond.status_code == 416
    assert beyond["Content-Range"] == f"bytes */{size}"
    assert beyond.json()["error"]["code"] == "range_not_satisfiable"

    # A stale If-Range (another version) gets the whole file; a current ETag gets a 304.
    assert anon_client.get(url, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"other"').status_code == 200
    assert anon_client.get(url, HTTP_IF_NONE_MATCH=whole["ETag"]).status_code == 304


def test_render_is_idempotent_and_forced_rerender_replaces_the_file(track_factory, fake_render, media_files):
    track = track_factory()
    tasks.track_render_audio_task(track.pk)
    tasks.track_render_audio_task(track.pk)  # a redelivered task
    assert len(fake_render) == 1
    tasks.track_render_audio_task(track.pk, force=True)
    assert len(fake_render) == 2
    assert len([p for p in media_files() if p.suffix == ".ogg"]) == 1


def test_a_changed_file_is_rendered_again(
    anon_client, track_factory, fake_render, enqueued, media_files, midi_bytes, django_capture_on_commit_callbacks
):
    track = track_factory()
    tasks.track_render_audio_task(track.pk)
    old_audio = TrackMedia.objects.get(track=track).audio_file.name
    # Whatever replaces a track's file also changes its content hash.
    new_bytes = midi_bytes([70, 72, 74])
    new_hash = hashlib.sha256(new_bytes).hexdigest()
    with track.midi_file.open("wb") as handle:
        handle.write(new_bytes)
    Track.objects.filter(pk=track.pk).update(content_hash=new_hash)

    with django_capture_on_commit_callbacks(execute=True):
        assert anon_client.get(audio_url(track.pk)).status_code == 202
    assert len(enqueued) == 1
    tasks.track_render_audio_task(track.pk)
    media = TrackMedia.objects.get(track=track)
    assert media.audio_source_hash == new_hash and media.pianoroll_source_hash == new_hash
    assert new_hash in media.audio_file.name and media.audio_file.name != old_audio
    assert not any(p.name == old_audio.rsplit("/", 1)[1] for p in media_files()), "the stale file is removed"
    assert anon_client.get(audio_url(track.pk)).status_code == 200


def test_a_failed_render_is_a_503_with_the_reason(anon_client, track_factory, monkeypatch):
    def broken(midi_bytes, **kwargs):
        raise rendering.AudioRenderError("FluidSynth rendered silence")

    monkeypatch.setattr(rendering, "render_audio", broken)
    track = track_factory()
    tasks.track_render_audio_task(track.pk)
    response = anon_client.get(audio_url(track.pk))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "audio_render_failed" and "silence" in error["message"]


def test_a_render_after_a_failure_clears_the_error_and_records_the_file(track_factory, monkeypatch, media_files):
    def broken(midi_bytes, **kwargs):
        raise rendering.AudioRenderError("FluidSynth rendered silence")

    track = track_factory()
    with monkeypatch.context() as patch:
        patch.setattr(rendering, "render_audio", broken)
        tasks.track_render_audio_task(track.pk)
    assert TrackMedia.objects.get(track=track).audio_error
    monkeypatch.setattr(
        rendering,
        "render_audio",
        lambda midi_bytes, **kwargs: rendering.RenderedAudio(
            data=FAKE_OGG, duration_seconds=2.0, loudness_lufs=-16.0, gain_db=3.0, peak_dbfs=-1.5, render_seconds=0.01
        ),
    )
    tasks.track_render_audio_task(track.pk, force=True)
    media = TrackMedia.objects.get(track=track)
    assert media.audio_status == TrackMedia.AudioStatus.READY and media.audio_error == ""
    assert media.audio_size == len(FAKE_OGG) == media.audio_file.size
    assert [p.read_bytes() for p in media_files() if p.suffix == ".ogg"] == [FAKE_OGG]


def test_a_missing_soundfont_fails_the_task_loudly(track_factory, settings, tmp_path):
    settings.REFRAIN_SOUNDFONT = str(tmp_path / "nowhere.sf2")
    track = track_factory()
    with pytest.raises(rendering.AudioRenderError, match="nowhere.sf2|fluidsynth"):
        tasks.track_render_audio_task(track.pk)
    media = TrackMedia.objects.get(track=track)
    assert media.audio_status == TrackMedia.AudioStatus.FAILED and media.audio_error


@requires_renderer
def test_a_real_corpus_tune_end_to_end(anon_client, corpus_midi, tmp_path, media_files):  # noqa: F811
    track = services.track_ingest(midi_bytes=corpus_midi, title="Essen tune").track
    tasks.track_render_audio_task(track.pk)
    media = TrackMedia.objects.get(track=track)
    assert media.audio_status == "ready" and media.render_seconds > 0
    assert abs(media.audio_duration_seconds - track.duration_seconds) < 1.0
    response = anon_client.get(audio_url(track.pk))
    data = b"".join(response.streaming_content)
    samples, rate = decode_ogg(data, tmp_path)
    assert abs(len(samples) / rate - track.duration_seconds) < 1.0
    assert (samples**2).mean() ** 0.5 > 0.02  # -34 dBFS: audible
    # Audio, full piano roll and thumbnail are stored; deleting the track removes all of them.
    assert sorted(p.suffix for p in media_files()) == [".mid", ".ogg", ".png", ".png"]


def test_pianoroll_png_full_and_thumbnail(anon_client, track_factory, monkeypatch):
    track = track_factory()
    for query, size in (("", PIANOROLL_SIZE), ("?size=thumb", THUMBNAIL_SIZE)):
        response = anon_client.get(roll_url(track.pk) + query, HTTP_ACCEPT="image/png")
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
        image.load()
        assert image.format == "PNG" and image.size == size
    # Cached: the next requests do not draw again.
    monkeypatch.setattr(rendering, "render_pianoroll", lambda *a, **kw: pytest.fail("drawn again"))
    assert anon_client.get(roll_url(track.pk)).status_code == 200
    assert anon_client.get(roll_url(track.pk) + "?size=huge").status_code == 400


@pytest.mark.parametrize("client_name", ["anon_client", "user_client", "staff_client"])
def test_anyone_may_read_a_tracks_media(request, client_name, track_factory, enqueued):
    client = request.getfixturevalue(client_name)
    track = track_factory()
    assert client.get(roll_url(track.pk)).status_code == 200
    assert client.get(audio_url(track.pk)).status_code == 202


@pytest.mark.parametrize("url", [audio_url, roll_url])
def test_a_missing_track_is_404_in_the_error_format(anon_client, url):
    response = anon_client.get(url(987654))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_deleting_a_track_removes_its_media(
    track_factory, fake_render, media_files, django_capture_on_commit_callbacks, enqueued
):
    track = track_factory()
    tasks.track_render_audio_task(track.pk)
    assert len(media_files()) == 4  # MIDI, audio, piano roll, thumbnail
    with django_capture_on_commit_callbacks(execute=True):
        services.track_delete(track=track)
    assert media_files() == []


def test_the_track_api_links_audio_and_pianoroll(anon_client, track_factory):
    track = track_factory()
    body = anon_client.get(reverse("api:track-detail", kwargs={"track_id": track.pk})).json()
    assert body["audio_url"].endswith(audio_url(track.pk))
    assert body["pianoroll_url"].endswith(roll_url(track.pk))


def test_admin_shows_player_piano_roll_and_thumbnails(admin_client, track_factory, fake_render, enqueued):
    track = track_factory()
    pending = admin_client.get(reverse("admin:catalog_track_change", args=[track.pk])).content.decode()
    assert "being rendered" in pending and roll_url(track.pk) in pending
    tasks.track_render_audio_task(track.pk)
    page = admin_client.get(reverse("admin:catalog_track_change", args=[track.pk])).content.decode()
    assert f'<audio controls preload="none" src="{audio_url(track.pk)}"' in page
    assert f'<img src="{roll_url(track.pk)}"' in page
    listing = admin_client.get(reverse("admin:catalog_track_changelist")).content.decode()
    assert f"{roll_url(track.pk)}?size=thumb" in listing
    admin_client.post(
        reverse("admin:catalog_track_changelist"), {"action": "render_media", "_selected_action": [track.pk]}
    )
    assert TrackMedia.objects.get(track=track).audio_status == "pending"


def test_the_schema_documents_both_endpoints(anon_client):
    schema = anon_client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/v1/tracks/{track_id}/audio/" in schema and "/api/v1/tracks/{track_id}/pianoroll.png" in schema


class _FakeWorker:
    def __init__(self, queues):
        from config.celery import app

        self.app = app
        app.amqp.queues.select(queues)


def test_a_cpu_worker_without_a_soundfont_refuses_to_start(settings, tmp_path):
    from config.celery import app

    settings.REFRAIN_SOUNDFONT = str(tmp_path / "missing.sf2")
    try:
        with pytest.raises(SystemExit, match="cannot render audio.*missing.sf2|fluidsynth"):
            check_audio_renderer_on_worker_start(instance=_FakeWorker(["cpu"]))
        # A worker for the gpu queue only does not render audio: it starts.
        assert check_audio_renderer_on_worker_start(instance=_FakeWorker(["gpu"])) is None
    finally:
        app.amqp.queues.select(None)


@requires_renderer
@pytest.mark.worker
def test_ingestion_renders_audio_on_a_real_cpu_worker(celery_worker, corpus_midi, anon_client):  # noqa: F811
    track = services.track_ingest(midi_bytes=corpus_midi, title="Essen tune", is_generated=True).track
    celery_worker.wait_for(
        lambda: TrackMedia.objects.filter(track=track, audio_status="ready").exists(),
        timeout=90,
        what="the worker to render the audio",
    )
    response = anon_client.get(audio_url(track.pk), HTTP_RANGE="bytes=0-3")
    assert response.status_code == 206 and response.content == b"OggS"
    assert "track_render_audio" in celery_worker.log()


def test_a_render_parses_the_midi_once_for_both_piano_rolls_and_the_audio(track_factory, fake_render, monkeypatch):
    import pretty_midi

    real_init = pretty_midi.PrettyMIDI.__init__
    parses = []

    def counting_init(self, *args, **kwargs):
        parses.append(args)
        real_init(self, *args, **kwargs)

    track = track_factory()
    monkeypatch.setattr(pretty_midi.PrettyMIDI, "__init__", counting_init)
    media = services.track_media_render(track=track)
    assert media.audio_status == TrackMedia.AudioStatus.READY and media.pianoroll_file and media.pianoroll_thumb_file
    assert len(parses) == 1
    assert fake_render and fake_render[-1]["end_time"] > 0  # the audio got the parsed length


def test_renders_whose_message_was_lost_are_queued_again_by_the_sweep(track_factory, enqueued, settings):
    """A broker outage at upload time (or a database outage through every retry) loses the render's
    message; beat's sweep queues it again once it has been pending too long, and only then."""
    from datetime import timedelta

    from django.utils import timezone

    settings.REFRAIN_AUDIO_PENDING_TIMEOUT = 600
    lost, recent = track_factory(), track_factory()
    TrackMedia.objects.filter(track=lost).update(audio_requested_at=timezone.now() - timedelta(seconds=900))
    TrackMedia.objects.filter(track=recent).update(audio_requested_at=timezone.now() - timedelta(seconds=60))
    enqueued.clear()
    assert services.media_renders_recover() == 1
    assert [call[0][0] for call in enqueued] == [lost.pk]
    assert services.media_renders_recover() == 0  # requested again just now: not re-sent at once
