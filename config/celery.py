"""The Celery app; configuration comes from Django settings (CELERY_* names)."""

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("refrain")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# Options of every task that must survive a dead worker: acknowledged only when done, given back
# when the worker dies, retried only for transient database errors (the tasks are idempotent).
# Celery's settings already make acks_late and reject_on_worker_lost the default; saying it on the
# task keeps it true even where a deployment changes those defaults.
def durable_task_options() -> dict:
    from django.db import InterfaceError, OperationalError

    return {
        "acks_late": True,
        "reject_on_worker_lost": True,
        "autoretry_for": (OperationalError, InterfaceError),
        "retry_backoff": True,
        "max_retries": 5,
        "ignore_result": True,
    }


def enqueue(task, *args, recovery: str, countdown: float | None = None, **kwargs) -> bool:
    """Send a task, or log why it could not be sent and what recovers it; True when sent.

    For messages sent after a write is committed: a broker outage must not turn that write into an
    error (the database keeps the truth, and `recovery` names what catches the work up later).
    """
    try:
        if countdown is None:
            task.delay(*args, **kwargs)
        else:
            task.apply_async(args, kwargs, countdown=countdown)
        return True
    except Exception:
        logging.getLogger(__name__).exception("Could not enqueue %s%s; %s", task.name, args, recovery)
        return False


def worker_queues(app) -> set[str]:
    """The queues a starting worker consumes (empty when not known, e.g. outside a worker)."""
    try:
        return set(app.amqp.queues.consume_from or ())
    except AttributeError:
        return set()
