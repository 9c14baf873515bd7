"""Writes of model versions: register a trained checkpoint, activate exactly one."""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from config.errors import ApplicationError
from generation.models import ModelVersion
from generation.selectors import model_version_active

logger = logging.getLogger(__name__)

# The demo checkpoint committed with the code, so the platform can generate without training.
DEFAULT_CHECKPOINT = "generation/checkpoints/mel_16bar.pt"
DEFAULT_EVALUATION = "generation/checkpoints/mel_16bar_eval.json"


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(settings.BASE_DIR) / p


def _checkpoint_summary(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config and metrics read (safely) from the checkpoint file itself."""
    from generation.vae.checkpoint import CheckpointError, read_checkpoint  # torch only when needed

    try:
        blob = read_checkpoint(path)
    except CheckpointError as exc:
        raise ApplicationError(str(exc), code="invalid_checkpoint") from exc
    return dict(blob["config"]), dict(blob.get("metrics") or {})


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    """Make this version the only active one. Locks the rows so two activations cannot interleave."""
    list(ModelVersion.objects.select_for_update().filter(is_active=True))
    ModelVersion.objects.filter(is_active=True).exclude(pk=model_version.pk).update(is_active=False)
    # By update, not save(): the instance in hand may be stale (deactivated by another activation).
    ModelVersion.objects.filter(pk=model_version.pk).update(is_active=True)
    model_version.is_active = True
    transaction.on_commit(_enqueue_reembedding)  # the catalog's embeddings for the new version
    return model_version


def _enqueue_reembedding() -> None:
    from recommend.tasks import embed_missing

    try:
        embed_missing.delay()
    except Exception:  # noqa: BLE001 - a broker outage must not undo the activation; gpu workers catch up at start
        logger.exception("could not enqueue re-embedding after a model version change")


@transaction.atomic
def model_version_register(
    *,
    name: str,
    checkpoint_path: str | Path,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    activate: bool = True,
) -> ModelVersion:
    """Record a trained checkpoint. Config/metrics default to what the checkpoint file holds."""
    path = _resolve(checkpoint_path)
    if not path.is_file():
        raise ApplicationError(f"checkpoint not found: {path}", code="invalid_checkpoint")
    if config is None or metrics is None:
        file_config, file_metrics = _checkpoint_summary(path)
        config = file_config if config is None else config
        metrics = file_metrics if metrics is None else metrics
    version = ModelVersion.objects.create(
        name=name, checkpoint_path=str(checkpoint_path), config=config, metrics=metrics, is_active=False
    )
    if activate:
        model_version_activate(model_version=version)
    return version


def model_version_register_default() -> ModelVersion:
    """Register and activate the committed demo checkpoint unless some version is already active.

    Idempotent: a second call returns the active version; an inactive earlier registration
    of the same file is re-activated rather than duplicated.
    """
    active = model_version_active()
    if active is not None:
        return active
    existing = ModelVersion.objects.filter(checkpoint_path=DEFAULT_CHECKPOINT).first()
    if existing is not None:
        return model_version_activate(model_version=existing)
    metrics: dict[str, Any] = {}
    evaluation = _resolve(DEFAULT_EVALUATION)
    if evaluation.is_file():
        report = json.loads(evaluation.read_text())
        metrics = {"test": report.get("reconstruction", {}), "samples": report.get("samples", {}).get("vae_prior", {})}
    config, file_metrics = _checkpoint_summary(_resolve(DEFAULT_CHECKPOINT))
    return model_version_register(
        name="mel_16bar (demo)",
        checkpoint_path=DEFAULT_CHECKPOINT,
        config=config,
        metrics={**file_metrics, **metrics},
        activate=True,
    )


def model_version_ensure_active() -> ModelVersion:
    """First use: the active version, registering the demo checkpoint when there is none."""
    return model_version_active() or model_version_register_default()


# --- generation jobs -------------------------------------------------------------------------

STEER_ATTRIBUTES = ("note_density", "register", "major_minor", "syncopation")


def generation_job_create(*, owner, kind: str, params: dict[str, Any]) -> "GenerationJob":
    """Validate a request, record it as a pending job and wake a worker once it is committed."""
    from generation.models import GenerationJob

    clean = _job_params(kind, params)
    version = model_version_ensure_active()
    with transaction.atomic():
        job = GenerationJob.objects.create(owner=owner, kind=kind, params=clean, model_version=version)
        transaction.on_commit(lambda: _wake_worker(job.pk))
    return job


def _wake_worker(job_id: int) -> None:
    from generation.tasks import run_generation

    run_generation.delay(job_id)


def _job_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Business rules on a request (types and ranges are checked by the API's serializer too)."""
    from catalog.models import Track
    from generation.models import GenerationJob

    if kind not in GenerationJob.Kind.values:
        raise ApplicationError(
            f"Unknown kind {kind!r}: choose one of {', '.join(GenerationJob.Kind.values)}.",
            fields={"kind": ["unknown"]},
        )
    limit = settings.GENERATION_MAX_COUNT
    count = _number(params, "count", 1, int)
    if not 1 <= count <= limit:
        raise ApplicationError(f"count must be between 1 and {limit}.", fields={"count": [f"1..{limit}"]})
    temperature = _number(params, "temperature", 0.5, float)
    if not 0.0 <= temperature <= 2.0:
        raise ApplicationError(
            "temperature must be between 0 (most likely notes) and 2 (wild).", fields={"temperature": ["0..2"]}
        )
    seed = _number(params, "seed", None, int)
    seed = seed if seed is not None else secrets.randbelow(2**31)
    clean: dict[str, Any] = {"count": count, "temperature": temperature, "seed": seed}
    needed = {"sample": 0, "similar": 1, "steer": 1, "interpolate": 2}[kind]
    raw_ids = params.get("track_ids") or ([params["track_id"]] if params.get("track_id") is not None else [])
    try:
        track_ids = [int(t) for t in raw_ids]
    except (TypeError, ValueError):
        raise ApplicationError("Track ids must be whole numbers.", fields={"track_ids": ["integers"]}) from None
    if len(track_ids) != needed or len(set(track_ids)) != needed:
        what = {0: "no track", 1: "one track (track_id)", 2: "two different tracks (track_ids)"}[needed]
        raise ApplicationError(f"A {kind} job takes {what}.", fields={"track_ids": [what]})
    found = set(Track.objects.filter(pk__in=track_ids).values_list("pk", flat=True))
    missing = [t for t in track_ids if t not in found]
    if missing:
        raise ApplicationError(f"Unknown track {missing[0]}.", code="unknown_track", fields={"track_ids": ["unknown"]})
    if track_ids:
        clean["track_ids"] = track_ids
    if kind == "similar":
        spread = _number(params, "spread", 0.3, float)
        if not 0.0 < spread <= 2.0:
            raise ApplicationError("spread must be above 0 and at most 2.", fields={"spread": ["(0, 2]"]})
        clean["spread"] = spread
    if kind == "steer":
        attribute = params.get("attribute")
        if attribute not in STEER_ATTRIBUTES:
            raise ApplicationError(
                f"attribute must be one of {', '.join(STEER_ATTRIBUTES)}.", fields={"attribute": ["unknown"]}
            )
        amount = _number(params, "amount", 1.0, float)
        if not -4.0 <= amount <= 4.0 or amount == 0:
            raise ApplicationError(
                "amount must be between -4 and 4 and not 0 (negative: less of it).", fields={"amount": ["-4..4"]}
            )
        clean.update(attribute=attribute, amount=amount)
    return clean


def _number(params: dict[str, Any], name: str, default, kind: type):
    value = params.get(name, default)
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ApplicationError(f"{name} must be a number.", fields={name: ["a number"]}) from None
    if isinstance(value, bool) or (kind is int and number != value):
        raise ApplicationError(f"{name} must be a whole number.", fields={name: ["a whole number"]})
    return number


def generation_jobs_run(*, job_id: int):
    """Run a job and, in the same decode pass, whatever other jobs are waiting (micro-batching).

    Safe to call twice for one job (a redelivered message): a job that is done, failed or held by
    a live worker is left alone, and results are written in one transaction with the status.
    """
    from generation.engine import BatchStats

    wait_ms = settings.GENERATION_BATCH_WAIT_MS
    if wait_ms > 0:
        time.sleep(wait_ms / 1000)  # let a burst of requests gather into one pass
    jobs = _claim_batch(job_id)
    stats = BatchStats()
    by_version: dict[int, list] = {}
    for job in jobs:
        by_version.setdefault(job.model_version_id, []).append(job)
    for version_jobs in by_version.values():
        _run_jobs(version_jobs, stats)
    return stats


def _claim_batch(job_id: int) -> list:
    from django.db import connection
    from django.db.models import F, Q
    from django.utils import timezone

    from generation.models import GenerationJob

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
    import torch

    from generation import runtime
    from generation.engine import decode_requests
    from generation.vae.representation import MelodyError

    from generation.vae.checkpoint import CheckpointError

    try:
        vae = runtime.vae_for(jobs[0].model_version)
    except (CheckpointError, OSError) as exc:  # retrying cannot help: fail the jobs, keep the worker
        for job in jobs:
            _job_fail(job, f"The model version {jobs[0].model_version} cannot be loaded: {exc}")
        return
    requests, runnable = [], []
    for job in jobs:
        try:
            requests.append(_latent_request(vae, job))
            runnable.append(job)
        except (MelodyError, ApplicationError, ValueError) as exc:
            _job_fail(job, f"Could not read the parent track: {exc}")
    if not runnable:
        return
    started = time.perf_counter()
    try:
        results = decode_requests(vae, requests, stats)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        if len(runnable) > 1:  # split the batch and try the halves
            half = len(runnable) // 2
            _run_jobs(runnable[:half], stats)
            _run_jobs(runnable[half:], stats)
        else:
            _job_fail(runnable[0], "The GPU ran out of memory for this job; ask for fewer melodies.")
        return
    decode_ms = (time.perf_counter() - started) * 1000
    logger.info(
        "decoded %d jobs (%d melodies) in one pass: %.0f ms", len(runnable), sum(len(r) for r in results), decode_ms
    )
    for job, request, tokens in zip(runnable, requests, results):
        _job_store(job, vae, tokens, request, decode_ms)


def _latent_request(vae, job):
    from catalog.models import Track
    from generation.engine import LatentRequest

    params = job.params
    anchors = []
    for track in Track.objects.filter(pk__in=params.get("track_ids", [])).order_by():
        with track.midi_file.open("rb") as handle:
            mu, _ = vae.encode(handle.read())
        anchors.append((track.pk, mu[0].cpu().numpy()))
    order = {pk: i for i, pk in enumerate(params.get("track_ids", []))}
    anchors.sort(key=lambda item: order[item[0]])
    return LatentRequest(
        kind=job.kind,
        count=params["count"],
        temperature=params["temperature"],
        seed=params["seed"],
        anchors=tuple(a for _, a in anchors),
        spread=params.get("spread", 0.3),
        attribute=params.get("attribute", ""),
        amount=params.get("amount", 0.0),
    )


def _job_store(job, vae, tokens, request, decode_ms: float) -> None:
    """Ingest the melodies as tracks and finish the job, all in one transaction."""
    from django.utils import timezone

    from catalog.midi import InvalidMidi
    from catalog.models import Track
    from catalog.services import track_ingest
    from generation.engine import latent_targets
    from generation.models import GeneratedTrack, GenerationJob

    started = time.perf_counter()
    latents = latent_targets(vae, request).cpu().numpy()
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
            for position, (melody, z) in enumerate(zip(tokens, latents)):
                try:
                    result = track_ingest(
                        midi_bytes=vae.to_midi_bytes(melody),
                        title=f"{job.get_kind_display().capitalize()} #{job.pk}.{position + 1}",
                        composer=f"Refrain model {job.model_version.name}",
                        collection="generated",
                        source=f"generation:job/{job.pk}#{position}",
                        is_generated=True,
                        created_by=job.owner,
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
            locked.finished_at = timezone.now()
            locked.progress = 100
            locked.lease_expires_at = None
            made = len(tokens) - silent
            locked.status = GenerationJob.Status.DONE if made else GenerationJob.Status.FAILED
            locked.error = f"{silent} of {len(tokens)} melodies came out silent and were dropped." if silent else ""
            if not made:
                locked.error = "The model produced only silence for this request; try a higher temperature."
            locked.timings = {
                "queued_ms": round((locked.started_at - locked.created_at).total_seconds() * 1000, 1),
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
    from django.utils import timezone

    from generation.models import GenerationJob

    GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.RUNNING).update(
        status=GenerationJob.Status.FAILED, error=message, finished_at=timezone.now(), lease_expires_at=None
    )


def generation_runtime_warm_up() -> None:
    """Load the active model version into this process, if there is one."""
    from generation import runtime

    version = model_version_active()
    if version is not None:
        try:
            runtime.vae_for(version)
        except Exception:  # a broken checkpoint must not stop the worker: jobs will report it
            logger.exception("could not load model version %s at start-up", version.pk)


def generation_jobs_recover() -> int:
    """Wake workers for jobs whose message may be lost: pending for a while, or running on a dead worker.

    Called when a worker starts and periodically by beat. Waking twice is harmless (see run).
    """
    from django.db.models import Q
    from django.utils import timezone

    from generation.models import GenerationJob

    now = timezone.now()
    stale = GenerationJob.objects.filter(
        Q(
            status=GenerationJob.Status.PENDING,
            created_at__lt=now - timedelta(seconds=settings.GENERATION_PENDING_STALE_SECONDS),
        )
        | Q(status=GenerationJob.Status.RUNNING, lease_expires_at__lt=now)
    ).values_list("pk", flat=True)
    job_ids = list(stale)
    for job_id in job_ids:
        _wake_worker(job_id)
    if job_ids:
        logger.warning("re-queued %d stale generation jobs: %s", len(job_ids), job_ids)
    return len(job_ids)
