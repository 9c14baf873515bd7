"""Throttles against a real Redis that goes away, a forged X-Forwarded-For, and the admin's log-in page."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time

import pytest
from django.core.cache import cache
from django.test import Client

from config.throttling import cache_breaker
from tests.catalog.test_api import assert_error

pytestmark = pytest.mark.django_db

SIGN_IN = {"username": "nobody", "password": "wrong-password"}


@pytest.fixture(autouse=True)
def fresh_counters():
    cache_breaker.reset()
    yield
    cache_breaker.reset()


def _rates(settings, **rates):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
    }


def _redis_cache(settings, url: str):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- 1: Redis outage ---


def _assert_outage_policy(user_client, caplog=None):
    anon = Client()
    assert anon.get("/api/v1/tracks/").status_code == 200  # reads: open
    assert user_client.get("/api/v1/me/").status_code == 200  # signed-in users: open
    assert user_client.get("/api/v1/generations/").status_code == 200
    refused = anon.post("/api/v1/auth/token/", SIGN_IN, "application/json")  # sign-in: closed
    assert_error(refused, 503, "throttle_unavailable")
    assert int(refused["Retry-After"]) > 0
    admin = anon.post("/admin/login/", SIGN_IN)
    assert admin.status_code == 503 and admin["Content-Type"].startswith("text/html")


def test_redis_down_general_throttles_let_requests_through_sign_in_is_refused(user_client, settings, caplog):
    _redis_cache(settings, f"redis://127.0.0.1:{_free_port()}/0")  # nothing listens there
    with caplog.at_level(logging.ERROR, logger="refrain.throttling"):
        _assert_outage_policy(user_client)
    outage_logs = [r for r in caplog.records if r.name == "refrain.throttling"]
    assert len(outage_logs) == 1 and "unreachable" in outage_logs[0].getMessage()  # once, not per request


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_a_private_redis_server_that_stops_and_comes_back(user_client, settings, tmp_path, caplog):
    port = _free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    command += ["--dir", str(tmp_path)]

    def start():
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return process
            except OSError:
                time.sleep(0.05)
        process.kill()
        pytest.fail("redis-server did not start")

    _redis_cache(settings, f"redis://127.0.0.1:{port}/0")
    _rates(settings, anon="3/min", auth="2/min")
    settings.THROTTLE_CACHE_RETRY_SECONDS = 0  # ask the cache again at once once it is back
    server = start()
    try:
        anon = Client()
        assert [anon.get("/api/v1/tracks/").status_code for _ in range(4)] == [200, 200, 200, 429]
        server.terminate()
        server.wait(timeout=10)
        assert [anon.get("/api/v1/tracks/").status_code for _ in range(5)] == [200] * 5  # open while down
        _assert_outage_policy(user_client)
        server = start()  # back, empty: counting resumes
        with caplog.at_level(logging.WARNING, logger="refrain.throttling"):
            assert [anon.get("/api/v1/tracks/").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert [r.getMessage() for r in caplog.records if r.name == "refrain.throttling"][-1].startswith(
            "Throttle cache reachable again"
        )
        statuses = [anon.post("/api/v1/auth/token/", SIGN_IN, "application/json").status_code for _ in range(3)]
        assert statuses == [400, 400, 429]
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- 3: forged X-Forwarded-For, the admin's log-in page ---


def test_a_forged_x_forwarded_for_does_not_reset_the_sign_in_budget(settings):
    cache.clear()
    _rates(settings, auth="2/min")
    client = Client()
    statuses = [
        client.post("/api/v1/auth/token/", SIGN_IN, "application/json", HTTP_X_FORWARDED_FOR=f"10.9.8.{n}").status_code
        for n in range(3)
    ]
    assert statuses == [400, 400, 429]
    cache.clear()


def test_behind_one_proxy_the_address_it_appended_counts(settings):
    cache.clear()
    _rates(settings, auth="2/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = Client()

    def sign_in(forged: str, real: str) -> int:
        forwarded = f"{forged}, {real}"
        return client.post(
            "/api/v1/auth/token/", SIGN_IN, "application/json", HTTP_X_FORWARDED_FOR=forwarded
        ).status_code

    assert [sign_in(f"1.1.1.{n}", "203.0.113.7") for n in range(3)] == [400, 400, 429]
    assert sign_in("1.1.1.1", "203.0.113.8") == 400  # another client behind the same proxy
    cache.clear()


def test_admin_log_in_is_throttled_with_the_api_sign_in(settings):
    cache.clear()
    _rates(settings, auth="3/min")
    client = Client()
    assert client.post("/api/v1/auth/token/", SIGN_IN, "application/json").status_code == 400
    assert [client.post("/admin/login/", SIGN_IN).status_code for _ in range(2)] == [200, 200]  # form again
    refused = client.post("/admin/login/", SIGN_IN)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert refused["Content-Type"].startswith("text/html")
    assert client.get("/admin/login/").status_code == 200  # the page itself is not counted
    cache.clear()


def test_healthz_answers_while_the_cache_is_down(settings):
    _redis_cache(settings, f"redis://127.0.0.1:{_free_port()}/0")
    response = Client(raise_request_exception=False).get("/healthz")
    assert response.status_code == 200 and response.json()["checks"]["database"] == "ok"
