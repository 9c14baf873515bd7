"""Domain events delivered on commit: how a lower app tells higher ones that something happened.

The producer (catalog, generation) declares an event in its own `events.py` and sends it; it never
imports who listens. A consumer (recommend) connects a receiver in its `AppConfig.ready()`; the
receiver only enqueues a task. Delivery waits for the surrounding transaction to commit (Django's
`transaction.on_commit`, as Zulip's `send_event_on_commit` and Saleor's webhooks do), so a rolled-back
write announces nothing, and a receiver that fails is logged without undoing the committed write or
keeping the other receivers from theirs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)

Receiver = Callable[..., None]


class DomainEvent:
    """A named event with keyword payloads and the receivers connected to it."""

    def __init__(self, name: str, *, payload: tuple[str, ...]) -> None:
        self.name = name
        self.payload = payload
        self._receivers: dict[str, Receiver] = {}

    def __repr__(self) -> str:
        return f"<DomainEvent {self.name}>"

    def connect(self, receiver: Receiver, *, dispatch_uid: str | None = None) -> Receiver:
        """Connect a receiver (once per dispatch_uid: AppConfig.ready() may run twice in tests)."""
        uid = dispatch_uid or f"{receiver.__module__}.{receiver.__qualname__}"
        self._receivers[uid] = receiver
        return receiver

    def disconnect(self, *, dispatch_uid: str) -> None:
        self._receivers.pop(dispatch_uid, None)

    @property
    def receivers(self) -> list[Receiver]:
        return list(self._receivers.values())

    def send_on_commit(self, **payload: Any) -> None:
        """Deliver to every receiver once the current transaction commits (at once outside one)."""
        missing = set(self.payload) - set(payload)
        unknown = set(payload) - set(self.payload)
        if missing or unknown:
            raise TypeError(f"{self.name}: payload needs {sorted(self.payload)}, got {sorted(payload)}")
        transaction.on_commit(functools.partial(self.deliver, **payload))

    def deliver(self, **payload: Any) -> None:
        for uid, receiver in list(self._receivers.items()):
            try:
                receiver(**payload)
            except Exception:
                logger.exception("receiver %s of event %s failed", uid, self.name)
