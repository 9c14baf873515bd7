"""The admin is how curators run the catalog: it must list, search, upload, edit and delete."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog import services
from catalog.models import Track
from tests.conftest import make_midi

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("boss", "boss@example.com", "a-long-passphrase-9")
    client.force_login(admin)
    client.admin_user = admin
    return client


def test_changelist_search_and_filters(admin_client, track_factory):
    track_factory(title="Drowsy Maggie", collection="oneills1850")
    track_factory(title="Kinderlied", collection="essen")
    page = admin_client.get("/admin/catalog/track/?q=maggie")
    assert page.status_code == 200
    assert b"Drowsy Maggie" in page.content and b"Kinderlied" not in page.content
    page = admin_client.get("/admin/catalog/track/?collection=essen")
    assert b"Kinderlied" in page.content and b"Drowsy Maggie" not in page.content


def test_upload_goes_through_ingestion(admin_client):
    data = make_midi([64, 67, 71], numerator=3, denominator=4)
    response = admin_client.post(
        "/admin/catalog/track/add/",
        {
            "midi_upload": SimpleUploadedFile("waltz.mid", data),
            "title": "",
            "composer": "Me",
            "collection": "uploads",
            "region": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    track = Track.objects.get()
    assert track.title == "waltz" and track.time_signature == "3/4" and track.composer == "Me"
    assert track.created_by == admin_client.admin_user
    assert track.midi_file.read() == data


def test_bad_upload_shows_the_reason_and_stores_nothing(admin_client, media_files):
    response = admin_client.post(
        "/admin/catalog/track/add/",
        {
            "midi_upload": SimpleUploadedFile("x.mid", b"definitely not midi"),
            "title": "x",
            "composer": "",
            "collection": "",
            "region": "",
        },
    )
    assert response.status_code == 200
    assert b"not a Standard MIDI File" in response.content
    assert not Track.objects.exists() and media_files() == []


def test_track_page_shows_ratings_and_allows_edit(admin_client, track_factory, user):
    track = track_factory(title="Old")
    services.rating_set(user=user, track=track, score=5)
    page = admin_client.get(f"/admin/catalog/track/{track.pk}/change/")
    assert page.status_code == 200
    assert b"1 ratings, average 5.00" in page.content and b"listener" in page.content
    response = admin_client.post(
        f"/admin/catalog/track/{track.pk}/change/",
        {
            "title": "New",
            "composer": "",
            "collection": "",
            "region": "",
            "key": "g",
            "time_signature": "3/4",
            "ratings-TOTAL_FORMS": "1",
            "ratings-INITIAL_FORMS": "1",
            "ratings-MIN_NUM_FORMS": "0",
            "ratings-MAX_NUM_FORMS": "1000",
            "ratings-0-id": str(track.ratings.get().pk),
            "ratings-0-track": str(track.pk),
        },
    )
    assert response.status_code == 302, response.content[:3000]
    track.refresh_from_db()
    assert (track.title, track.key, track.time_signature) == ("New", "G major", "3/4")


def test_delete_removes_files(admin_client, track_factory, media_files, django_capture_on_commit_callbacks):
    tracks = [track_factory(), track_factory()]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/catalog/track/", {"action": "delete_tracks", "_selected_action": [t.pk for t in tracks]}
        )
    assert response.status_code == 302
    assert not Track.objects.exists() and media_files() == []


def test_non_staff_cannot_reach_the_admin(client, user):
    client.force_login(user)
    assert client.get("/admin/catalog/track/").status_code == 302  # to the login page
