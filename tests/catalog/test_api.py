"""The catalog API: behaviour, one error format, and who may do what."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from catalog.models import Rating, Track
from tests.conftest import make_midi

pytestmark = pytest.mark.django_db


def upload(client, data: bytes, name: str = "tune.mid", **fields):
    return client.post(
        "/api/v1/tracks/", {"file": SimpleUploadedFile(name, data, "audio/midi"), **fields}, format="multipart"
    )


def assert_error(response, status: int, code: str | None = None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


# --- the permission matrix: every endpoint, anonymous / user / staff ---

MATRIX = [
    # method, path, body, expected status for (anonymous, user, staff)
    ("get", "/api/v1/tracks/", None, (200, 200, 200)),
    ("get", "/api/v1/tracks/{id}/", None, (200, 200, 200)),
    ("get", "/api/v1/tracks/{id}/midi/", None, (200, 200, 200)),
    ("patch", "/api/v1/tracks/{id}/", {"title": "New"}, (401, 403, 200)),
    ("put", "/api/v1/tracks/{id}/rating/", {"score": 4}, (401, 201, 201)),
    ("get", "/api/v1/tracks/{id}/rating/", None, (401, 200, 200)),
    ("delete", "/api/v1/tracks/{id}/rating/", None, (401, 204, 204)),
    ("get", "/api/v1/me/", None, (401, 200, 200)),
    ("get", "/api/v1/me/ratings/", None, (401, 200, 200)),
    ("get", "/api/schema/", None, (200, 200, 200)),
    ("get", "/api/docs/", None, (200, 200, 200)),
    ("get", "/healthz", None, (200, 200, 200)),
    ("delete", "/api/v1/tracks/{id}/", None, (401, 403, 204)),
]


@pytest.mark.parametrize("who", [0, 1, 2], ids=["anonymous", "user", "staff"])
def test_permission_matrix(who, anon_client, user_client, staff_client, track_factory):
    client = [anon_client, user_client, staff_client][who]
    track = track_factory()
    for method, path, body, expected in MATRIX:
        response = getattr(client, method)(path.format(id=track.pk), body)
        assert response.status_code == expected[who], (method, path, response.content[:300])


@pytest.mark.parametrize("who, status", [(0, 401), (1, 403), (2, 201)], ids=["anonymous", "user", "staff"])
def test_upload_permission(who, status, anon_client, user_client, staff_client):
    client = [anon_client, user_client, staff_client][who]
    response = upload(client, make_midi())
    assert response.status_code == status
    assert Track.objects.count() == (1 if status == 201 else 0)


def test_register_and_token_flow(anon_client):
    response = anon_client.post("/api/v1/auth/register/", {"username": "ada", "password": "counterpoint-77"})
    assert response.status_code == 201
    token = response.json()["token"]
    response = anon_client.post("/api/v1/auth/token/", {"username": "ada", "password": "counterpoint-77"})
    assert response.json() == {"token": token}
    anon_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anon_client.get("/api/v1/me/").json()["username"] == "ada"


def test_register_and_token_errors(anon_client, user):
    assert_error(
        anon_client.post("/api/v1/auth/register/", {"username": "listener", "password": "x-long-enough-1"}),
        409,
        "conflict",
    )
    error = assert_error(anon_client.post("/api/v1/auth/register/", {"username": "a b", "password": "short"}), 400)
    assert set(error["fields"]) == {"username", "password"}
    assert_error(
        anon_client.post("/api/v1/auth/token/", {"username": "listener", "password": "wrong"}), 400, "bad_credentials"
    )


def test_staff_upload_stores_track_and_reports_duplicates(staff_client, staff):
    data = make_midi([60, 64, 67], numerator=6, denominator=8)
    response = upload(staff_client, data, "my-air.mid", composer="Anon", collection="uploads")
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "my-air" and body["time_signature"] == "6/8" and body["composer"] == "Anon"
    assert Track.objects.get(pk=body["id"]).created_by == staff
    again = upload(staff_client, data, "copy.mid")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    download = staff_client.get(body["midi_url"])
    assert download.status_code == 200 and download["Content-Type"] == "audio/midi"
    assert b"".join(download.streaming_content) == data


@pytest.mark.parametrize(
    "data, code",
    [(b"", None), (b"hello world", "not_midi"), (make_midi()[:40], "corrupt_midi"), (make_midi([]), "no_notes")],
)
def test_bad_uploads_are_400_and_store_nothing(staff_client, media_files, data, code):
    error = assert_error(upload(staff_client, data), 400, code)
    assert "file" in error["message"].lower() or "midi" in error["message"].lower()
    assert Track.objects.count() == 0 and media_files() == []


def test_upload_over_size_limit(staff_client, settings, media_files):
    settings.REFRAIN_MIDI_MAX_BYTES = 64
    assert_error(upload(staff_client, make_midi([60] * 30)), 400, "file_too_large")
    assert media_files() == []


def test_upload_without_file(staff_client):
    error = assert_error(staff_client.post("/api/v1/tracks/", {"title": "x"}, format="multipart"), 400)
    assert "file" in error["fields"]


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=256).map(lambda tail: b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk" + tail),
        st.integers(min_value=1, max_value=300).map(lambda cut: make_midi()[:cut]),
    )
)
def test_random_bytes_never_500_and_never_store(staff_client, media_files, data):
    response = upload(staff_client, data)
    assert response.status_code in (200, 201, 400), response.content
    if response.status_code == 400:
        assert response.json()["error"]["code"]
    else:  # hypothesis found a valid file: it must then be a real track with its file
        Track.objects.all().delete()
        for path in media_files():
            path.unlink()
    assert Track.objects.count() == 0


def test_list_filters_search_ordering(anon_client, track_factory):
    a = track_factory(title="Drowsy Maggie", collection="oneills1850", meter_hint="4/4", key_hint="Em")
    b = track_factory(title="Kinderlied", collection="essen", region="German", meter_hint="3/4", key_hint="G")
    c = track_factory(title="Lux tune", collection="essen", region="Luxembourg", meter_hint="6/8", key_hint="D")
    ids = lambda r: [t["id"] for t in r.json()["results"]]  # noqa: E731
    assert set(ids(anon_client.get("/api/v1/tracks/?collection=essen"))) == {b.pk, c.pk}
    assert ids(anon_client.get("/api/v1/tracks/?time_signature=6/8")) == [c.pk]
    assert ids(anon_client.get("/api/v1/tracks/", {"key": "E minor"})) == [a.pk]
    assert ids(anon_client.get("/api/v1/tracks/?search=maggie")) == [a.pk]
    assert ids(anon_client.get("/api/v1/tracks/?ordering=title")) == [a.pk, b.pk, c.pk]
    assert ids(anon_client.get("/api/v1/tracks/?is_generated=true")) == []
    page = anon_client.get("/api/v1/tracks/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert_error(anon_client.get("/api/v1/tracks/?page=99"), 404)


def test_ratings_flow_and_validation(user_client, other_client, user, track_factory):
    track = track_factory()
    url = f"/api/v1/tracks/{track.pk}/rating/"
    assert user_client.put(url, {"score": 5}).status_code == 201
    assert user_client.put(url, {"score": 3}).status_code == 200
    assert Rating.objects.get(user=user, track=track).score == 3
    for bad in ({"score": 0}, {"score": 6}, {"score": "five"}, {}):
        assert_error(user_client.put(url, bad), 400)
    assert_error(other_client.get(url), 400, "not_rated")  # ratings are per user
    assert other_client.get("/api/v1/me/ratings/").json()["count"] == 0
    mine = user_client.get("/api/v1/me/ratings/").json()
    assert mine["count"] == 1 and mine["results"][0]["track_id"] == track.pk
    detail = user_client.get(f"/api/v1/tracks/{track.pk}/").json()
    assert detail["rating_count"] == 1 and detail["rating_average"] == 3
    assert user_client.delete(url).status_code == 204
    assert_error(user_client.delete(url), 400, "not_rated")
    assert_error(user_client.put("/api/v1/tracks/999999/rating/", {"score": 4}), 404, "not_found")


def test_staff_patch_and_delete(staff_client, track_factory, media_files, django_capture_on_commit_callbacks):
    track = track_factory()
    response = staff_client.patch(f"/api/v1/tracks/{track.pk}/", {"title": "Renamed", "key": "bm"})
    assert response.status_code == 200 and response.json()["key"] == "B minor"
    assert_error(staff_client.patch(f"/api/v1/tracks/{track.pk}/", {"time_signature": "often"}), 400)
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_client.delete(f"/api/v1/tracks/{track.pk}/").status_code == 204
    assert media_files() == []
    assert_error(staff_client.get(f"/api/v1/tracks/{track.pk}/"), 404, "not_found")
    assert_error(staff_client.get(f"/api/v1/tracks/{track.pk}/midi/"), 404)


def test_unknown_api_path_is_404(anon_client):
    assert anon_client.get("/api/v1/nothing-here/").status_code == 404


def test_schema_documents_what_endpoints_accept(anon_client):
    schema = anon_client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    upload_body = paths["/api/v1/tracks/"]["post"]["requestBody"]["content"]
    assert list(upload_body) == ["multipart/form-data"]
    rating = paths["/api/v1/tracks/{track_id}/rating/"]["put"]["requestBody"]["content"]["application/json"]
    ref = rating["schema"]["$ref"].rsplit("/", 1)[1]
    score = schema["components"]["schemas"][ref]["properties"]["score"]
    assert (score["minimum"], score["maximum"]) == (1, 5)
    for path in (
        "/api/v1/auth/register/",
        "/api/v1/auth/token/",
        "/api/v1/me/ratings/",
        "/api/v1/tracks/{track_id}/midi/",
    ):
        assert path in paths


def test_healthz_reports_database_and_broker(anon_client):
    body = anon_client.get("/healthz").json()
    assert body["status"] == "ok" and body["checks"] == {"database": "ok", "broker": "ok"}


def test_healthz_is_503_when_the_broker_is_down(anon_client, settings, monkeypatch):
    from config import health

    monkeypatch.setattr(health, "_check_broker", lambda: "ConnectionRefusedError: nobody home")
    response = anon_client.get("/healthz")
    assert response.status_code == 503 and response.json()["checks"]["broker"].startswith("ConnectionRefused")


def test_throttling_answers_429_in_the_error_format(anon_client, settings):
    from django.core.cache import cache

    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "anon": "3/min",
            "auth": "2/min",
        },
    }
    statuses = [anon_client.get("/api/v1/tracks/").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    cache.clear()
    for _ in range(2):
        anon_client.post("/api/v1/auth/token/", {"username": "x", "password": "y"})
    assert_error(anon_client.post("/api/v1/auth/token/", {"username": "x", "password": "y"}), 429, "throttled")
    cache.clear()


def test_upload_of_a_dense_midi_is_refused_and_stores_nothing(staff_client, media_files):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from catalog.models import Track
    from tests.catalog.test_midi import dense_midi

    data = dense_midi()
    assert len(data) <= 1024 * 1024
    response = staff_client.post(
        "/api/v1/tracks/", {"file": SimpleUploadedFile("dense.mid", data, "audio/midi")}, format="multipart"
    )
    assert_error(response, 400, "too_many_notes")
    assert Track.objects.count() == 0 and media_files() == []
