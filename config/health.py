"""GET /healthz: is the database reachable, is the broker reachable."""

from __future__ import annotations

import contextlib
import time

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from config.celery import app


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001 - any driver error means "down"
        return f"{type(exc).__name__}: {exc}"


def _check_broker() -> str | None:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return None
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
        return f"{type(exc).__name__}: {exc}"


def gpu_queue_workers() -> list[str] | None:
    """Names of the workers consuming the `gpu` queue (None when the broker cannot be asked).

    A broadcast costs up to a second, so the answer is cached briefly.
    """
    try:
        cached = cache.get("healthz:gpu-workers")
    except Exception:  # noqa: BLE001 (the cache is down: ask the broker; the throttles log the outage)
        cached = None
    if cached is not None:
        return cached
    try:
        replies = app.control.inspect(timeout=1.0).active_queues() or {}
    except Exception:  # noqa: BLE001 (the cache is down: ask the broker; the throttles log the outage)
        return None
    workers = sorted(name for name, queues in replies.items() if any(q.get("name") == "gpu" for q in queues))
    with contextlib.suppress(Exception):
        cache.set("healthz:gpu-workers", workers, 15)
    return workers


def healthz(request):
    """200 when the database and the broker answer; also says which workers can generate."""
    started = time.perf_counter()
    checks = {"database": _check_database(), "broker": _check_broker()}
    ok = all(error is None for error in checks.values())
    workers = gpu_queue_workers() if checks["broker"] is None else None
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {name: ("ok" if error is None else error) for name, error in checks.items()},
        "gpu_queue": {"consumed": bool(workers), "workers": workers or []},
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return JsonResponse(body, status=200 if ok else 503)
