"""Reads of model versions."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from generation.models import ModelVersion


def model_version_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def model_version_list() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.all()


def model_version_checkpoint_file(*, model_version: ModelVersion) -> Path:
    """The checkpoint as an absolute path (stored paths may be relative to BASE_DIR)."""
    path = Path(model_version.checkpoint_path)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def generation_job_list(*, user) -> QuerySet:
    """The jobs a user may see: their own, or all of them for staff."""
    from generation.models import GenerationJob

    jobs = GenerationJob.objects.select_related("model_version").prefetch_related("tracks")
    return jobs if user.is_staff else jobs.filter(owner=user)


def generation_job_get(*, user, job_id: int):
    from config.errors import NotFoundError

    job = generation_job_list(user=user).filter(pk=job_id).first()
    if job is None:  # another user's job is as invisible as one that does not exist
        raise NotFoundError(f"There is no generation job {job_id}.")
    return job
