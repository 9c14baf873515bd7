"""Embed every track that has no embedding for the active model version, then rebuild its index."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from generation.selectors import model_version_active
from recommend import selectors, services


class Command(BaseCommand):
    help = "Embed every track lacking an embedding for the active model version (then rebuild the index)."

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=256, help="Tracks read and encoded per step.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs, CI).")

    def handle(self, *args, batch: int, no_progress: bool, **opts):
        from tqdm import tqdm

        if batch <= 0:
            raise CommandError("--batch must be positive.")
        version = model_version_active()
        if version is None:
            raise CommandError("No model version is active (manage.py register_default_model activates one).")
        todo = list(selectors.tracks_missing_embedding(model_version=version))
        started = time.perf_counter()
        embedded, skipped = 0, 0
        with tqdm(total=len(todo), unit="track", disable=no_progress or not todo, desc="embedding") as bar:
            for i in range(0, len(todo), batch):
                chunk = todo[i : i + batch]
                report = services.track_embed_batch(track_ids=chunk, model_version=version, batch_size=batch)
                embedded += len(report.embedded)
                skipped += len(report.skipped)
                bar.update(len(chunk))
        seconds = time.perf_counter() - started
        indexed = services.index_rebuild(model_version=version)
        services.index_mark_complete(model_version=version)  # feeds may switch to this version now
        per_track = f", {seconds / embedded * 1000:.1f} ms per track" if embedded else ""
        self.stdout.write(
            f"model version {version.pk}: embedded {embedded} tracks, skipped {skipped} "
            f"(no usable melody) in {seconds:.1f} s{per_track}; index holds {indexed} tracks"
        )
