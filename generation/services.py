"""Writes of model versions: register a trained checkpoint, activate exactly one."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Track
from config.celery import enqueue
from config.errors import ApplicationError, ConflictError
from generation import events
from generation.models import GenerationJob, ModelVersion
from generation.selectors import model_version_active
from generation.tasks import run_generation_task

logger = logging.getLogger(__name__)

# The models committed with the code, so the platform can generate without training: the long-form
# model (a prior over sequences of 2-bar latents, with mel_2bar_large.pt) when its checkpoint is
# there, else the 16-bar demo VAE, which stays registrable for comparison.
LONGFORM_CHECKPOINT = "generation/checkpoints/latent_prior.pt"
LONGFORM_EVALUATION = "generation/checkpoints/latent_prior_eval.json"
DEMO_CHECKPOINT = "generation/checkpoints/mel_16bar.pt"
DEMO_EVALUATION = "generation/checkpoints/mel_16bar_eval.json"


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(settings.BASE_DIR) / p


def _checkpoint_summary(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config (with its "model_kind": musicvae or latent-prior) and metrics, read safely from the file."""
    # torch is imported here, not at module level: web processes import this module and never load a model.
    from generation.vae.checkpoint import CheckpointError, checkpoint_summary

    try:
        kind, config, metrics = checkpoint_summary(path)
    except CheckpointError as exc:
        raise ApplicationError(str(exc), code="invalid_checkpoint") from exc
    return {**config, "model_kind": kind}, metrics


def default_checkpoint() -> tuple[str, str, str]:
    """(name, checkpoint, evaluation report) of the model a fresh install activates."""
    if _resolve(LONGFORM_CHECKPOINT).is_file():
        return "long-form tunes (2-bar latents + prior)", LONGFORM_CHECKPOINT, LONGFORM_EVALUATION
    return "mel_16bar (demo)", DEMO_CHECKPOINT, DEMO_EVALUATION


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion) -> ModelVersion:
    """Make this version the only active one. Locks the rows so two activations cannot interleave."""
    list(ModelVersion.objects.select_for_update().filter(is_active=True))
    ModelVersion.objects.filter(is_active=True).exclude(pk=model_version.pk).update(is_active=False)
    # By update, not save(): the instance in hand may be stale (deactivated by another activation).
    ModelVersion.objects.filter(pk=model_version.pk).update(is_active=True)
    model_version.is_active = True
    events.model_version_activated.send_on_commit(model_version_id=model_version.pk)  # recommend re-embeds
    return model_version


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
    name, checkpoint, evaluation_path = default_checkpoint()
    existing = ModelVersion.objects.filter(checkpoint_path=checkpoint).first()
    if existing is not None:
        return model_version_activate(model_version=existing)
    metrics: dict[str, Any] = {}
    evaluation = _resolve(evaluation_path)
    if evaluation.is_file():
        report = json.loads(evaluation.read_text())
        metrics = {"test": report.get("reconstruction", {}), "samples": report.get("samples", {}).get("vae_prior", {})}
    config, file_metrics = _checkpoint_summary(_resolve(checkpoint))
    return model_version_register(
        name=name,
        checkpoint_path=checkpoint,
        config=config,
        metrics={**file_metrics, **metrics},
        activate=True,
    )


def model_version_ensure_active() -> ModelVersion:
    """First use: the active version, registering the demo checkpoint when there is none."""
    return model_version_active() or model_version_register_default()


# --- generation jobs -------------------------------------------------------------------------

STEER_ATTRIBUTES = ("note_density", "register", "major_minor", "syncopation")


IDEMPOTENCY_KEY_MAX = 128


@dataclasses.dataclass(frozen=True)
class JobCreated:
    job: GenerationJob
    created: bool  # False: the Idempotency-Key named a job made by an earlier request


def generation_job_create(*, owner, kind: str, params: dict[str, Any]) -> GenerationJob:
    """Validate a request, record it as a pending job and wake a worker once it is committed."""
    return generation_job_request(owner=owner, kind=kind, params=params).job


def generation_job_request(*, owner, kind: str, params: dict[str, Any], idempotency_key: str = "") -> JobCreated:
    """Validate a request, record it as a pending job and wake a worker once it is committed.

    The database row is the job: if the broker is down, the wake-up is logged and lost, and the
    job runs when a worker starts or beat's recovery (every minute) finds it pending. An
    `idempotency_key` makes a client's retry safe (as Stripe's Idempotency-Key): the same key with
    the same request returns the first job; with another request it is refused (409).
    """
    key = (idempotency_key or "").strip()
    if len(key) > IDEMPOTENCY_KEY_MAX:
        raise ApplicationError(
            f"The Idempotency-Key is longer than {IDEMPOTENCY_KEY_MAX} characters.", code="invalid_idempotency_key"
        )
    fingerprint = _request_fingerprint(kind, params) if key else ""
    if key:
        earlier = _job_for_key(owner, key, fingerprint)
        if earlier is not None:
            return JobCreated(earlier, created=False)
    version = model_version_ensure_active()
    clean = _job_params(kind, params, version)
    try:
        with transaction.atomic():
            job = GenerationJob.objects.create(
                owner=owner,
                kind=kind,
                params=clean,
                model_version=version,
                idempotency_key=key,
                request_fingerprint=fingerprint,
            )
            transaction.on_commit(lambda: generation_job_wake(job_id=job.pk))
    except IntegrityError:
        earlier = _job_for_key(owner, key, fingerprint) if key else None
        if earlier is None:
            raise
        return JobCreated(earlier, created=False)  # a concurrent retry with the same key won
    return JobCreated(job, created=True)


def _request_fingerprint(kind: str, params: dict[str, Any]) -> str:
    body = json.dumps({"kind": kind, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _job_for_key(owner, key: str, fingerprint: str) -> GenerationJob | None:
    earlier = GenerationJob.objects.filter(owner=owner, idempotency_key=key).first()
    if earlier is not None and earlier.request_fingerprint != fingerprint:
        raise ConflictError(
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
            code="idempotency_key_reused",
        )
    return earlier


def generation_job_wake(*, job_id: int, countdown: float | None = None) -> None:
    """Send the job's wake-up message (after `countdown` seconds). A broker outage is logged, not
    raised: the job is committed and recovery (worker start, beat every minute) wakes pending jobs
    whose message was lost."""
    enqueue(run_generation_task, job_id, countdown=countdown, recovery="worker start and beat wake pending jobs.")


METERS = ("2/4", "3/4", "4/4", "6/8")
LONGFORM_ONLY = ("continue", "infill")


def model_version_is_longform(model_version: ModelVersion) -> bool:
    return (model_version.config or {}).get("model_kind") == "latent-prior"


def _job_params(kind: str, params: dict[str, Any], model_version: ModelVersion | None = None) -> dict[str, Any]:
    """Business rules on a request (types and ranges are checked by the API's serializer too)."""
    longform = model_version is not None and model_version_is_longform(model_version)
    if kind not in GenerationJob.Kind.values:
        raise ApplicationError(
            f"Unknown kind {kind!r}: choose one of {', '.join(GenerationJob.Kind.values)}.",
            fields={"kind": ["unknown"]},
        )
    limit = settings.GENERATION_MAX_COUNT
    count = _number(params, "count", 1, int)
    if not 1 <= count <= limit:
        raise ApplicationError(f"count must be between 1 and {limit}.", fields={"count": [f"1..{limit}"]})
    # No temperature: the model's own served one (the long-form model's was chosen by measurement);
    # the 16-bar VAE keeps its 0.5.
    temperature = _number(params, "temperature", None if longform else 0.5, float)
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        raise ApplicationError(
            "temperature must be between 0 (most likely notes) and 2 (wild).", fields={"temperature": ["0..2"]}
        )
    seed = _number(params, "seed", None, int)
    seed = seed if seed is not None else secrets.randbelow(2**31)
    clean: dict[str, Any] = {"count": count, "temperature": temperature, "seed": seed}
    if kind in LONGFORM_ONLY and not longform:
        raise ApplicationError(
            f"The active model writes 16-bar melodies only and cannot {kind} a tune.",
            code="unsupported_kind",
            fields={"kind": ["not with this model"]},
        )
    clean.update(_shape_params(kind, params, longform))
    needed = {"sample": 0, "similar": 1, "steer": 1, "interpolate": 2, "continue": 1, "infill": 1}[kind]
    if params.get("track_id") is not None and params.get("track_ids"):
        raise ApplicationError(
            "Give either track_id or track_ids, not both.", fields={"track_ids": ["not with track_id"]}
        )
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


def _shape_params(kind: str, params: dict[str, Any], longform: bool) -> dict[str, Any]:
    """Length, meter and which bars: what a long-form job may choose (the 16-bar VAE: nothing)."""
    chosen = [name for name in ("bars", "meter", "prompt_bars", "from_bar", "to_bar") if params.get(name) is not None]
    if not longform:
        if chosen:
            raise ApplicationError(
                f"The active model writes 16-bar 4/4 melodies only: leave out {', '.join(chosen)}.",
                code="unsupported_parameter",
                fields={name: ["not with this model"] for name in chosen},
            )
        return {}
    max_bars = 64
    bars = _number(params, "bars", 16, int)
    if not 2 <= bars <= max_bars:
        raise ApplicationError(
            f"bars must be from 2 to {max_bars} (a tune is rounded up to whole 2-bar chunks; 4-bar in 2/4).",
            fields={"bars": [f"2..{max_bars}"]},
        )
    meter = params.get("meter") or "4/4"
    if meter not in METERS:
        raise ApplicationError(f"meter must be one of {', '.join(METERS)}.", fields={"meter": ["unknown"]})
    out: dict[str, Any] = {"bars": bars, "meter": meter}
    if kind == "continue":
        prompt = _number(params, "prompt_bars", 8, int)
        if not 2 <= prompt < bars:
            raise ApplicationError(
                "prompt_bars (the bars of the track kept as they are) must be at least 2 and fewer than bars.",
                fields={"prompt_bars": [f"2..{bars - 1}"]},
            )
        out["prompt_bars"] = prompt
    if kind == "infill":
        first, last = _number(params, "from_bar", None, int), _number(params, "to_bar", None, int)
        if first is None or last is None or not 1 <= first <= last <= max_bars:
            raise ApplicationError(
                "An infill job names the bars to write anew: from_bar and to_bar, 1-based, from_bar <= to_bar.",
                fields={"from_bar": ["1.."], "to_bar": ["from_bar.."]},
            )
        out.update(from_bar=first, to_bar=last)
    return out


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


def generation_jobs_recover() -> int:
    """Wake workers for jobs whose message may be lost: pending for a while, or running on a dead worker.

    Called when a worker starts and periodically by beat. Waking twice is harmless (see run).
    """
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
        generation_job_wake(job_id=job_id)
    if job_ids:
        logger.warning("re-queued %d stale generation jobs: %s", len(job_ids), job_ids)
    return len(job_ids)
