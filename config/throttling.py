"""Throttles that survive an outage of the cache holding their counters (Redis, by CACHE_URL).

DRF's throttles read and write the cache on every request and let its errors through, so a Redis
outage answered every API call with a 500. The policy (README, "Policies"):

- the general throttles (`anon`, `user`, and scopes such as `generation`) fail **open**: they exist to
  share capacity fairly, and losing the counters for a while must not take the whole API down with them
  (Envoy's global rate limiter does the same by default: `failure_mode_deny: false`);
- the scopes in THROTTLE_FAIL_CLOSED_SCOPES (default `auth`: sign-in, token, registration, admin log-in)
  fail **closed** with a 503 and Retry-After: without counters a password could be guessed at full
  speed, and a person who cannot sign in for a minute loses little (django-ratelimit fails closed by
  default for the same reason).

Either way the outage is logged (once per back-off window, not once per request). After a failure the
cache is left alone for THROTTLE_CACHE_RETRY_SECONDS, so an outage that times out instead of refusing
costs one timeout per window and process, not one per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from types import SimpleNamespace

from django.conf import settings
from rest_framework import exceptions, throttling
from rest_framework.settings import api_settings

from config.responses import error_response

logger = logging.getLogger("refrain.throttling")


class ThrottleUnavailable(exceptions.APIException):
    """A fail-closed throttle cannot count: refuse for now (503, Retry-After)."""

    status_code = 503
    default_code = "throttle_unavailable"
    default_detail = "This is briefly refused: the request counter cannot be reached. Try again in a few seconds."

    def __init__(self, wait: int):
        super().__init__()
        self.wait = wait  # DRF's exception handler turns `wait` into Retry-After


class CacheBreaker:
    """Remembers, per process, that the throttle cache failed: until when to leave it alone, and whether
    the outage has been logged (once when it starts, once when it ends)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down = False

    @property
    def retry_seconds(self) -> int:
        return int(getattr(settings, "THROTTLE_CACHE_RETRY_SECONDS", 5))

    def is_open(self) -> bool:
        return time.monotonic() < self._down_until

    def trip(self, exc: Exception) -> None:
        with self._lock:
            first, self._down = not self._down, True
            self._down_until = time.monotonic() + self.retry_seconds
        if first:
            logger.error(
                "Throttle cache unreachable (%s: %s): general throttles let requests through, %s refuse "
                "them until it answers; asking it again every %d s.",
                type(exc).__name__,
                exc,
                "/".join(fail_closed_scopes()) or "no scope",
                self.retry_seconds,
            )

    def succeeded(self) -> None:
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                logger.warning("Throttle cache reachable again: throttling as configured.")

    def reset(self) -> None:
        with self._lock:
            self._down_until, self._down = 0.0, False


cache_breaker = CacheBreaker()


def fail_closed_scopes() -> list[str]:
    return list(getattr(settings, "THROTTLE_FAIL_CLOSED_SCOPES", ["auth"]))


class FailSafeThrottleMixin:
    """For DRF's SimpleRateThrottle subclasses: rates read when asked (so settings overrides in tests and
    the environment apply), and the outage policy above."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if cache_breaker.is_open():
            return self._cache_down(request, view)
        try:
            return super().allow_request(request, view)
        except exceptions.APIException:
            raise
        except Exception as exc:  # noqa: BLE001 (redis ConnectionError, TimeoutError, OSError...: the cache is down)
            cache_breaker.trip(exc)
            return self._cache_down(request, view)

    # DRF calls one of these two once the cache has answered (not for requests it never counts).
    def throttle_success(self):
        allowed = super().throttle_success()
        cache_breaker.succeeded()
        return allowed

    def throttle_failure(self):
        cache_breaker.succeeded()
        return super().throttle_failure()

    def _cache_down(self, request, view) -> bool:
        if self.scope in fail_closed_scopes():
            raise ThrottleUnavailable(wait=max(1, cache_breaker.retry_seconds))
        return True


class AnonThrottle(FailSafeThrottleMixin, throttling.AnonRateThrottle):
    pass


class UserThrottle(FailSafeThrottleMixin, throttling.UserRateThrottle):
    pass


class ScopedThrottle(FailSafeThrottleMixin, throttling.ScopedRateThrottle):
    """Per-view scope (`throttle_scope = "generation"`, `"auth"`)."""

    def allow_request(self, request, view):
        self.scope = getattr(view, self.scope_attr, None)  # known before the cache is asked (outage policy)
        return super().allow_request(request, view)


class AdminLoginThrottleMiddleware:
    """Sign-in attempts on the admin's log-in page count against the same `auth` budget (per client
    address, with the same cache and outage policy) as the API's token and registration endpoints;
    without it the admin page was an unthrottled way to guess passwords."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST":
            from django.urls import NoReverseMatch, reverse

            try:
                login_path = reverse("admin:login")
            except NoReverseMatch:
                login_path = None
            if request.path == login_path:
                refused = scope_refusal(request, "auth")
                if refused is not None:
                    return refused
        return self.get_response(request)


def scope_refusal(request, scope: str):
    """A plain Django view's throttle check for `scope`, counted in the API's budget for it (per user,
    else per client address) with the same outage policy: None when allowed, else the 429 (or the
    503 of a fail-closed scope whose cache is down) to answer. The admin's and the web pages' sign-in
    forms and the pages' generation form use it."""
    throttle = ScopedThrottle()
    try:
        if throttle.allow_request(request, SimpleNamespace(throttle_scope=scope)):
            return None
    except ThrottleUnavailable as exc:
        return error_response(request, 503, exc.default_code, str(exc.detail), headers={"Retry-After": str(exc.wait)})
    wait = math.ceil(throttle.wait() or 1)
    what = "sign-in attempts" if scope == "auth" else "requests"
    return error_response(
        request, 429, "throttled", f"Too many {what}; try again in {wait} s.", headers={"Retry-After": str(wait)}
    )
