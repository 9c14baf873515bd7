"""The worker side of generation jobs: claim a batch, decode every job's melodies in one pass,
store each job's tracks. Runs in `gpu` workers only (it imports torch); the web side of jobs
(validation, creation, recovery) is in generation.services.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta

import numpy as np
import torch
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from catalog.midi import InvalidMidi
from catalog.models import Track
from catalog.services import track_ingest, tracks_process
from config.errors import ApplicationError
from generation import runtime, services
from generation.engine import BatchStats, LatentRequest, decode_requests, latent_targets
from generation.models import GeneratedTrack, GenerationJob
from generation.selectors import model_version_active
from generation.vae.checkpoint import CheckpointError
from generation.vae.longform_jobs import LongformJobs, TuneRequest
from generation.vae.representation import MelodyError

logger = logging.getLogger(__name__)


def generation_jobs_run(*, job_id: int):
    """Run a job and, in the same decode pass, whatever other jobs are waiting (micro-batching).

    Safe to call twice for one job (a redelivered message): a job that is done, failed or held by
    a live worker is left alone, and results are written in one transaction with the status.
    """

    wait_ms = settings.GENERATION_BATCH_WAIT_MS
    if wait_ms > 0:
        time.sleep(wait_ms / 1000)  # let a burst of requests gather into one pass
    jobs = _claim_batch(job_id)
    stats = BatchStats()
    if not jobs:
        _check_again_when_lease_lapses(job_id)
        return stats
    by_version: dict[int, list] = {}
    for job in jobs:
        by_version.setdefault(job.model_version_id, []).append(job)
    with LeaseKeeper(job_ids=[job.pk for job in jobs], batch_id=jobs[0].batch_id):
        for version_jobs in by_version.values():
            _run_jobs(version_jobs, stats)
    return stats


def _check_again_when_lease_lapses(job_id: int) -> None:
    """A message for a job another worker holds: that worker may have died a moment ago (kill -9
    while decoding), its message redelivered here. Dropping the message would leave the job
    "running" until beat's sweep; instead look again just after the lease lapses. A live worker
    renews its lease (LeaseKeeper), so the look finds the job done or still held, never taken twice."""
    held = (
        GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.RUNNING)
        .values_list("lease_expires_at", flat=True)
        .first()
    )
    if held is None:
        return  # done, failed or unknown: a plain duplicate delivery
    remaining = max(0.0, (held - timezone.now()).total_seconds())
    services.generation_job_wake(job_id=job_id, countdown=remaining + 1.0)


class LeaseKeeper:
    """Renews the lease of the jobs a worker is running, every third of GENERATION_LEASE_SECONDS, on
    its own thread and database connection, so a long decode keeps its jobs while a dead worker's
    jobs lapse within one lease (60 s by default; it was a fixed 300 s, and jobs of a killed worker
    stayed "running" for 6 to 7 minutes)."""

    def __init__(self, *, job_ids: list[int], batch_id) -> None:
        self.job_ids, self.batch_id = job_ids, batch_id
        self.lease = float(settings.GENERATION_LEASE_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="generation-lease", daemon=True)
        self.renewals = 0

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease)

    def _renew(self) -> None:
        try:
            while not self._stop.wait(self.lease / 3):
                GenerationJob.objects.filter(
                    pk__in=self.job_ids, status=GenerationJob.Status.RUNNING, batch_id=self.batch_id
                ).update(lease_expires_at=timezone.now() + timedelta(seconds=self.lease))
                self.renewals += 1
        except Exception:  # a database blip: the lease may lapse, and the job is then retaken once
            logger.exception("could not renew the lease of generation jobs %s", self.job_ids)
        finally:
            connection.close()  # this thread's own connection


def _claim_batch(job_id: int) -> list:
    now = timezone.now()
    claimable = Q(status=GenerationJob.Status.PENDING) | Q(
        status=GenerationJob.Status.RUNNING, lease_expires_at__lt=now
    )
    with transaction.atomic():
        jobs = GenerationJob.objects.filter(claimable)
        if connection.features.has_select_for_update_skip_locked:
            jobs = jobs.select_for_update(skip_locked=True)
        first = jobs.filter(pk=job_id).first()
        if first is None:
            return []  # done, failed, unknown, or being run by a live worker: a duplicate delivery
        others = list(jobs.exclude(pk=job_id).order_by("created_at", "id")[: settings.GENERATION_MAX_BATCH_JOBS - 1])
        batch = [first, *others]
        batch_id = uuid.uuid4()
        GenerationJob.objects.filter(pk__in=[j.pk for j in batch]).update(
            status=GenerationJob.Status.RUNNING,
            progress=10,
            started_at=now,
            batch_id=batch_id,
            batch_jobs=len(batch),
            attempts=F("attempts") + 1,
            error="",
            lease_expires_at=now + timedelta(seconds=settings.GENERATION_LEASE_SECONDS),
        )
    claimed = list(GenerationJob.objects.filter(pk__in=[j.pk for j in batch]).select_related("model_version", "owner"))
    logger.info("claimed %d generation jobs in batch %s", len(claimed), batch_id)
    return claimed


def _run_jobs(jobs: list, stats) -> None:
    """Encode anchors, decode every job's melodies in one pass, then store each job's tracks."""
    try:
        model = runtime.vae_for(jobs[0].model_version)
    except (CheckpointError, OSError) as exc:  # retrying cannot help: fail the jobs, keep the worker
        for job in jobs:
            _job_fail(job, f"The model version {jobs[0].model_version} cannot be loaded: {exc}")
        return
    compose = _compose_tunes if isinstance(model, LongformJobs) else _compose_windows
    started = time.perf_counter()
    try:
        runnable, melodies = compose(model, jobs, stats)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if len(jobs) > 1:  # split the batch and try the halves
            half = len(jobs) // 2
            _run_jobs(jobs[:half], stats)
            _run_jobs(jobs[half:], stats)
        else:
            _job_fail(jobs[0], "The GPU ran out of memory for this job; ask for fewer melodies.")
        return
    if not runnable:
        return
    decode_ms = (time.perf_counter() - started) * 1000
    logger.info(
        "decoded %d jobs (%d melodies) in one pass: %.0f ms", len(runnable), sum(len(m) for m in melodies), decode_ms
    )
    for job, made in zip(runnable, melodies):
        _job_store(job, made, decode_ms)


Melody = tuple[bytes, np.ndarray]  # (MIDI bytes, the latent vector the melody was decoded from)


def _parents(job) -> list[tuple[int, bytes]]:
    """(track id, MIDI bytes) of the job's parent tracks, in the order the job names them."""
    ids = job.params.get("track_ids", [])
    found = {}
    for track in Track.objects.filter(pk__in=ids).order_by():
        with track.midi_file.open("rb") as handle:
            found[track.pk] = handle.read()
    return [(pk, found[pk]) for pk in ids if pk in found]


def _compose_windows(vae, jobs: list, stats) -> tuple[list, list[list[Melody]]]:
    """The one-window VAE: latent targets per job, decoded in one pass per temperature."""
    requests, runnable = [], []
    for job in jobs:
        try:
            requests.append(_latent_request(vae, job))
            runnable.append(job)
        except (MelodyError, ApplicationError, ValueError) as exc:
            _job_fail(job, f"Could not read the parent track: {exc}")
    if not runnable:
        return [], []
    results = decode_requests(vae, requests, stats)
    melodies = []
    for request, tokens in zip(requests, results):
        latents = latent_targets(vae, request).cpu().numpy()
        melodies.append([(vae.to_midi_bytes(t), z) for t, z in zip(tokens, latents)])
    return runnable, melodies


def _compose_tunes(jobs_model: LongformJobs, jobs: list, stats) -> tuple[list, list[list[Melody]]]:
    """The long-form model: parents encoded chunk by chunk, every job's tunes decoded in one pass."""
    requests, runnable = [], []
    for job in jobs:
        try:
            parents = _parents(job)
            encoded = tuple(jobs_model.encode([data for _, data in parents])) if parents else ()
            requests.append(_tune_request(job, encoded))
            runnable.append(job)
        except (MelodyError, ApplicationError, ValueError) as exc:
            _job_fail(job, f"Could not read the parent track: {exc}")
    if not runnable:
        return [], []
    composed = jobs_model.compose(requests)
    stats.forward_passes += 1
    kept, melodies = [], []
    for job, tunes in zip(runnable, composed):
        if isinstance(tunes, ValueError):  # a request the model cannot honour fails its job alone
            _job_fail(job, str(tunes))
            continue
        kept.append(job)
        melodies.append([(jobs_model.to_midi_bytes(tune), tune.latent) for tune in tunes])
    stats.jobs += len(kept)
    stats.melodies += sum(len(m) for m in melodies)
    return kept, melodies


def _tune_request(job, parents: tuple) -> TuneRequest:
    params = job.params
    numerator, denominator = (int(x) for x in params.get("meter", "4/4").split("/"))
    return TuneRequest(
        kind=job.kind,
        count=params["count"],
        seed=params["seed"],
        temperature=params.get("temperature"),
        bars=params.get("bars", 16),
        meter=(numerator, denominator),
        parents=parents,
        spread=params.get("spread", 0.3),
        attribute=params.get("attribute", ""),
        amount=params.get("amount", 0.0),
        prompt_bars=params.get("prompt_bars", 8),
        from_bar=params.get("from_bar", 1),
        to_bar=params.get("to_bar", 2),
    )


def _latent_request(vae, job):
    params = job.params
    anchors = []
    for _, data in _parents(job):
        mu, _ = vae.encode(data)
        anchors.append(mu[0].cpu().numpy())
    return LatentRequest(
        kind=job.kind,
        count=params["count"],
        temperature=params["temperature"] if params.get("temperature") is not None else 0.5,
        seed=params["seed"],
        anchors=tuple(anchors),
        spread=params.get("spread", 0.3),
        attribute=params.get("attribute", ""),
        amount=params.get("amount", 0.0),
    )


def _job_store(job, melodies: list[Melody], decode_ms: float) -> None:
    """Ingest the melodies as tracks and finish the job, all in one transaction."""
    started = time.perf_counter()
    written: list = []
    try:
        with transaction.atomic():
            locked = (
                GenerationJob.objects.select_for_update()
                .filter(pk=job.pk, status=GenerationJob.Status.RUNNING, batch_id=job.batch_id)
                .first()
            )
            if locked is None:
                return  # finished or re-claimed elsewhere meanwhile: never write a second set
            parents = list(Track.objects.filter(pk__in=job.params.get("track_ids", [])))
            silent = 0
            for position, (midi_bytes, z) in enumerate(melodies):
                try:
                    result = track_ingest(
                        midi_bytes=midi_bytes,
                        title=f"{job.get_kind_display().capitalize()} #{job.pk}.{position + 1}",
                        composer=f"Refrain model {job.model_version.name}",
                        collection="generated",
                        source=f"generation:job/{job.pk}#{position}",
                        is_generated=True,
                        created_by=job.owner,
                        announce=False,  # announced below, all of the job's tracks in one message
                    )
                except InvalidMidi:
                    silent += 1  # the decoder produced no notes: nothing worth keeping
                    continue
                locked.tracks.add(result.track)
                if result.created:
                    written.append(result.track)
                    generated = GeneratedTrack.objects.create(
                        track=result.track,
                        job=locked,
                        model_version=job.model_version,
                        latent=[round(float(v), 6) for v in z],
                        position=position,
                    )
                    generated.parents.set(parents)
            tracks_process(track_ids=[track.pk for track in written])  # one render and one embedding task
            locked.finished_at = timezone.now()
            locked.progress = 100
            locked.lease_expires_at = None
            made = len(melodies) - silent
            locked.status = GenerationJob.Status.DONE if made else GenerationJob.Status.FAILED
            locked.error = f"{silent} of {len(melodies)} melodies came out silent and were dropped." if silent else ""
            if not made:
                locked.error = "The model produced only silence for this request; try a higher temperature."
            locked.timings = {
                "queued_ms": round(
                    ((locked.started_at or locked.created_at) - locked.created_at).total_seconds() * 1000, 1
                ),
                "decode_ms": round(decode_ms, 1),
                "store_ms": round((time.perf_counter() - started) * 1000, 1),
                "total_ms": round((locked.finished_at - locked.created_at).total_seconds() * 1000, 1),
                "batch_jobs": job.batch_jobs,
            }
            locked.save()
    except BaseException:
        for track in written:  # the rows rolled back: their files must go too
            track.midi_file.delete(save=False)
        raise


def _job_fail(job, message: str) -> None:
    GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.RUNNING).update(
        status=GenerationJob.Status.FAILED, error=message, finished_at=timezone.now(), lease_expires_at=None
    )


def generation_runtime_warm_up() -> None:
    """Load the active model version into this process, if there is one."""
    version = model_version_active()
    if version is not None:
        try:
            runtime.vae_for(version)
        except Exception:  # a broken checkpoint must not stop the worker: jobs will report it
            logger.exception("could not load model version %s at start-up", version.pk)
