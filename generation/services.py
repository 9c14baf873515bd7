"""Writes of model versions: register a trained checkpoint, activate exactly one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from config.errors import ApplicationError
from generation.models import ModelVersion
from generation.selectors import model_version_active

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
        name="mel_16bar (demo)", checkpoint_path=DEFAULT_CHECKPOINT, config=config,
        metrics={**file_metrics, **metrics}, activate=True,
    )


def model_version_ensure_active() -> ModelVersion:
    """First use: the active version, registering the demo checkpoint when there is none."""
    return model_version_active() or model_version_register_default()
