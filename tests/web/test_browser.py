"""The pages in a real browser (Playwright driving the system Chromium, headless) against a live
server, with a real Celery worker for generation, embeddings and audio: what a listener does.

Screenshots of every page land in the test's folder and in /tmp/refrain-screens/ for review.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from catalog import services as catalog_services
from tests.web.conftest import clustered

CHROMIUM = os.environ.get("REFRAIN_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENS = Path("/tmp/refrain-screens")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (make browser-deps installs it)"
)


@pytest.fixture
def browser(monkeypatch):
    """Chromium with a fresh profile (Playwright makes a temporary user-data-dir per launch); each
    test opens contexts on it. Playwright's sync API runs an event loop in this thread, which
    Django's ORM mistakes for async code: the test's own queries are synchronous."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def new_page(browser, **options):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
    context.set_default_timeout(20_000)
    return context.new_page()


@pytest.fixture
def shoot(tmp_path, request):
    SCREENS.mkdir(exist_ok=True)

    def save(page, name: str) -> None:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, SCREENS / f"{request.node.name}-{name}.png")

    return save


def catalog_of_two_collections(model_version, embedded, per: int = 10):
    """Tracks of two collections that lie apart in the latent space (chosen embeddings), their audio
    not rendered yet (a real catalog's bulk import renders on first listen)."""
    from tests.conftest import make_midi

    north, south = [], []
    for i in range(per):
        north.append(
            catalog_services.track_ingest(
                midi_bytes=make_midi([72 + i % 5, 74, 76, 79, 77 - i % 3] * 4, step=0.25),
                title=f"North tune {i}",
                collection="north",
                process=False,
            ).track
        )
        south.append(
            catalog_services.track_ingest(
                midi_bytes=make_midi([48 + i % 5, 50, 52, 47, 45 + i % 3] * 4, step=0.5),
                title=f"South tune {i}",
                collection="south",
                process=False,
            ).track
        )
    embedded(
        {t: clustered(16, 0, i) for i, t in enumerate(north)}
        | {t: clustered(16, 1, 99 + i) for i, t in enumerate(south)}
    )
    return north, south


def sign_up(page, base: str, name: str) -> None:
    page.goto(f"{base}/sign-up/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill("tunes-in-the-valley-7")
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url(f"{base}/")


def feed_collections(page, base: str, n: int = 5) -> list[str]:
    page.goto(f"{base}/?kind=recommended")
    return page.locator("#feed article.card").evaluate_all(f"els => els.slice(0, {n}).map(e => e.dataset.collection)")


def wait_for_job_page(page, worker, timeout_ms: int = 120_000) -> None:
    """Wait for the job page to show its job done; on a timeout, say what the job and the worker were
    doing (a run of the whole suite on SQLite once timed out here, with nothing to tell why)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from generation.models import GenerationJob

    try:
        page.locator('#job[data-status="done"]').wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        jobs = list(GenerationJob.objects.order_by("-pk").values("pk", "kind", "status", "error")[:3])
        raise AssertionError(f"job page not done; latest jobs {jobs}; worker log:\n{worker.log()[-3000:]}") from None


@pytest.mark.worker
def test_a_listener_rates_generates_listens_and_sees_their_taste(
    live_server, browser, shoot, start_worker, model_version, embedded, settings
):
    settings.REFRAIN_AUDIO_RETRY_AFTER = 1  # the spinner asks again every second
    north, south = catalog_of_two_collections(model_version, embedded)
    worker = start_worker(REFRAIN_FEED_GENERATED_TARGET="0")  # no background top-up jobs in this test
    base = live_server.url
    page = new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    sign_up(page, base, "walker")
    before = feed_collections(page, base)
    shoot(page, "1-feed-cold-start")

    # Rate five tracks of the north with one click each, from the browse page (filtered by collection).
    page.goto(f"{base}/browse/?collection=north&ordering=title")
    page.wait_for_load_state("networkidle")
    shoot(page, "2-browse-north")
    rated = []
    for card in page.locator("article.card").all()[:5]:
        title = card.locator("h3 a").inner_text()
        card.get_by_role("button", name=f"Rate {title} 5 out of 5").click()
        card.get_by_text("Saved: 5/5").wait_for()
        rated.append(int(card.get_attribute("data-track-id")))
    assert page.url.endswith("ordering=title")  # rated in place, no navigation

    after = feed_collections(page, base)
    shoot(page, "3-feed-after-rating")
    assert after.count("north") == 5, (before, after)
    assert after.count("north") > before.count("north"), (before, after)
    reason = page.locator("#feed article.card .reason").first.inner_text()
    assert "which you rated 5" in reason

    # The next page follows a rating made on this one, without a reload: the rated card is not offered again.
    page.evaluate("window.__still_here = true")
    first_card = page.locator("#feed article.card").first
    first_id = int(first_card.get_attribute("data-track-id"))
    first_title = first_card.locator("h3 a").inner_text()
    first_card.get_by_role("button", name=f"Rate {first_title} 4 out of 5").click()
    first_card.get_by_text("Saved: 4/5").wait_for()
    cards_before = page.locator("#feed article.card").count()
    page.get_by_role("link", name="More tunes").click()
    page.wait_for_function(f"document.querySelectorAll('#feed article.card').length > {cards_before}")
    ids = page.locator("#feed article.card").evaluate_all("els => els.map(e => +e.dataset.trackId)")
    assert ids.count(first_id) == 1 and len(ids) == len(set(ids))
    assert page.evaluate("window.__still_here === true")

    # "More like this" from a track page: the job's page shows live progress, then its tracks.
    page.goto(f"{base}/tracks/{north[7].pk}/")
    shoot(page, "4-track")
    page.get_by_role("button", name="More like this").click()
    page.wait_for_url("**/make/jobs/*/")
    page.evaluate("window.__still_here = true")
    wait_for_job_page(page, worker)
    assert page.evaluate("window.__still_here === true")  # htmx polling, not a reload
    generated = page.locator("#job article.card")
    assert generated.count() == 3
    assert generated.first.locator(".tag").inner_text() == "generated"

    # Press play: the spinner gives way to a player once the worker has rendered the audio, and it plays.
    audio = generated.first.locator("audio")
    audio.wait_for(timeout=120_000)
    shoot(page, "5-job-done")
    box = audio.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + box["height"] / 2)  # the play button of the native controls
    page.wait_for_function("a => a.currentTime > 0.5", arg=audio.element_handle(), timeout=30_000)
    assert not page.evaluate("document.querySelector('#job audio').paused")

    # The taste map shows the rated tracks (and the generated ones) on the catalog's cloud.
    page.goto(f"{base}/taste/")
    for track_id in rated:
        assert page.locator(f'.mine a[data-kind="liked"][data-track-id="{track_id}"]').count() == 1
    assert page.locator('.mine a[data-kind="generated"]').count() == 3
    assert page.locator(".cloud a").count() == 2 * len(north)  # the catalog; generated tracks are drawn on top
    liked = page.locator('.mine a[data-kind="liked"]').first
    liked.focus()
    assert page.locator("#map-caption").inner_text().startswith("Liked: North tune")
    shoot(page, "6-taste-map")
    liked.click()
    page.wait_for_url("**/tracks/*/")

    page.goto(f"{base}/make/jobs/")
    shoot(page, "7-my-generations")
    page.goto(f"{base}/make/")
    shoot(page, "8-make-music")
    assert not errors, errors
    assert "Traceback" not in worker.log()


def test_keyboard_alone_reaches_the_rating_buttons_and_browsing_works_without_javascript(
    live_server, browser, shoot, user, track_factory
):
    for i in range(3):
        track_factory(title=f"Keyed {i}", collection="essen", process=False)
    base = live_server.url
    page = new_page(browser)
    page.goto(f"{base}/sign-in/")
    page.keyboard.type("listener")  # the username field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type("a-long-passphrase-1")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/browse/?ordering=title")
    shoot(page, "browse-keyboard")
    for presses in range(1, 60):
        page.keyboard.press("Tab")
        label = page.evaluate("document.activeElement.getAttribute('aria-label') || ''")
        if label.startswith("Rate ") and "out of 5" in label:
            break
    else:
        pytest.fail("no rating button is reachable with the Tab key")
    assert label == "Rate Keyed 0 1 out of 5"
    # the focus is visible: an outline is drawn around the focused button
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # 4 out of 5
    page.get_by_text("Saved: 4/5").wait_for()

    # Without JavaScript: filters are a plain form, pages plain links, rating a plain form post.
    plain_page = new_page(browser, java_script_enabled=False)
    plain_page.goto(f"{base}/browse/")
    plain_page.get_by_label("Search").fill("Keyed 2")
    plain_page.get_by_role("button", name="Show tunes").click()
    plain_page.wait_for_url("**/browse/?*search=Keyed+2*")
    assert plain_page.locator("article.card h3 a").all_inner_texts() == ["Keyed 2"]
    shoot(plain_page, "browse-no-javascript")
