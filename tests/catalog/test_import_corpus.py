import json

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Track, TrackMedia

pytestmark = pytest.mark.django_db


def test_import_a_subset_twice_adds_nothing_the_second_time(tmp_path, media_files):
    report = tmp_path / "import.json"
    call_command(
        "import_corpus",
        "--collections",
        "essen",
        "oneills1850",
        "--per-collection",
        "6",
        "--json",
        str(report),
        "--no-progress",
    )
    first = json.loads(report.read_text())
    assert first["added"] + first["duplicates"] + first["skipped"] == 12
    assert first["added"] >= 10
    assert Track.objects.count() == first["added"] and len(media_files()) == first["added"]
    essen = Track.objects.filter(collection="essen").first()
    assert essen.region and essen.title and essen.time_signature and essen.key
    assert Track.objects.filter(collection="oneills1850", region="Irish").exists()

    call_command(
        "import_corpus",
        "--collections",
        "essen",
        "oneills1850",
        "--per-collection",
        "6",
        "--json",
        str(report),
        "--no-progress",
    )
    second = json.loads(report.read_text())
    assert second["added"] == 0 and second["already_present"] == first["added"]
    assert Track.objects.count() == first["added"]


def test_limit_takes_the_first_tunes_and_chorales_import(tmp_path):
    call_command("import_corpus", "--collections", "bach_chorales", "--limit", "2", "--no-progress")
    chorales = list(Track.objects.filter(collection="bach_chorales"))
    assert len(chorales) == 2
    assert all(t.composer == "J. S. Bach" and t.note_count > 100 for t in chorales)


def test_bad_arguments_are_refused():
    with pytest.raises(CommandError):
        call_command("import_corpus", "--limit", "0", "--no-progress")
    with pytest.raises(CommandError):
        call_command("import_corpus", "--collections", "nonexistent")


def test_bulk_import_queues_no_rendering_unless_asked(django_capture_on_commit_callbacks):
    from catalog.models import TrackMedia

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("import_corpus", "--collections", "essen", "--limit", "3", "--no-progress")
    assert Track.objects.count() == 3 and callbacks == [] and not TrackMedia.objects.exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("import_corpus", "--collections", "oneills1850", "--limit", "2", "--process", "--no-progress")
    assert TrackMedia.objects.filter(audio_status="pending").count() == 2 and len(callbacks) >= 2


@pytest.mark.django_db(transaction=True)
def test_large_imports_ingest_in_a_process_pool(monkeypatch, tmp_path, media_files):
    from catalog import corpus

    monkeypatch.setattr(corpus, "POOL_THRESHOLD", 1)  # take the pool path for a handful of tunes
    report = tmp_path / "import.json"
    call_command(
        "import_corpus",
        "--collections",
        "airds_airs",
        "--limit",
        "8",
        "--workers",
        "2",
        "--json",
        str(report),
        "--no-progress",
    )
    summary = json.loads(report.read_text())
    assert summary["workers"] == 2
    assert summary["added"] + summary["duplicates"] + summary["skipped"] == 8
    assert Track.objects.count() == summary["added"] >= 6
    assert len(media_files()) == summary["added"]  # the workers wrote into this test's media folder
    call_command(
        "import_corpus",
        "--collections",
        "airds_airs",
        "--limit",
        "8",
        "--workers",
        "2",
        "--json",
        str(report),
        "--no-progress",
    )
    assert json.loads(report.read_text())["added"] == 0


def test_a_processed_import_queues_its_work_in_chunks_not_per_tune(
    monkeypatch, media_files, django_capture_on_commit_callbacks
):
    """`make run`'s demo import: renders and embeddings go out in chunks of PROCESS_CHUNK tracks."""
    from catalog import events, tasks
    from catalog.management.commands import import_corpus

    monkeypatch.setattr(import_corpus, "PROCESS_CHUNK", 4)
    renders, announced = [], []
    monkeypatch.setattr(tasks.tracks_render_audio_task, "delay", renders.append)
    monkeypatch.setattr(tasks.track_render_audio_task, "delay", lambda *a, **k: renders.append(a))
    events.tracks_created.connect(lambda track_ids: announced.append(track_ids), dispatch_uid="test.import")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            call_command(
                "import_corpus", "--collections", "essen", "--per-collection", "10", "--process", "--no-progress"
            )
    finally:
        events.tracks_created.disconnect(dispatch_uid="test.import")
    added = sorted(Track.objects.values_list("pk", flat=True))
    assert len(added) >= 9
    assert sorted(i for chunk in renders for i in chunk) == added
    assert len(renders) == len(announced) == -(-len(added) // 4)
    assert TrackMedia.objects.filter(track_id__in=added, audio_status="pending").count() == len(added)
