"""Model versions: which trained checkpoint the platform generates and embeds with."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """One trained checkpoint, its config and metrics. At most one is active (a DB constraint)."""

    name = models.CharField(max_length=100)
    config = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    # Relative paths are relative to the project root (BASE_DIR), so the committed demo
    # checkpoint stays valid wherever the repository is checked out.
    checkpoint_path = models.CharField(max_length=500)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="generation_modelversion_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}{' (active)' if self.is_active else ''}"
