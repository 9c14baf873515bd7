"""Rebuild the active (or a given) model version's FAISS index from the embeddings in the database."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from generation.models import ModelVersion
from generation.selectors import model_version_active
from recommend import index_readers, services


class Command(BaseCommand):
    help = "Rebuild a model version's similarity index from the database (the source of truth) and save it."

    def add_arguments(self, parser):
        parser.add_argument(
            "--model-version", type=int, default=None, help="Model version id (default: the active one)."
        )

    def handle(self, *args, model_version: int | None, **opts):
        version = (
            ModelVersion.objects.filter(pk=model_version).first()
            if model_version is not None
            else model_version_active()
        )
        if version is None:
            raise CommandError("No such model version." if model_version is not None else "No model version is active.")
        started = time.perf_counter()
        count = services.index_rebuild(model_version=version)
        if not count:
            self.stdout.write(
                f"model version {version.pk} has no embeddings yet (manage.py embed_catalog); nothing written"
            )
            return
        self.stdout.write(
            f"model version {version.pk}: indexed {count} tracks in {time.perf_counter() - started:.2f} s "
            f"-> {index_readers.index_dir(version.pk)}"
        )
