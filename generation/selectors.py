"""Reads of model versions."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from config.errors import NotFoundError
from generation.models import GeneratedTrack, GenerationJob, ModelVersion


def model_version_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def model_version_all() -> list[ModelVersion]:
    return list(ModelVersion.objects.all())


def model_version_checkpoint_file(*, model_version: ModelVersion) -> Path:
    """The checkpoint as an absolute path (stored paths may be relative to BASE_DIR)."""
    path = Path(model_version.checkpoint_path)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def generation_job_list(*, user) -> QuerySet:
    """The jobs a user may see: their own, or all of them for staff."""
    jobs = GenerationJob.objects.select_related("model_version").prefetch_related("tracks")
    return jobs if user.is_staff else jobs.filter(owner=user)


def generation_job_get(*, user, job_id: int):
    job = generation_job_list(user=user).filter(pk=job_id).first()
    if job is None:  # another user's job is as invisible as one that does not exist
        raise NotFoundError(f"There is no generation job {job_id}.")
    return job


def generated_track_pool(*, exclude_track_ids, limit: int) -> list[tuple[int, int, list]]:
    """(track id, model version id, latent) of the newest generated tracks, without the excluded ones."""
    return list(
        GeneratedTrack.objects.filter(track__is_generated=True)
        .exclude(track_id__in=list(exclude_track_ids))
        .order_by("-track_id")
        .values_list("track_id", "model_version_id", "latent")[:limit]
    )


def generation_jobs_busy(*, owner, kind: str) -> bool:
    """Whether the user has a job of this kind waiting or running."""
    return GenerationJob.objects.filter(
        owner=owner, kind=kind, status__in=[GenerationJob.Status.PENDING, GenerationJob.Status.RUNNING]
    ).exists()
