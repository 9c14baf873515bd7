"""Bring this host's index folders up to the database's change log; with --follow, keep doing so.

Run one `index_sync --follow` per host (next to the web processes, sharing their REFRAIN_INDEX_DIR):
each host then holds its own copy of every index, fed from the database, the source of truth. A
folder that is missing or unreadable is rebuilt from the embeddings.
"""

from __future__ import annotations

import logging
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from generation.selectors import model_version_active
from recommend import services
from recommend.selectors import serving_version

logger = logging.getLogger(__name__)


def versions_to_sync() -> list:
    """The serving version and the active one (filling its index before it serves)."""
    versions = {v.pk: v for v in (serving_version(), model_version_active()) if v is not None}
    return list(versions.values())


class Command(BaseCommand):
    help = "Apply the index changes logged in the database to this host's index folders."

    def add_arguments(self, parser):
        parser.add_argument("--follow", action="store_true", help="Keep syncing every --interval seconds.")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between syncs with --follow.")

    def handle(self, *args, follow: bool, interval: float, **opts):
        while True:
            for version in versions_to_sync():
                try:
                    written = services.index_sync(model_version=version)
                except Exception:
                    if not follow:
                        raise
                    logger.exception("index_sync of model version %s failed; retrying", version.pk)
                    continue
                if written or not follow:
                    self.stdout.write(f"model version {version.pk}: {written} tracks written")
            if not follow:
                return
            close_old_connections()
            time.sleep(interval)
