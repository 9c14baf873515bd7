import hashlib

import pytest

from catalog import selectors, services
from catalog.midi import InvalidMidi
from catalog.models import Rating, Track
from config.errors import ApplicationError, ConflictError, NotFoundError
from tests.conftest import make_midi

pytestmark = pytest.mark.django_db


def test_ingest_stores_row_file_and_metadata(media_files):
    data = make_midi([62, 66, 69, 74], numerator=3, denominator=4)
    result = services.track_ingest(
        midi_bytes=data,
        title=" Air ",
        composer=" Anon ",
        collection="essen",
        region=" German ",
        key_hint="D",
        meter_hint="3/4",
    )
    track = Track.objects.get(pk=result.track.pk)
    assert result.created
    assert (track.title, track.composer, track.collection, track.region) == ("Air", "Anon", "essen", "German")
    assert track.content_hash == hashlib.sha256(data).hexdigest()
    assert track.key == "D major" and track.time_signature == "3/4"
    assert track.note_count == 4 and (track.pitch_min, track.pitch_max) == (62, 74)
    assert track.midi_file.read() == data
    assert len(media_files()) == 1


def test_ingest_enqueues_the_embedding_of_the_new_track_once_committed(
    model_version, monkeypatch, django_capture_on_commit_callbacks
):
    from recommend import tasks

    sent = []
    monkeypatch.setattr(tasks.embed_tracks_task, "delay", lambda ids: sent.append(ids))  # the broker only
    with django_capture_on_commit_callbacks(execute=True):
        track = services.track_ingest(midi_bytes=make_midi([60, 64, 67]), title="New").track
        assert sent == []  # not before the row is committed
    assert sent == [[track.pk]]
    with django_capture_on_commit_callbacks(execute=True):
        services.track_ingest(midi_bytes=make_midi([61, 65, 68]), title="Bulk", process=False)
    assert sent == [[track.pk]]


def test_same_bytes_twice_give_the_same_track(media_files):
    data = make_midi()
    first = services.track_ingest(midi_bytes=data, title="One")
    second = services.track_ingest(midi_bytes=data, title="Two")
    assert not second.created and second.track.pk == first.track.pk
    assert Track.objects.count() == 1 and len(media_files()) == 1


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty_file"),
        (b"not a midi file at all", "not_midi"),
        (make_midi()[:-7], "corrupt_midi"),
        (make_midi([]), "no_notes"),
    ],
)
def test_rejected_input_leaves_no_row_and_no_file(data, code, media_files):
    with pytest.raises(InvalidMidi) as excinfo:
        services.track_ingest(midi_bytes=data, title="bad")
    assert excinfo.value.code == code
    assert Track.objects.count() == 0
    assert media_files() == []


def test_configured_limits_are_enforced(settings, media_files):
    settings.REFRAIN_MIDI_MAX_BYTES = 100
    with pytest.raises(InvalidMidi) as excinfo:
        services.track_ingest(midi_bytes=make_midi([60] * 40))
    assert excinfo.value.code == "file_too_large"
    settings.REFRAIN_MIDI_MAX_BYTES = 1024 * 1024
    settings.REFRAIN_MIDI_MAX_SECONDS = 5
    with pytest.raises(InvalidMidi) as excinfo:
        services.track_ingest(midi_bytes=make_midi([60, 62], step=4.0))
    assert excinfo.value.code == "too_long"
    settings.REFRAIN_MIDI_MAX_NOTES = 3
    with pytest.raises(InvalidMidi):
        services.track_ingest(midi_bytes=make_midi([60, 61, 62, 63]))
    assert Track.objects.count() == 0 and media_files() == []


def test_a_failing_row_write_removes_the_file(monkeypatch, media_files):
    def broken_save(self, *args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Track, "save", broken_save)
    with pytest.raises(RuntimeError):
        services.track_ingest(midi_bytes=make_midi())
    assert media_files() == []


def test_update_validates_and_normalizes(track_factory):
    track = track_factory()
    services.track_update(track=track, title="Renamed", key="am", time_signature="6/8")
    track.refresh_from_db()
    assert (track.title, track.key, track.time_signature) == ("Renamed", "A minor", "6/8")
    with pytest.raises(ApplicationError):
        services.track_update(track=track, time_signature="seven")
    with pytest.raises(ApplicationError):
        services.track_update(track=track, key="X flat")
    with pytest.raises(ApplicationError):
        services.track_update(track=track, title="  ")
    with pytest.raises(ApplicationError):
        services.track_update(track=track, content_hash="0" * 64)


def test_delete_removes_row_and_file(track_factory, media_files, django_capture_on_commit_callbacks):
    track = track_factory()
    assert len(media_files()) == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.track_delete(track=track)
    assert not Track.objects.exists()
    assert media_files() == []


def test_refresh_metadata_restores_values_from_the_file(track_factory):
    track = track_factory()
    expected = (track.note_count, track.pitch_min, track.pitch_max, track.duration_seconds)
    Track.objects.filter(pk=track.pk).update(note_count=0, pitch_min=0, pitch_max=0, duration_seconds=0)
    track.refresh_from_db()
    services.track_refresh_metadata(track=track)
    track.refresh_from_db()
    assert (track.note_count, track.pitch_min, track.pitch_max, track.duration_seconds) == expected


def test_rating_one_per_user_and_track(user, track_factory):
    track = track_factory()
    rating, created = services.rating_set(user=user, track=track, score=4)
    assert created
    rating, created = services.rating_set(user=user, track=track, score=2)
    assert not created and rating.score == 2
    assert Rating.objects.filter(user=user, track=track).count() == 1
    services.rating_delete(user=user, track=track)
    assert not Rating.objects.exists()
    with pytest.raises(ApplicationError):
        services.rating_delete(user=user, track=track)


@pytest.mark.parametrize("score", [0, 6, -1, 2.5, True, "5"])
def test_rating_score_must_be_1_to_5(user, track_factory, score):
    with pytest.raises(ApplicationError):
        services.rating_set(user=user, track=track_factory(), score=score)
    assert not Rating.objects.exists()


def test_register_creates_user_and_token():
    user, token = services.user_register(username="newcomer", password="tunes-and-airs-42")
    assert user.check_password("tunes-and-airs-42") and len(token) == 40
    with pytest.raises(ConflictError):
        services.user_register(username="NEWCOMER", password="tunes-and-airs-42")
    with pytest.raises(ApplicationError) as excinfo:
        services.user_register(username="weak", password="12345678")
    assert excinfo.value.code == "weak_password"


def test_selectors_annotate_ratings(user, other_user, track_factory):
    track = track_factory()
    services.rating_set(user=user, track=track, score=5)
    services.rating_set(user=other_user, track=track, score=2)
    found = selectors.track_get(track_id=track.pk)
    assert found.rating_count == 2 and found.rating_average == pytest.approx(3.5)
    with pytest.raises(NotFoundError):
        selectors.track_get(track_id=999_999)
    assert [r.score for r in selectors.rating_list_for_user(user=user)] == [5]


def test_demo_users_only_with_debug(settings, capsys):
    from django.core.management import CommandError, call_command

    from catalog.models import User

    settings.DEBUG = False
    with pytest.raises(CommandError):
        call_command("create_demo_users")
    settings.DEBUG = True
    call_command("create_demo_users")
    call_command("create_demo_users")  # idempotent
    admin, demo = User.objects.get(username="admin"), User.objects.get(username="demo")
    assert admin.is_staff and not demo.is_staff
    assert demo.check_password("refrain-listener-demo")
    assert "token=" in capsys.readouterr().out


def test_prune_removes_only_old_unreferenced_files(track_factory, settings, media_files):
    import os
    import time
    from pathlib import Path

    kept = track_factory()
    orphan = Path(settings.MEDIA_ROOT) / "tracks" / "midi" / "ab" / ("ab" + "0" * 62 + ".mid")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"MThd left by a killed worker")
    young = orphan.with_name("cd" + "0" * 62 + ".mid")
    young.write_bytes(b"MThd being ingested right now")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    os.utime(Path(kept.midi_file.path), (old, old))
    roll = services.track_pianoroll_ensure(track=kept)  # a media file, referenced by TrackMedia
    os.utime(Path(roll.path), (old, old))

    assert services.media_prune_orphans(older_than_seconds=3600, dry_run=True) == [
        orphan.relative_to(settings.MEDIA_ROOT).as_posix()
    ]
    assert orphan.exists()
    services.media_prune_orphans(older_than_seconds=3600)
    assert not orphan.exists() and young.exists() and Path(kept.midi_file.path).exists()
    assert Path(roll.path).exists()
