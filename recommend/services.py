"""Everything that writes recommendation state: track embeddings and the FAISS index derived from them.

The database is the source of truth (TrackEmbedding rows); the index under
`index_dir(model_version_id)` is derived from it and can always be rebuilt (index_rebuild).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Track
from config.celery import enqueue
from generation import runtime
from generation.models import GenerationJob
from generation.selectors import generation_jobs_busy, model_version_active, model_version_all
from generation.services import generation_job_create, model_version_is_longform
from generation.vae.representation import FIRST_NOTE, MelodyError, extract_melody, window
from recommend.feeds import generated_near_count
from recommend.index import IndexConfig, IndexNotFoundError, IndexStore, VectorIndex
from recommend.index_readers import index_dir, serving_index
from recommend.models import IndexChange, IndexStatus, TrackEmbedding, vector_to_bytes
from recommend.selectors import embedding_count, embedding_matrix, tracks_missing_embedding
from recommend.tasks import feed_top_up_task
from recommend.taste import taste_vectors

logger = logging.getLogger(__name__)


# --- embeddings -------------------------------------------------------------------------------


def embedding_windows(melody, seq_len: int, max_windows: int | None = None) -> list[np.ndarray]:
    """Every non-overlapping window of seq_len steps of a melody, for pooling.

    Windows start at 0, seq_len, 2*seq_len... (the last one padded with silence, as the model's own
    `tokens_from_midi` pads the first). A window that is all silence says nothing about the tune and
    is dropped (the first window is always kept). Very long tunes keep `max_windows` evenly spaced
    windows, so one file cannot make a batch arbitrarily large.
    """
    n_steps = max(1, len(melody.tokens) - 1)  # the last token is the closing note-off
    starts = list(range(0, n_steps, seq_len))
    windows = []
    for start in starts:
        tokens = window(melody, start, seq_len)
        if start == 0 or bool((tokens >= FIRST_NOTE).any()):
            windows.append(tokens)
    if max_windows and len(windows) > max_windows:
        keep = np.linspace(0, len(windows) - 1, max_windows).round().astype(int)
        windows = [windows[i] for i in sorted(set(keep.tolist()))]
    return windows


@dataclasses.dataclass
class EmbedReport:
    embedded: list[int] = dataclasses.field(default_factory=list)
    skipped: dict[int, str] = dataclasses.field(default_factory=dict)  # track id -> why
    windows: int = 0
    seconds: float = 0.0


def track_embed_batch(*, track_ids: Iterable[int], model_version, batch_size: int = 256) -> EmbedReport:
    """Encode the tracks with the version's VAE and store (or replace) their embeddings.

    Pooling: a tune longer than the model's window (seq_len steps) is cut into non-overlapping
    windows (embedding_windows); every window is encoded and the track's vector is the mean of the
    window posterior means (sigma_mean: the mean of their posterior standard deviations). The mean
    of mus keeps the vector in the same space as single-window tunes and generated melodies, and
    weighs every part of the tune alike. Windows of many tracks share each encoder batch of
    `batch_size`. Tracks whose MIDI has no usable melody (MelodyError) or whose file is missing are
    skipped and logged; tracks deleted meanwhile are skipped too.
    """
    import torch  # workers only: a web process that imports this module never loads torch

    started = time.perf_counter()
    report = EmbedReport()
    vae = runtime.vae_for(model_version)
    if model_version_is_longform(model_version):
        return _embed_tunes(vae, track_ids, model_version, report, started)
    seq_len = vae.seq_len
    max_windows = settings.REFRAIN_EMBED_MAX_WINDOWS
    owners: list[int] = []  # track id of each window
    windows: list[np.ndarray] = []
    for track in Track.objects.filter(pk__in=list(track_ids)).only("pk", "midi_file").order_by("pk"):
        try:
            with track.midi_file.open("rb") as handle:
                melody = extract_melody(handle.read())
        except (MelodyError, OSError) as exc:
            report.skipped[track.pk] = str(exc)
            logger.warning("Not embedding track %s: %s", track.pk, exc)
            continue
        for tokens in embedding_windows(melody, seq_len, max_windows):
            owners.append(track.pk)
            windows.append(tokens)
    if not windows:
        report.seconds = time.perf_counter() - started
        return report
    mus, sigmas = [], []
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            mu, sigma = vae.encode(windows[i : i + batch_size])
            mus.append(mu.float().cpu().numpy())
            sigmas.append(sigma.float().cpu().numpy())
    mu_all, sigma_all = np.concatenate(mus), np.concatenate(sigmas)
    owner_array = np.asarray(owners)
    now = timezone.now()
    rows = []
    for track_id in dict.fromkeys(owners):  # first-seen order, unique
        mask = owner_array == track_id
        rows.append(
            TrackEmbedding(
                track_id=track_id,
                model_version=model_version,
                vector=vector_to_bytes(mu_all[mask].mean(axis=0)),
                dim=mu_all.shape[1],
                sigma_mean=float(sigma_all[mask].mean()),
                window_count=int(mask.sum()),
                created_at=now,
            )
        )
    report.embedded = _embeddings_store(rows)
    report.windows = len(windows)
    report.seconds = time.perf_counter() - started
    logger.info(
        "Embedded %d tracks (%d windows) with model version %s in %.2f s",
        len(report.embedded),
        len(windows),
        model_version.pk,
        report.seconds,
    )
    return report


def _embed_tunes(jobs_model, track_ids, model_version, report: EmbedReport, started: float) -> EmbedReport:
    """The long-form model: a track's vector is the mean of its 2-bar chunk latents (the tune's whole
    length, every chunk alike; LongformJobs.embedding). Tracks go through the encoder in groups of 64."""
    from generation.vae.longform_jobs import embedding  # torch: workers only

    tracks = list(Track.objects.filter(pk__in=list(track_ids)).only("pk", "midi_file").order_by("pk"))
    rows, now, chunks = [], timezone.now(), 0
    for start in range(0, len(tracks), 64):
        melodies = {}
        for track in tracks[start : start + 64]:
            try:
                with track.midi_file.open("rb") as handle:
                    melodies[track.pk] = extract_melody(handle.read())
            except (MelodyError, OSError) as exc:
                report.skipped[track.pk] = str(exc)
                logger.warning("Not embedding track %s: %s", track.pk, exc)
        try:
            tunes = dict(zip(melodies, jobs_model.encode(list(melodies.values()))))  # one encoder pass
        except (MelodyError, ValueError):  # one odd tune: encode the group one by one to find it
            tunes = {}
            for track_id, melody in melodies.items():
                try:
                    (tunes[track_id],) = jobs_model.encode([melody])
                except (MelodyError, ValueError) as exc:
                    report.skipped[track_id] = str(exc)
        for track_id, tune in tunes.items():
            vector = embedding(tune)
            chunks += tune.n_chunks
            rows.append(
                TrackEmbedding(
                    track_id=track_id,
                    model_version=model_version,
                    vector=vector_to_bytes(vector),
                    dim=int(vector.shape[0]),
                    sigma_mean=0.0,  # the chunk path keeps posterior means only
                    window_count=tune.n_chunks,
                    created_at=now,
                )
            )
    report.embedded = _embeddings_store(rows) if rows else []
    report.windows = chunks
    report.seconds = time.perf_counter() - started
    logger.info(
        "Embedded %d tracks (%d chunks) with model version %s in %.2f s",
        len(report.embedded),
        chunks,
        model_version.pk,
        report.seconds,
    )
    return report


def _embeddings_store(rows: list[TrackEmbedding]) -> list[int]:
    """Upsert the rows; returns the track ids stored (a track deleted meanwhile is left out)."""
    fields = ["vector", "dim", "sigma_mean", "window_count", "created_at"]
    try:
        with transaction.atomic():
            TrackEmbedding.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["track", "model_version"], update_fields=fields
            )
        return [row.track_id for row in rows]
    except IntegrityError:  # a track was deleted while it was being encoded: store the rest one by one
        stored = []
        for row in rows:
            try:
                with transaction.atomic():
                    if not Track.objects.filter(pk=row.track_id).exists():
                        continue
                    TrackEmbedding.objects.update_or_create(
                        track_id=row.track_id,
                        model_version=row.model_version,
                        defaults={name: getattr(row, name) for name in fields},
                    )
                stored.append(row.track_id)
            except IntegrityError:
                continue
        return stored


def tracks_embed_for_active(*, track_ids: list[int]) -> EmbedReport | None:
    """The task's work: embed with the active version and add the results to its index."""
    version = model_version_active()
    if version is None:
        return None
    report = track_embed_batch(track_ids=track_ids, model_version=version)
    if report.embedded:
        index_add(track_ids=report.embedded, model_version=version)
    return report


def tracks_embed_missing(*, limit: int = 512, after: int = 0) -> tuple[int, int | None]:
    """Embed the next `limit` tracks (by id, above `after`) that lack an embedding for the active
    version, and index them.

    The safety net behind the per-upload task: bulk imports queue no per-tune work, a broker outage
    can lose a message, and a newly activated version starts with no embeddings at all. Returns
    (tracks embedded, the id to continue after, or None when this pass is done). Walking by id means
    tracks that cannot be embedded (no usable melody) are passed over, not retried in every chunk.
    """
    version = model_version_active()
    if version is None:
        return 0, None
    todo = list(tracks_missing_embedding(model_version=version).filter(pk__gt=after)[: limit + 1])
    if not todo:
        index_mark_complete(model_version=version)
        return 0, None
    chunk = todo[:limit]
    report = track_embed_batch(track_ids=chunk, model_version=version)
    if report.embedded:
        index_add(track_ids=report.embedded, model_version=version)
    if len(todo) > limit:
        return len(report.embedded), chunk[-1]
    index_mark_complete(model_version=version)
    return len(report.embedded), None


def index_mark_complete(*, model_version) -> None:
    """Record that a full embedding pass of this version ended: from now on its index serves feeds.

    Every track that existed when the pass began has been tried; later uploads are embedded one by
    one by their own task, so the version stays complete.
    """
    tracks = embedding_count(model_version=model_version)
    status, _ = IndexStatus.objects.get_or_create(model_version=model_version)
    if not status.complete:
        status.complete, status.tracks, status.completed_at = True, tracks, timezone.now()
        status.save(update_fields=["complete", "tracks", "completed_at"])
        logger.info("Model version %s now serves the feeds (%d tracks embedded).", model_version.pk, tracks)


# --- the index ---------------------------------------------------------------------------------
#
# Every change to an index is first logged in the database (IndexChange, numbered in commit order);
# index_sync then brings a host's local index folder up to the log: one append-only segment for all
# the changes it has not applied, or a rebuild from TrackEmbedding when the folder is missing,
# unreadable, of another dimension or behind a pruned log. Each host keeps its own folder
# (REFRAIN_INDEX_DIR) and runs `manage.py index_sync --follow`; the worker that logs a change also
# syncs its own folder at once (REFRAIN_INDEX_SYNC_ON_WRITE). Two hosts fed from the same log hold
# the same tracks and answer the same searches (tests/recommend/test_index_hosts.py).


def _index_config(dim: int) -> IndexConfig:
    return IndexConfig(dim=dim, use_gpu=settings.REFRAIN_INDEX_USE_GPU)


def index_rebuild(*, model_version) -> int:
    """Build the version's index from the database and save it as a new base (the DB is the truth).

    Returns the number of tracks indexed; with no embeddings nothing is written.
    """
    store = IndexStore(index_dir(model_version.pk))
    with store.writer_lock(timeout=settings.REFRAIN_INDEX_LOCK_TIMEOUT):
        return _rebuild_locked(store, model_version)


def _rebuild_locked(store, model_version) -> int:
    # The log position first, then the embeddings: every change up to it committed its embeddings
    # (or their deletion) before it was logged, so the build holds all of them; later changes may be
    # in the build already and are applied again, which is harmless (adds replace, removals ignore).
    seq = IndexStatus.objects.filter(model_version=model_version).values_list("change_seq", flat=True).first() or 0
    ids, vectors = embedding_matrix(model_version=model_version)
    if not len(ids):
        return 0
    index = VectorIndex.build(ids, vectors, _index_config(vectors.shape[1]))
    store.save(index, force=True, meta={"change_seq": seq})
    logger.info("Rebuilt the index of model version %s: %d tracks (%s)", model_version.pk, len(ids), index.kind)
    return len(ids)


def index_changes_log(*, model_version, track_ids: list[int], removed: bool = False) -> int:
    """Log an add (or removal) of these tracks in the version's index; returns its sequence number."""
    IndexStatus.objects.get_or_create(model_version=model_version)
    with transaction.atomic():
        # The row lock orders the log: seq n commits only after seq n-1 did.
        status = IndexStatus.objects.select_for_update().get(model_version=model_version)
        status.change_seq += 1
        status.save(update_fields=["change_seq"])
        IndexChange.objects.create(
            model_version=model_version, seq=status.change_seq, removed=removed, track_ids=sorted(set(track_ids))
        )
    return status.change_seq


def index_sync(*, model_version) -> int:
    """Bring this host's folder of the version's index up to the change log; returns how many tracks
    were written (added or replaced, or indexed by a rebuild).

    All pending changes become one segment (the last change of a track wins); the store compacts
    when its segments outgrow the limits in IndexConfig. A missing or unreadable folder, or one
    without a log position (written before the log existed), is rebuilt from the database.
    """
    store = IndexStore(index_dir(model_version.pk))
    with store.writer_lock(timeout=settings.REFRAIN_INDEX_LOCK_TIMEOUT):
        try:
            manifest = store.check()
        except IndexNotFoundError as exc:  # IndexCorruptError included
            if store.manifest_path.exists():
                logger.warning("Rebuilding the index of model version %s: %s", model_version.pk, exc)
            return _rebuild_locked(store, model_version)
        have = manifest.meta.get("change_seq")
        if have is None:
            return _rebuild_locked(store, model_version)
        changes = list(
            IndexChange.objects.filter(model_version=model_version, seq__gt=have)
            .order_by("seq")
            .values_list("seq", "removed", "track_ids")
        )
        if not changes:
            return 0
        if changes[0][0] != have + 1:  # the log was pruned past this folder
            return _rebuild_locked(store, model_version)
        last_op: dict[int, bool] = {}
        for _, removed, track_ids in changes:
            for track_id in track_ids:
                last_op[int(track_id)] = removed
        ids, vectors = embedding_matrix(
            model_version=model_version, track_ids=[t for t, removed in last_op.items() if not removed]
        )
        if len(ids) and vectors.shape[1] != manifest.dim:  # a different model under the same id
            return _rebuild_locked(store, model_version)
        # Removed tracks, and added ones whose embedding is gone again (deleted meanwhile).
        gone = sorted(set(last_op) - set(ids.tolist()))
        store.append(ids, vectors, remove=gone, meta={"change_seq": changes[-1][0]})
        if store.should_compact():
            store.compact()
    return len(ids)


def index_add(*, track_ids: list[int], model_version) -> int:
    """Add (or replace) these tracks' stored embeddings in the version's index: logged for every host,
    then applied to this host's folder (an append; a rebuild when there is no index yet)."""
    index_changes_log(model_version=model_version, track_ids=track_ids)
    if not settings.REFRAIN_INDEX_SYNC_ON_WRITE:
        return 0
    return index_sync(model_version=model_version)


def index_remove(*, track_ids: list[int], model_version=None) -> int:
    """Remove tracks from the version's index, or from every version's index when none is given;
    returns the number of indexes the removal was logged for."""
    versions = [model_version] if model_version is not None else model_version_all()
    for version in versions:
        index_changes_log(model_version=version, track_ids=track_ids, removed=True)
        if settings.REFRAIN_INDEX_SYNC_ON_WRITE and IndexStore(index_dir(version.pk)).manifest_path.exists():
            index_sync(model_version=version)
    return len(versions)


# --- ahead-of-time generation for the generated feed -------------------------------------------


def generated_feed_top_up(*, user, target: int | None = None) -> list:
    """Ask for new "similar" generation jobs near the user's liked tracks when fewer than `target`
    unrated generated tracks near their taste exist. Never waits on a generation: the jobs run on
    gpu workers and their tracks show up in later feeds. Does nothing while a top-up job of this
    user is still pending or running, or when the user has liked nothing yet.
    """
    target = settings.REFRAIN_FEED_GENERATED_TARGET if target is None else target
    version, index = serving_index()
    if version is None or index is None or target <= 0:
        return []
    tastes = [t for t in taste_vectors(user=user, model_version=version, index=index) if t.likes]
    if not tastes:
        return []
    missing = target - generated_near_count(user=user)
    if missing <= 0:
        return []
    if generation_jobs_busy(owner=user, kind=GenerationJob.Kind.SIMILAR):
        return []
    per_job = min(settings.GENERATION_MAX_COUNT, -(-missing // len(tastes)))
    jobs = []
    for taste in tastes:  # one job per taste group, around its best-liked track
        anchor = max(taste.likes, key=lambda a: a.score)
        jobs.append(
            generation_job_create(owner=user, kind="similar", params={"track_id": anchor.track_id, "count": per_job})
        )
    logger.info("Topped up the generated feed of user %s: %d jobs of %d melodies", user.pk, len(jobs), per_job)
    return jobs


def feed_top_up_enqueue(*, user) -> None:
    """From the feed request: enqueue a top-up check at most once a minute per user, never blocking."""
    if not cache.add(f"recommend:feed-top-up:{user.pk}", 1, timeout=60):
        return
    enqueue(feed_top_up_task, user.pk, recovery="the next feed request asks again.")
