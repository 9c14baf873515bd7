"""The pages with Django's test client: who may see what, CSRF, and bad input as a 4xx page, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog.models import Rating, TrackMedia
from generation.models import GenerationJob
from tests.web.conftest import clustered

pytestmark = pytest.mark.django_db

SIGNED_IN_ONLY = ["/taste/", "/make/", "/make/jobs/"]


@pytest.mark.parametrize("path", SIGNED_IN_ONLY)
def test_pages_that_need_an_account_send_visitors_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/sign-in/?next=")


def test_visitors_see_a_welcome_and_can_browse_and_open_a_track(client, track_factory):
    track = track_factory(title="Open Tune", collection="essen")
    home = client.get("/")
    assert home.status_code == 200 and b"Sign up" in home.content and b"Your feed" in home.content
    browse = client.get("/browse/")
    assert browse.status_code == 200 and b"Open Tune" in browse.content
    page = client.get(f"/tracks/{track.pk}/")
    assert page.status_code == 200
    assert f"/api/v1/tracks/{track.pk}/midi/".encode() in page.content
    assert b"Sign in</a> to rate" in page.content and b"More like this" not in page.content


def test_rating_needs_an_account_and_htmx_is_sent_to_sign_in_as_a_whole_page(client, track_factory):
    track = track_factory()
    assert client.post(f"/tracks/{track.pk}/rating/", {"score": 5})["Location"].startswith("/sign-in/")
    response = client.post(f"/tracks/{track.pk}/rating/", {"score": 5}, headers={"HX-Request": "true"})
    assert response.status_code == 204 and response["HX-Redirect"].startswith("/sign-in/")
    assert not Rating.objects.exists()


def test_sign_up_makes_an_api_account_and_signs_in(client):
    response = client.post("/sign-up/", {"username": "newcomer", "password": "tunes-in-the-valley-7", "email": ""})
    assert response.status_code == 302 and response["Location"] == "/"
    from catalog.models import User

    user = User.objects.get(username="newcomer")
    assert user.auth_token.key  # the same account as the API's, token included
    assert client.get("/").context["user"] == user
    # the API accepts the same credentials
    api = Client().post("/api/v1/auth/token/", {"username": "newcomer", "password": "tunes-in-the-valley-7"})
    assert api.status_code == 200


@pytest.mark.parametrize(
    "data, field",
    [
        ({"username": "listener", "password": "tunes-in-the-valley-7"}, b"That username is taken."),
        ({"username": "x", "password": "tunes-in-the-valley-7"}, b"u-err"),
        ({"username": "fresh-one", "password": "password"}, b"p-err"),
        ({"username": "fresh-two", "password": "12345678901"}, b"p-err"),
    ],
)
def test_sign_up_refuses_bad_input_with_a_400_naming_the_field(client, user, data, field):
    response = client.post("/sign-up/", {"email": "", **data})
    assert response.status_code == 400
    assert field in response.content


def test_sign_in_and_out(client, user):
    wrong = client.post("/sign-in/", {"username": "listener", "password": "nope"})
    assert wrong.status_code == 400 and b"wrong password" in wrong.content
    right = client.post("/sign-in/", {"username": "listener", "password": "a-long-passphrase-1", "next": "/browse/"})
    assert right.status_code == 302 and right["Location"] == "/browse/"
    assert client.get("/taste/").status_code != 302
    assert client.get("/sign-out/").status_code == 405  # only a POST signs out (no sign-out by a link in a page)
    assert client.post("/sign-out/").status_code == 302
    assert client.get("/taste/").status_code == 302


def test_sign_in_never_redirects_off_site(client, user):
    response = client.post(
        "/sign-in/", {"username": "listener", "password": "a-long-passphrase-1", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_forms_need_the_csrf_token(user, track_factory):
    track = track_factory()
    client = Client(enforce_csrf_checks=True)
    assert client.post("/sign-in/", {"username": "listener", "password": "a-long-passphrase-1"}).status_code == 403
    client.force_login(user)
    assert client.post(f"/tracks/{track.pk}/rating/", {"score": 4}).status_code == 403
    assert client.post("/make/", {"kind": "sample"}).status_code == 403
    assert not Rating.objects.exists() and not GenerationJob.objects.exists()
    # with the token from the page it goes through
    page = client.get(f"/tracks/{track.pk}/")
    token = page.context["csrf_token"]
    assert (
        client.post(f"/tracks/{track.pk}/rating/", {"score": 4, "csrfmiddlewaretoken": str(token)}).status_code == 302
    )


def test_sign_in_attempts_count_against_the_api_sign_in_budget(client, user, settings):
    from config.throttling import ScopedThrottle

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "2/min"}}
    ScopedThrottle.THROTTLE_RATES = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    try:
        codes = [client.post("/sign-in/", {"username": "listener", "password": "x"}).status_code for _ in range(3)]
    finally:
        from rest_framework.settings import api_settings

        ScopedThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    assert codes == [400, 400, 429]


def test_rating_with_one_click(page_client, user, track_factory):
    track = track_factory(title="Click Me")
    response = page_client.post(f"/tracks/{track.pk}/rating/", {"score": "5", "next": "/browse/"})
    assert response.status_code == 302 and response["Location"] == "/browse/"
    assert Rating.objects.get(user=user, track=track).score == 5
    partial = page_client.post(f"/tracks/{track.pk}/rating/", {"score": "2"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert b"Saved: 2/5" in partial.content and b"<html" not in partial.content
    assert b'aria-pressed="true" aria-label="Rate Click Me 2 out of 5"' in partial.content
    assert Rating.objects.get(user=user, track=track).score == 2


@pytest.mark.parametrize("score", ["0", "6", "five", "", "2.5"])
def test_a_bad_score_is_a_400(page_client, track_factory, score):
    track = track_factory()
    response = page_client.post(f"/tracks/{track.pk}/rating/", {"score": score})
    assert response.status_code == 400
    assert not Rating.objects.exists()


def test_unknown_things_are_404_pages(page_client):
    assert page_client.get("/tracks/999999/").status_code == 404
    assert page_client.post("/tracks/999999/rating/", {"score": 3}).status_code == 404
    assert page_client.get("/tracks/999999/player/").status_code == 404
    assert page_client.get("/make/jobs/999999/").status_code == 404
    assert page_client.get("/browse/?page=999").status_code == 404


@pytest.mark.parametrize("query", ["kind=nope", "page=abc", "page=0", "shown=x", "kind=mixed&page=-1"])
def test_bad_feed_parameters_are_a_400(page_client, query):
    assert page_client.get(f"/?{query}").status_code == 400


def test_the_feed_shows_tracks_with_reasons_players_and_rating(
    page_client, user, model_version, track_factory, embedded
):
    north = [track_factory(title=f"North {i}", collection="north") for i in range(6)]
    south = [track_factory(title=f"South {i}", collection="south") for i in range(6)]
    embedded(
        {t: clustered(16, 0, i) for i, t in enumerate(north)}
        | {t: clustered(16, 1, 50 + i) for i, t in enumerate(south)}
    )
    for t in north[:2]:
        page_client.post(f"/tracks/{t.pk}/rating/", {"score": 5})
    response = page_client.get("/?kind=recommended")
    assert response.status_code == 200
    cards = response.context["cards"]
    assert cards and [c.track.collection for c in cards[:3]] == ["north"] * 3
    assert all(c.track.pk not in {north[0].pk, north[1].pk} for c in cards)  # rated tracks are not offered
    assert "which you rated 5" in cards[0].reason
    html = response.content.decode()
    assert f"/tracks/{cards[0].track.pk}/player/" in html and "pianoroll.png?size=thumb" in html
    assert f'aria-label="Rate {cards[0].track.title} 5 out of 5"' in html


def test_the_next_page_reflects_a_new_rating(page_client, user, model_version, track_factory, embedded, settings):
    settings.REFRAIN_WEB_PAGE_SIZE = 3
    north = [track_factory(title=f"North {i}", collection="north") for i in range(8)]
    south = [track_factory(title=f"South {i}", collection="south") for i in range(8)]
    embedded(
        {t: clustered(16, 0, i) for i, t in enumerate(north)}
        | {t: clustered(16, 1, 50 + i) for i, t in enumerate(south)}
    )
    page_client.post(f"/tracks/{north[0].pk}/rating/", {"score": 5})
    first = page_client.get("/?kind=recommended").context["cards"]
    assert [c.track.collection for c in first] == ["north"] * 3
    shown = "&".join(f"shown={c.track.pk}" for c in first)
    # nothing rated since: "more" continues after what the page shows
    unchanged = page_client.get(f"/?kind=recommended&more=1&{shown}", headers={"HX-Request": "true"})
    assert not {c.track.pk for c in unchanged.context["cards"]} & {c.track.pk for c in first}
    assert len(unchanged.context["cards"]) == 3
    # the listener now loves the south and dislikes what the feed showed; "more" follows that at once
    for t in south[:3]:
        page_client.post(f"/tracks/{t.pk}/rating/", {"score": 5}, headers={"HX-Request": "true"})
    page_client.post(f"/tracks/{north[0].pk}/rating/", {"score": 1})
    more = page_client.get(f"/?kind=recommended&more=1&{shown}", headers={"HX-Request": "true"})
    assert more.status_code == 200 and b"<html" not in more.content
    cards = more.context["cards"]
    assert [c.track.collection for c in cards] == ["south"] * 3
    assert not {c.track.pk for c in cards} & {c.track.pk for c in first}
    assert b"More tunes" in more.content


def test_browse_applies_the_api_filters_search_and_ordering(client, track_factory):
    track_factory(title="Alpha Reel", collection="oneills1850", region="Irish")
    track_factory(title="Beta Waltz", collection="essen", region="German")
    track_factory(title="Gamma Reel", collection="essen", region="German", is_generated=True)
    titles = lambda query: [c.track.title for c in client.get(f"/browse/?{query}").context["cards"]]  # noqa: E731
    assert titles("collection=essen&ordering=title") == ["Beta Waltz", "Gamma Reel"]
    assert titles("search=reel&ordering=-title") == ["Gamma Reel", "Alpha Reel"]
    assert titles("region=Irish") == ["Alpha Reel"]
    assert titles("is_generated=true") == ["Gamma Reel"]
    assert titles("is_generated=false&ordering=title") == ["Alpha Reel", "Beta Waltz"]
    page = client.get("/browse/?collection=essen")
    assert b"<option selected>essen</option>" in page.content  # the menus keep the choice
    assert client.get("/browse/?page=x").status_code == 400


def test_browse_paginates_with_plain_links(client, track_factory, settings):
    settings.REFRAIN_WEB_PAGE_SIZE = 1  # two per page
    for i in range(5):
        track_factory(title=f"T{i}", collection="c")
    first = client.get("/browse/?collection=c&ordering=title")
    assert [c.track.title for c in first.context["cards"]] == ["T0", "T1"]
    assert b'href="?collection=c&amp;ordering=title&amp;page=2"' in first.content
    third = client.get("/browse/?collection=c&ordering=title&page=3")
    assert [c.track.title for c in third.context["cards"]] == ["T4"]


def test_the_player_spins_while_the_audio_is_rendered_then_plays(client, track_factory, settings):
    settings.REFRAIN_AUDIO_RETRY_AFTER = 2
    track = track_factory(process=False)
    pending = client.get(f"/tracks/{track.pk}/player/")
    assert pending.status_code == 200
    assert b'hx-trigger="load delay:2s"' in pending.content and b"spinner" in pending.content
    assert TrackMedia.objects.get(track=track).audio_status == "pending"  # the render was asked for
    TrackMedia.objects.filter(track=track).update(
        audio_status="ready", audio_file="tracks/audio/x.ogg", audio_source_hash=track.content_hash
    )
    ready = client.get(f"/tracks/{track.pk}/player/")
    assert f'<audio controls preload="none" src="/api/v1/tracks/{track.pk}/audio/"'.encode() in ready.content
    assert b"hx-trigger" not in ready.content  # no more polling


def test_track_page_offers_generation_buttons_and_similar_tracks(page_client, model_version, track_factory, embedded):
    tracks = [track_factory(title=f"N{i}") for i in range(4)]
    embedded({t: clustered(16, 0, i) for i, t in enumerate(tracks)})
    response = page_client.get(f"/tracks/{tracks[0].pk}/")
    html = response.content.decode()
    for label in ["More like this", "Denser", "Sparser", "Higher", "Lower", "More minor", "More major"]:
        assert f">{label}</button>" in html
    assert "Continue this tune" not in html  # the 16-bar VAE cannot continue a tune
    assert {c.track.pk for c in response.context["similar"]} == {t.pk for t in tracks[1:]}


def test_track_page_without_an_index_still_works(page_client, track_factory):
    track = track_factory()
    response = page_client.get(f"/tracks/{track.pk}/")
    assert response.status_code == 200 and response.context["similar_error"]


def test_steer_buttons_start_the_jobs_they_name(page_client, user, model_version, track_factory):
    track = track_factory()
    response = page_client.post(
        "/make/", {"kind": "steer", "track_id": track.pk, "attribute": "major_minor", "amount": "-1.5", "count": 2}
    )
    job = GenerationJob.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/make/jobs/{job.pk}/"
    assert (job.owner, job.kind, job.params["attribute"], job.params["amount"]) == (user, "steer", "major_minor", -1.5)
    assert job.params["track_ids"] == [track.pk]


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "sample", "temperature": "9"},
        {"kind": "sample", "count": "0"},
        {"kind": "sample", "count": "many"},
        {"kind": "unknown"},
        {"kind": "steer", "attribute": "loudness", "amount": "1"},
        {"kind": "interpolate", "track_ids": ["1"]},
        {},
    ],
)
def test_a_bad_generation_request_is_a_400_and_makes_no_job(page_client, model_version, data):
    response = page_client.post("/make/", data)
    assert response.status_code == 400
    assert not GenerationJob.objects.exists()


def test_an_interpolation_of_unknown_or_equal_tracks_is_refused_by_the_service(
    page_client, model_version, track_factory
):
    track = track_factory()
    same = page_client.post("/make/", {"kind": "interpolate", "track_ids": [track.pk, track.pk], "count": 2})
    unknown = page_client.post("/make/", {"kind": "interpolate", "track_ids": [track.pk, 987654], "count": 2})
    assert same.status_code == 400 and unknown.status_code == 400
    assert b"two different tracks" in same.content
    assert not GenerationJob.objects.exists()


def test_make_music_form_shows_only_fields_the_model_accepts(page_client, model_version):
    html = page_client.get("/make/").content.decode()
    assert 'name="temperature"' in html and 'name="count"' in html
    assert 'name="bars"' not in html and 'name="meter"' not in html  # the 16-bar VAE refuses them


def test_the_long_form_model_offers_length_meter_and_continue(page_client, longform_version, track_factory):
    html = page_client.get("/make/").content.decode()
    assert 'name="bars"' in html and 'name="meter"' in html and 'value="6/8"' in html
    track = track_factory()
    assert "Continue this tune" in page_client.get(f"/tracks/{track.pk}/").content.decode()
    response = page_client.post("/make/", {"kind": "sample", "count": 1, "bars": 8, "meter": "3/4"})
    assert response.status_code == 302
    job = GenerationJob.objects.get()
    assert job.params["bars"] == 8 and job.params["meter"] == "3/4"
    page_client.post("/make/", {"kind": "continue", "track_id": track.pk, "count": 1, "prompt_bars": 4, "bars": 16})
    assert GenerationJob.objects.filter(kind="continue").exists()


def test_a_job_page_polls_while_the_job_runs_and_is_private(page_client, user, other_user, model_version):
    page_client.post("/make/", {"kind": "sample", "count": 2, "temperature": "0.8"})
    job = GenerationJob.objects.get()
    running = page_client.get(f"/make/jobs/{job.pk}/")
    assert b'hx-trigger="every 1s"' in running.content and b'http-equiv="refresh"' in running.content
    GenerationJob.objects.filter(pk=job.pk).update(status="done", progress=100)
    done = page_client.get(f"/make/jobs/{job.pk}/")
    assert b'hx-trigger="every 1s"' not in done.content
    other = Client()
    other.force_login(other_user)
    assert other.get(f"/make/jobs/{job.pk}/").status_code == 404
    assert f"/make/jobs/{job.pk}/".encode() not in other.get("/make/jobs/").content
    assert f"/make/jobs/{job.pk}/".encode() in page_client.get("/make/jobs/").content


def test_the_taste_map_places_rated_tracks_over_the_catalog(page_client, model_version, track_factory, embedded):
    north = [track_factory(title=f"North {i}", collection="north") for i in range(5)]
    south = [track_factory(title=f"South {i}", collection="south") for i in range(5)]
    embedded(
        {t: clustered(16, 0, i) for i, t in enumerate(north)}
        | {t: clustered(16, 1, 50 + i) for i, t in enumerate(south)}
    )
    page_client.post(f"/tracks/{north[0].pk}/rating/", {"score": 5})
    page_client.post(f"/tracks/{south[0].pk}/rating/", {"score": 1})
    response = page_client.get("/taste/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-track-id="{north[0].pk}" data-kind="liked" aria-label="Liked: North 0: you rated it 5"' in html
    assert f'data-track-id="{south[0].pk}" data-kind="disliked"' in html
    points = {p.track_id: (p.x, p.y) for p in response.context["map"]["cloud"]}
    assert len(points) == 10

    # the two collections lie apart on the map, each closer to its own kind
    def spread(ids):
        return max(abs(points[a][0] - points[b][0]) + abs(points[a][1] - points[b][1]) for a in ids for b in ids)

    between = min(
        abs(points[a.pk][0] - points[b.pk][0]) + abs(points[a.pk][1] - points[b.pk][1]) for a in north for b in south
    )
    assert between > 0.5 * max(spread([t.pk for t in north]), spread([t.pk for t in south]))


def test_taste_map_without_a_model_is_a_503_page(page_client):
    response = page_client.get("/taste/")
    assert response.status_code == 503 and b"No map yet" in response.content
