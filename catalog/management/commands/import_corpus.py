"""python manage.py import_corpus: the music21 folk corpora into the catalog."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from tqdm import tqdm

from catalog import corpus, corpus_workers, selectors, services

PROCESS_CHUNK = 32  # tracks per render task and per embedding task after a --process import


class Command(BaseCommand):
    help = "Import the folk corpora that ship with music21 (about 13,000 tunes) through the ingestion service."

    def add_arguments(self, parser):
        parser.add_argument(
            "--collections", nargs="+", choices=sorted(corpus.COLLECTIONS), help="Collections to import (default: all)."
        )
        parser.add_argument("--limit", type=int, help="Only the first N tunes of the chosen collections.")
        parser.add_argument("--per-collection", type=int, help="Only the first N tunes of each collection.")
        parser.add_argument("--json", type=Path, dest="json_path", help="Write the summary as JSON here.")
        parser.add_argument(
            "--process",
            action="store_true",
            help="Queue audio rendering and embedding for each added tune now (fine for a "
            "demo subset). Without it, audio is rendered on first request and "
            "embeddings come from `manage.py embed_catalog`.",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=os.cpu_count() or 2,
            help="Processes that parse and ingest (default: one per core).",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(
        self,
        *args,
        collections=None,
        limit=None,
        per_collection=None,
        json_path=None,
        no_progress=False,
        process=False,
        workers=2,
        **_,
    ):
        if limit is not None and limit < 1 or per_collection is not None and per_collection < 1:
            raise CommandError("--limit and --per-collection must be positive.")
        chosen = collections or list(corpus.COLLECTIONS)
        started = time.perf_counter()
        present = selectors.corpus_sources_present(collections=chosen)
        jobs = corpus.plan(chosen, per_collection, limit)
        todo = [job for job in jobs if corpus.job_source(job) not in present]
        counts: Counter[str] = Counter(present=len(jobs) - len(todo))
        reasons: Counter[str] = Counter()
        added: Counter[str] = Counter()
        bar = tqdm(total=len(todo), unit="tune", desc="import", disable=no_progress)
        new_ids: list[int] = []
        for outcome, collection, reason, track_id in _run(todo, process, workers):
            counts[outcome] += 1
            if outcome == "added":
                added[collection] += 1
                new_ids.append(track_id)
            if reason:
                reasons[reason] += 1
            bar.update(1)
            if bar.n % 200 == 0:
                bar.set_postfix(added=counts["added"], skipped=counts["skipped"])
        bar.close()
        if process:
            # Render and embed in chunks: a few dozen tasks for the demo import, not one per tune,
            # so a listener's first generation job is not queued behind hundreds of them.
            for start in range(0, len(new_ids), PROCESS_CHUNK):
                services.tracks_process(track_ids=sorted(new_ids)[start : start + PROCESS_CHUNK])
        summary = {
            "collections": chosen,
            "added": counts["added"],
            "already_present": counts["present"],
            "duplicates": counts["duplicate"],
            "skipped": counts["skipped"],
            "skip_reasons": dict(reasons.most_common()),
            "added_per_collection": dict(added),
            "workers": workers if len(todo) >= corpus.POOL_THRESHOLD else 1,
            "seconds": round(time.perf_counter() - started, 1),
        }
        if json_path:
            json_path.write_text(json.dumps(summary, indent=2) + "\n")
        self.stdout.write(
            f"Imported {summary['added']} tunes; {summary['already_present']} were already there, "
            f"{summary['duplicates']} duplicated another tune's notes, {summary['skipped']} were skipped; "
            f"{summary['seconds']} s."
        )


def _run(todo: list, process: bool, workers: int):
    """Outcomes in any order. Large imports parse and ingest in a pool, one process per core:
    pretty_midi's validation is the expensive part, and each tune commits on its own, so the
    database is only locked for the insert itself."""
    if len(todo) < corpus.POOL_THRESHOLD or workers <= 1:
        for job in todo:
            yield corpus_workers.ingest_job((job, process))
        return
    db_name = connections["default"].settings_dict["NAME"]
    context = multiprocessing.get_context("spawn")
    with context.Pool(
        workers, initializer=corpus_workers.init_worker, initargs=(str(db_name), str(settings.MEDIA_ROOT))
    ) as pool:
        yield from pool.imap_unordered(corpus_workers.ingest_job, [(job, process) for job in todo], chunksize=8)
