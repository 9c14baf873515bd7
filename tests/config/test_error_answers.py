"""Bad input, vanished files, unknown URLs, bugs and a dead database answer in the API's error shape
under /api/ (HTML on the admin's pages), never a 500 for bad input."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test import Client

from tests.catalog.test_api import assert_error

pytestmark = pytest.mark.django_db


# --- 2: deeply nested JSON ---


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(user_client, staff_client, track_factory, depth):
    body = "[" * depth + "]" * depth  # depth 1,000 is 2 KB
    track = track_factory()
    answers = [
        user_client.generic("PUT", f"/api/v1/tracks/{track.pk}/rating/", body, content_type="application/json"),
        staff_client.generic("PATCH", f"/api/v1/tracks/{track.pk}/", body, content_type="application/json"),
        user_client.generic("POST", "/api/v1/generations/", body, content_type="application/json"),
        Client().generic("POST", "/api/v1/auth/token/", body, content_type="application/json"),
        Client().generic("POST", "/api/v1/auth/register/", '{"username": ' + body + "}", "application/json"),
    ]
    for response in answers:
        error = assert_error(response, 400, "parse_error")
        assert "nested too deeply" in error["message"]


def test_moderately_nested_json_is_still_read(user_client, track_factory):
    track = track_factory()
    response = user_client.put(
        f"/api/v1/tracks/{track.pk}/rating/", {"score": [[[[4]]]]}, format="json"
    )  # read, then refused by the serializer as any wrong type is
    assert_error(response, 400, "invalid")


# --- 5: a file removed between the lookup and the read ---


def _removing_after_lookup(monkeypatch, track):
    """The real selector finds the track; then its file vanishes, as when a staff delete commits."""
    from catalog import selectors

    real = selectors.track_get

    def track_get(*, track_id):
        found = real(track_id=track_id)
        os.remove(found.midi_file.path)
        return found

    monkeypatch.setattr(selectors, "track_get", track_get)


def test_midi_download_racing_a_delete_is_a_404(anon_client, track_factory, monkeypatch):
    track = track_factory()
    _removing_after_lookup(monkeypatch, track)
    assert_error(anon_client.get(f"/api/v1/tracks/{track.pk}/midi/"), 404, "not_found")


@pytest.mark.parametrize("range_header", [None, "bytes=0-9"])
def test_pianoroll_racing_a_delete_is_a_404(anon_client, track_factory, monkeypatch, range_header):
    from catalog import services

    track = track_factory()
    real = services.track_pianoroll_ensure

    def ensure(**kwargs):
        image = real(**kwargs)
        os.remove(image.path)
        return image

    monkeypatch.setattr(services, "track_pianoroll_ensure", ensure)
    headers = {"HTTP_RANGE": range_header} if range_header else {}
    assert_error(anon_client.get(f"/api/v1/tracks/{track.pk}/pianoroll.png", **headers), 404, "not_found")


def test_ranged_file_response_of_a_vanished_file(rf, track_factory):
    from config.http import ranged_file_response

    track = track_factory()
    os.remove(track.midi_file.path)
    for headers in ({}, {"HTTP_RANGE": "bytes=5-"}):
        response = ranged_file_response(rf.get("/", **headers), track.midi_file, content_type="audio/midi", etag="x")
        assert response.status_code == 404
        assert json.loads(response.content)["error"]["code"] == "not_found"


# --- 6: unknown URLs and uncaught errors ---


def test_unknown_api_url_is_a_json_404(anon_client):
    assert_error(anon_client.get("/api/v1/no-such-thing/"), 404, "not_found")
    assert_error(anon_client.get("/api/v2/tracks/"), 404, "not_found")


def test_unknown_url_answers_json_to_a_json_client_and_html_to_a_browser():
    client = Client()
    assert_error(client.get("/no-such-page", HTTP_ACCEPT="application/json"), 404, "not_found")
    page = client.get("/no-such-page", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_a_bug_in_an_api_view_is_a_json_500(monkeypatch):
    from catalog import selectors

    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "track_list", broken)
    response = Client(raise_request_exception=False).get("/api/v1/tracks/")
    error = assert_error(response, 500, "server_error")
    assert "a bug" not in error["message"]  # no internals leak


def test_a_bug_behind_a_page_is_an_html_500(monkeypatch, staff):
    from django.contrib.admin import AdminSite

    def broken(self, request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(AdminSite, "each_context", broken)
    client = Client(raise_request_exception=False)
    client.force_login(staff)
    response = client.get("/admin/")
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")


# --- 4: the database is down ---


@contextmanager
def database_down():
    """Point the real connection at nothing: a closed port (PostgreSQL) or a folder that does not exist
    (SQLite). Every query until the end of the block fails to connect, as in an outage."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-refrain-dir/db.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=1)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
def test_database_outage_is_a_503_in_the_error_shape(staff, settings):
    from rest_framework.authtoken.models import Token

    settings.REFRAIN_DATABASE_RETRY_AFTER = 17
    token = Token.objects.create(user=staff).key
    browser = Client(raise_request_exception=False)
    browser.force_login(staff)
    api = Client(raise_request_exception=False)
    with database_down():
        answers = {
            "anonymous list": api.get("/api/v1/tracks/"),
            "token auth": api.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {token}"),
            "sign-in": api.post("/api/v1/auth/token/", {"username": "a", "password": "b"}, "application/json"),
            "session on an API URL": browser.get("/api/v1/me/"),
        }
        admin_page = browser.get("/admin/catalog/track/")
    for what, response in answers.items():
        error = assert_error(response, 503, "database_unavailable")
        assert response["Retry-After"] == "17", what
        assert "try again" in error["message"]
    assert admin_page.status_code == 503 and admin_page["Content-Type"].startswith("text/html")
    assert admin_page["Retry-After"] == "17"
    # and back to normal once it is reachable again
    assert Client().get("/api/v1/tracks/").status_code == 200


def test_schema_documents_the_outage_and_throttle_answers(anon_client):
    schema = anon_client.get("/api/schema/?format=json").json()
    assert set(schema["components"]["schemas"]["Error"]["properties"]["error"]["properties"]) >= {
        "status",
        "code",
        "message",
    }
    for path in ("/api/v1/tracks/", "/api/v1/auth/token/", "/api/v1/generations/"):
        for operation in schema["paths"][path].values():
            assert {"429", "503"} <= set(operation["responses"]), path
            assert "Retry-After" in operation["responses"]["503"]["headers"]
    audio = schema["paths"]["/api/v1/tracks/{track_id}/audio/"]["get"]["responses"]["503"]
    assert "rendered" in audio["description"]  # an endpoint's own 503 is kept
