"""Services that write the learned models: the collaborative refit and the ranker's training.

Both read the whole ratings log (catalog.selectors.rating_log) and store a new versioned row
(recommend.models.CollaborativeModel, RankerModel) that every web process picks up
(recommend.model_readers). Run by beat tasks (recommend.tasks) and manage.py train_recommender.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from django.db import transaction

from catalog.selectors import catalog_track_added, rating_log
from recommend.feeds import serving_catalog
from recommend.models import CollaborativeModel, RankerModel
from recommend.ranker import Ranker
from recommend.ranking import RatingLog, fit_signals, learn

logger = logging.getLogger(__name__)
KEEP_VERSIONS = 3  # older rows are deleted after a new one is stored


def _log() -> RatingLog:
    users, tracks, scores, times = rating_log()
    return RatingLog(
        users=np.asarray(users, np.int64),
        track_ids=np.asarray(tracks, np.int64),
        scores=np.asarray(scores, np.int64),
        times=np.asarray(times, np.float64),
    )


def _store_signals(signals, log: RatingLog, seconds: float) -> CollaborativeModel:
    with transaction.atomic():
        row = CollaborativeModel.objects.create(
            data=signals.to_bytes(),
            tracks=len(signals.track_ids),
            users=len(np.unique(log.users)),
            ratings=len(log.users),
            seconds=round(seconds, 2),
        )
        stale = CollaborativeModel.objects.order_by("-pk").values_list("pk", flat=True)[KEEP_VERSIONS:]
        CollaborativeModel.objects.filter(pk__in=list(stale)).delete()
    return row


def collaborative_refit(*, seed: int = 0) -> CollaborativeModel:
    """Fit ALS and popularity on every rating of a catalog track and store them as the new version."""
    started = time.perf_counter()
    log = _log()
    ids, added = catalog_track_added()
    signals = fit_signals(log, np.asarray(ids, np.int64), now=time.time(), track_added=added, seed=seed)
    row = _store_signals(signals, log, time.perf_counter() - started)
    logger.info("Collaborative model %s: %d listeners, %d ratings, %.1f s", row.pk, row.users, row.ratings, row.seconds)
    return row


def ranker_train(*, seed: int = 0) -> tuple[RankerModel, Ranker] | None:
    """Learn the ranker from the ratings log on a time-ordered split (recommend.ranking.learn) and
    store its weights; also stores the collaborative fit made on the way. None without an index
    (no latent space to compute the content features in)."""
    catalog = serving_catalog()
    if catalog is None:
        return None
    started = time.perf_counter()
    log = _log()
    ids, added = catalog_track_added()
    signals, ranker = learn(log, catalog, np.asarray(ids, np.int64), now=time.time(), track_added=added, seed=seed)
    _store_signals(signals, log, time.perf_counter() - started)
    with transaction.atomic():
        row = RankerModel.objects.create(weights=ranker.to_json())
        stale = RankerModel.objects.order_by("-pk").values_list("pk", flat=True)[KEEP_VERSIONS:]
        RankerModel.objects.filter(pk__in=list(stale)).delete()
    ranker.version = row.pk
    logger.info("Ranker %s: %s", row.pk, ranker.raw_weights())
    return row, ranker
