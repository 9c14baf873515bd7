"""Model versions: which trained checkpoint the platform generates and embeds with."""

from __future__ import annotations

from django.conf import settings
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


class GenerationJob(models.Model):
    """A request for new melodies. The database row is the truth; Celery messages only wake workers."""

    class Kind(models.TextChoices):
        SAMPLE = "sample", "from the prior"
        SIMILAR = "similar", "near a track"
        INTERPOLATE = "interpolate", "between two tracks"
        STEER = "steer", "a track moved along an attribute"
        CONTINUE = "continue", "a track's first bars, continued"
        INFILL = "infill", "a track with chosen bars written anew"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    params = models.JSONField(default=dict)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    # A running job whose lease has expired was abandoned by a dead worker and may be claimed again.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    batch_id = models.UUIDField(null=True, blank=True, help_text="The decode pass this job was part of.")
    batch_jobs = models.PositiveIntegerField(default=0, help_text="How many jobs shared that decode pass.")
    tracks = models.ManyToManyField("catalog.Track", blank=True, related_name="generation_jobs")
    # A client's Idempotency-Key: the same key again returns this job instead of making another.
    idempotency_key = models.CharField(max_length=128, blank=True, default="")
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    timings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["owner", "-created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="generation_job_idempotency_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} job #{self.pk} ({self.status})"


class GeneratedTrack(models.Model):
    """Where a generated catalog track came from: job, model version, parents, latent vector."""

    track = models.OneToOneField("catalog.Track", on_delete=models.CASCADE, related_name="generation")
    job = models.ForeignKey(GenerationJob, null=True, on_delete=models.SET_NULL, related_name="outputs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="generated_tracks")
    parents = models.ManyToManyField("catalog.Track", blank=True, related_name="children")
    latent = models.JSONField(help_text="The z the melody was decoded from.")
    position = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"generated track {self.track_id} (job {self.job_id})"
