"""python manage.py import_corpus: the music21 folk corpora into the catalog."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from catalog import corpus, selectors, services
from config.errors import ApplicationError

BATCH = 250  # tunes per transaction: one commit per batch instead of one per tune


class Command(BaseCommand):
    help = "Import the folk corpora that ship with music21 (about 13,000 tunes) through the ingestion service."

    def add_arguments(self, parser):
        parser.add_argument("--collections", nargs="+", choices=sorted(corpus.COLLECTIONS),
                            help="Collections to import (default: all).")
        parser.add_argument("--limit", type=int, help="Only the first N tunes of the chosen collections.")
        parser.add_argument("--per-collection", type=int, help="Only the first N tunes of each collection.")
        parser.add_argument("--json", type=Path, dest="json_path", help="Write the summary as JSON here.")
        parser.add_argument("--process", action="store_true",
                            help="Queue audio rendering and embedding for each added tune now (fine for a "
                                 "demo subset). Without it, audio is rendered on first request and "
                                 "embeddings come from `manage.py embed_catalog`.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, collections=None, limit=None, per_collection=None, json_path=None, no_progress=False,
               process=False, **_):
        chosen = collections or list(corpus.COLLECTIONS)
        if limit is not None and limit < 1 or per_collection is not None and per_collection < 1:
            raise CommandError("--limit and --per-collection must be positive.")
        started = time.perf_counter()
        present = selectors.corpus_sources_present(collections=chosen)
        expected = min(corpus.count_tunes(chosen, per_collection), limit or 10**9)
        counts: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        per_collection_added: Counter[str] = Counter()
        bar = tqdm(total=max(expected, 0), unit="tune", desc="import", disable=no_progress)
        tunes = corpus.iter_corpus(chosen, skip=present, per_collection=per_collection, limit=limit)
        try:
            while True:
                batch = _take(tunes, BATCH)
                if not batch:
                    break
                with transaction.atomic():
                    for item in batch:
                        outcome = _import_one(item, reasons, process)
                        counts[outcome] += 1
                        if outcome == "added":
                            per_collection_added[item.collection] += 1
                bar.update(len(batch))
                bar.set_postfix(added=counts["added"], skipped=counts["skipped"])
        finally:
            tunes.close()
            bar.close()
        summary = {
            "collections": chosen,
            "added": counts["added"],
            "already_present": counts["present"],
            "duplicates": counts["duplicate"],
            "skipped": counts["skipped"],
            "skip_reasons": dict(reasons.most_common()),
            "added_per_collection": dict(per_collection_added),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if json_path:
            json_path.write_text(json.dumps(summary, indent=2) + "\n")
        self.stdout.write(
            f"Imported {summary['added']} tunes; {summary['already_present']} were already there, "
            f"{summary['duplicates']} duplicated another tune's notes, {summary['skipped']} were skipped; "
            f"{summary['seconds']} s."
        )


def _take(iterator, n: int) -> list:
    batch = []
    for item in iterator:
        batch.append(item)
        if len(batch) >= n:
            break
    return batch


def _import_one(item, reasons: Counter, process: bool) -> str:
    if isinstance(item, corpus.AlreadyPresent):
        return "present"
    if isinstance(item, corpus.CorpusFailure):
        reasons[item.reason.split(":")[0]] += 1
        return "skipped"
    try:
        with transaction.atomic():
            result = services.track_ingest(
                midi_bytes=item.midi, title=item.title, composer=item.composer, collection=item.collection,
                region=item.region, source=item.source, key_hint=item.key, meter_hint=item.meter,
                process=process,
            )
    except ApplicationError as exc:
        reasons[exc.code] += 1
        return "skipped"
    return "added" if result.created else "duplicate"

