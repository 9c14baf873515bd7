"""The learned models in a web or worker process: the newest CollaborativeModel and RankerModel
rows, loaded once per process and again when a newer row is stored (one indexed query per
request tells; a fit is stored by whichever host ran the beat task, and every host reads it)."""

from __future__ import annotations

import logging
import threading

from recommend.collaborative import Signals
from recommend.models import CollaborativeModel, RankerModel
from recommend.ranker import Ranker, default_ranker

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: dict[str, tuple[int | None, object]] = {}


def _latest_pk(model) -> int | None:
    return model.objects.order_by("-pk").values_list("pk", flat=True).first()


def serving_signals() -> Signals | None:
    """The newest collaborative fit, or None before the first refit."""
    latest = _latest_pk(CollaborativeModel)
    with _lock:
        cached = _loaded.get("signals")
    if cached is not None and cached[0] == latest:
        return cached[1]  # type: ignore[return-value]
    signals = None
    if latest is not None:
        data = CollaborativeModel.objects.filter(pk=latest).values_list("data", flat=True).first()
        signals = Signals.from_bytes(data, version=latest) if data is not None else None
    with _lock:
        _loaded["signals"] = (latest, signals)
    return signals


def serving_ranker() -> Ranker:
    """The newest trained ranker, or the default weights before the first training."""
    latest = _latest_pk(RankerModel)
    with _lock:
        cached = _loaded.get("ranker")
    if cached is not None and cached[0] == latest:
        return cached[1]  # type: ignore[return-value]
    ranker = default_ranker()
    if latest is not None:
        weights = RankerModel.objects.filter(pk=latest).values_list("weights", flat=True).first()
        try:
            ranker = Ranker.from_json(weights, version=latest)
        except (ValueError, KeyError, TypeError):
            logger.warning("Ranker %s has weights of another schema: serving the defaults.", latest)
    with _lock:
        _loaded["ranker"] = (latest, ranker)
    return ranker
