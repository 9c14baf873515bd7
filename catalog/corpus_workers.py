"""Pool workers of `import_corpus`: each reads a tune and stores it through the ingestion service.

Kept apart from the command so that a spawned worker can import it before Django is set up
(nothing here imports Django at module level).
"""

from __future__ import annotations


def init_worker(db_name: str, media_root: str) -> None:
    """Set Django up in a fresh process, on the same database and media folder as the parent."""
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections

    connections["default"].settings_dict["NAME"] = db_name  # the test database when under tests
    settings.MEDIA_ROOT = media_root


def ingest_job(args) -> tuple[str, str, str, int | None]:
    """Read one tune and store it: (outcome, collection, reason, track id); outcome added|duplicate|skipped.

    With `process`, the new track's audio is marked pending but nothing is queued: the command
    announces the added tracks in chunks afterwards (one render and one embedding task per chunk).
    """
    from catalog import corpus, services
    from config.errors import ApplicationError

    job, process = args
    item = corpus.read(job)
    if isinstance(item, corpus.CorpusFailure):
        return "skipped", "", item.reason.split(":")[0], None
    try:
        result = services.track_ingest(
            midi_bytes=item.midi,
            title=item.title,
            composer=item.composer,
            collection=item.collection,
            region=item.region,
            source=item.source,
            key_hint=item.key,
            meter_hint=item.meter,
            process=process,
            announce=False,
        )
    except ApplicationError as exc:
        return "skipped", item.collection, exc.code, None
    return ("added" if result.created else "duplicate"), item.collection, "", result.track.pk
