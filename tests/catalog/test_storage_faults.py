"""The media store refusing a write (a full disk): a clear 503, nothing left behind, and the retry
stored under the content hash."""

import errno
import hashlib
import os

import pytest
from django.core.files.storage import FileSystemStorage

from catalog import services
from catalog.models import Track

pytestmark = pytest.mark.django_db


@pytest.fixture
def full_disk(monkeypatch):
    """FileSystemStorage writes half the file, then the disk is full (what ENOSPC mid-write leaves)."""
    real_save = FileSystemStorage._save

    def save_until_full(self, name, content):
        data = content.read()
        path = self.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", save_until_full)
    yield
    monkeypatch.setattr(FileSystemStorage, "_save", real_save)


def test_a_full_disk_is_a_503_and_leaves_no_file_and_no_row(staff_client, midi_bytes, media_files, full_disk):
    data = midi_bytes([60, 64, 67, 72])
    response = staff_client.post("/api/v1/tracks/", {"file": _upload(data)}, format="multipart")
    assert response.status_code == 503, response.content
    body = response.json()["error"]
    assert body["code"] == "storage_unavailable" and response["Retry-After"]
    assert media_files() == [] and not Track.objects.exists()


def test_the_retry_after_a_full_disk_is_stored_under_the_content_hash(midi_bytes, media_files, monkeypatch):
    data = midi_bytes([60, 62, 64])
    digest = hashlib.sha256(data).hexdigest()
    # What a process killed mid-write (or an older release after ENOSPC) left: a 0-byte file.
    storage = Track._meta.get_field("midi_file").storage
    storage.save(f"tracks/midi/{digest[:2]}/{digest}.mid", _upload(b""))
    track = services.track_ingest(midi_bytes=data, title="retry").track
    assert track.midi_file.name == f"tracks/midi/{digest[:2]}/{digest}.mid"
    assert track.midi_file.read() == data
    assert [p.name for p in media_files()] == [f"{digest}.mid"]


def test_the_same_bytes_already_on_disk_are_reused_not_duplicated(midi_bytes, media_files):
    data = midi_bytes([60, 65, 69])
    digest = hashlib.sha256(data).hexdigest()
    storage = Track._meta.get_field("midi_file").storage
    storage.save(f"tracks/midi/{digest[:2]}/{digest}.mid", _upload(data))  # a row rolled back by a crash
    track = services.track_ingest(midi_bytes=data, title="again").track
    assert track.midi_file.name.endswith(f"{digest}.mid") and len(media_files()) == 1


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("tune.mid", data, content_type="audio/midi")
