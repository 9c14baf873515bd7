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
