"""Register the committed demo checkpoint as the active model version if none is active (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from generation import services


class Command(BaseCommand):
    help = "Make sure a model version is active, registering the committed demo checkpoint if needed."

    def handle(self, *args, **opts):
        version = services.model_version_register_default()
        self.stdout.write(f"active model version: {version} ({version.checkpoint_path})")
