"""Everything that writes to the catalog. One ingestion path for every source of MIDI."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from catalog import events, rendering
from catalog.midi import InvalidMidi, analyze_midi, normalize_key, normalize_meter, parse_midi
from catalog.models import Rating, Track, TrackMedia, User
from catalog.tasks import track_render_audio_task, tracks_render_audio_task
from config.celery import enqueue
from config.errors import ApplicationError, ConflictError, StorageUnavailableError

logger = logging.getLogger(__name__)

EDITABLE_TRACK_FIELDS = ("title", "composer", "collection", "region", "key", "time_signature")


@dataclasses.dataclass(frozen=True)
class IngestResult:
    track: Track
    created: bool


def midi_size_check(*, size: int) -> None:
    """Refuse a file over the configured size (the API calls this before reading an upload)."""
    limit = settings.REFRAIN_MIDI_MAX_BYTES
    if size > limit:
        raise InvalidMidi(
            f"The file is {size / 1024:.0f} KiB; the limit is {limit / 1024:.0f} KiB.", code="file_too_large"
        )


def track_ingest(
    *,
    midi_bytes: bytes,
    title: str = "",
    composer: str = "",
    collection: str = "",
    region: str = "",
    source: str = "",
    key_hint: str = "",
    meter_hint: str = "",
    is_generated: bool = False,
    created_by: User | None = None,
    process: bool = True,
    announce: bool = True,
) -> IngestResult:
    """Validate MIDI bytes, read their metadata and store a Track with its file.

    Rejects (InvalidMidi, a 400) and stores nothing when the bytes are not MIDI, are corrupt,
    hold no notes or exceed the configured limits. The same bytes twice give the same track.
    With `process` (the default) the track's audio is marked pending and, with `announce` too, its
    render is queued and `tracks_created` is sent once committed (recommend embeds it). A caller that
    stores many tracks in one transaction passes announce=False and calls tracks_process once with
    all of them: one render task and one embedding task for the lot. Bulk imports pass
    process=False, so that 13,000 tunes do not queue hours of rendering ahead of users' uploads:
    their audio is rendered on first request, their embeddings by `embed_missing`.
    """
    midi_size_check(size=len(midi_bytes))
    content_hash = hashlib.sha256(midi_bytes).hexdigest()
    existing = Track.objects.filter(content_hash=content_hash).first()
    if existing is not None:
        return IngestResult(existing, created=False)
    info = analyze_midi(
        midi_bytes, max_seconds=settings.REFRAIN_MIDI_MAX_SECONDS, max_notes=settings.REFRAIN_MIDI_MAX_NOTES
    )
    track = Track(
        title=(title or "Untitled").strip()[:300],
        composer=composer.strip()[:200],
        collection=collection.strip()[:100],
        region=region.strip()[:100],
        source=source[:300],
        content_hash=content_hash,
        file_size=len(midi_bytes),
        duration_seconds=info.duration_seconds,
        tempo_bpm=info.tempo_bpm,
        key=normalize_key(key_hint) or info.key,
        time_signature=normalize_meter(meter_hint) or info.time_signature,
        note_count=info.note_count,
        pitch_min=info.pitch_min,
        pitch_max=info.pitch_max,
        is_generated=is_generated,
        created_by=created_by,
    )
    # The file is written first; if the row cannot be stored the file is removed again, so a
    # failure never leaves an orphan file (nor, thanks to the transaction, an orphan row).
    name = track.midi_file.field.generate_filename(track, f"{content_hash}.mid")
    track.midi_file.name, wrote = _store_content_addressed(track.midi_file.storage, name, midi_bytes)
    try:
        with transaction.atomic():
            track.save()
            if process and announce:
                tracks_process(track_ids=[track.pk])
            elif process:
                _media_mark_pending([track.pk])  # the caller queues the render with the rest of its batch
    except IntegrityError:
        winner = Track.objects.filter(content_hash=content_hash).first()
        if winner is None:
            if wrote:
                track.midi_file.storage.delete(name)
            raise
        return IngestResult(winner, created=False)  # a concurrent upload of the same bytes won (same file)
    except BaseException:
        if wrote:
            track.midi_file.storage.delete(name)
        raise
    return IngestResult(track, created=True)


def _store_content_addressed(storage, name: str, data: bytes) -> tuple[str, bool]:
    """Write `data` under `name` (named by its hash); (name, whether this call wrote the file).

    A file already there with the same bytes is kept (a concurrent upload of the same file, or one
    whose row a crash rolled back). Anything else under the name (a 0-byte or partial file left by
    a full disk) is replaced, so a retry is stored under the content hash, never under a suffixed
    name. A write the store refuses (disk full, read-only) leaves nothing behind and is a 503.
    """
    if storage.exists(name):
        with storage.open(name, "rb") as handle:
            if handle.read() == data:
                return name, False
        storage.delete(name)
    try:
        saved = storage.save(name, ContentFile(data))
    except OSError as exc:
        if storage.exists(name):
            storage.delete(name)  # the partial file the failed write left
        logger.error("The media store refused to write %s: %s", name, exc)
        raise StorageUnavailableError(
            f"The file could not be stored ({exc.strerror or exc}); nothing was kept. Try again in a minute."
        ) from exc
    if saved != name:  # another upload of the same bytes wrote `name` between the check and the save
        storage.delete(saved)
        return name, False
    return saved, True


def tracks_process(*, track_ids: list[int]) -> None:
    """Once the current transaction commits: render these new tracks' audio in one `cpu` task and
    announce them (tracks_created), so that whatever derives state from tracks (embeddings) does."""
    ids = [int(i) for i in track_ids]
    if not ids:
        return
    _media_mark_pending(ids)
    transaction.on_commit(functools.partial(_enqueue, tracks_render_audio_task, ids))
    events.tracks_created.send_on_commit(track_ids=ids)


RENDER_RECOVERY = "beat and the audio endpoint re-queue a render pending past REFRAIN_AUDIO_PENDING_TIMEOUT."


def _enqueue(task, *args, **kwargs) -> None:
    enqueue(task, *args, recovery=RENDER_RECOVERY, **kwargs)


def track_refresh_metadata(*, track: Track) -> Track:
    """Recompute the metadata read from the file; titles and other edited fields are kept."""
    with track.midi_file.open("rb") as handle:
        data = handle.read()
    info = analyze_midi(data, max_seconds=float("inf"), max_notes=10**9)  # stored files stay stored
    for field in ("duration_seconds", "tempo_bpm", "note_count", "pitch_min", "pitch_max"):
        setattr(track, field, getattr(info, field))
    track.file_size = len(data)
    track.save(
        update_fields=[
            "duration_seconds",
            "tempo_bpm",
            "note_count",
            "pitch_min",
            "pitch_max",
            "file_size",
            "updated_at",
        ]
    )
    return track


def track_update(*, track: Track, **fields) -> Track:
    unknown = set(fields) - set(EDITABLE_TRACK_FIELDS)
    if unknown:
        raise ApplicationError(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    if "key" in fields and fields["key"]:
        key = normalize_key(fields["key"])
        if not key:
            raise ApplicationError(
                "Key must look like 'D major', 'A minor' or 'G mixolydian'.", fields={"key": ["invalid key"]}
            )
        fields["key"] = key
    if "time_signature" in fields:
        meter = normalize_meter(fields["time_signature"])
        if not meter:
            raise ApplicationError(
                "Time signature must look like '3/4' or '6/8'.", fields={"time_signature": ["invalid"]}
            )
        fields["time_signature"] = meter
    if "title" in fields and not str(fields["title"]).strip():
        raise ApplicationError("The title cannot be empty.", fields={"title": ["required"]})
    for name, value in fields.items():
        setattr(track, name, value.strip() if isinstance(value, str) else value)
    track.save(update_fields=[*fields, "updated_at"])
    return track


def track_delete(*, track: Track) -> None:
    """Delete the row, then its files (MIDI, rendered audio, piano rolls) once the deletion is committed."""
    midi_file = track.midi_file
    media = TrackMedia.objects.filter(track=track).first()
    media_files = (
        [f for f in (media.audio_file, media.pianoroll_file, media.pianoroll_thumb_file) if f] if media else []
    )
    track_id = track.pk
    with transaction.atomic():
        track.delete()
        events.tracks_deleted.send_on_commit(track_ids=[track_id])
        for stored in (midi_file, *media_files):
            if stored.name:
                transaction.on_commit(functools.partial(stored.storage.delete, stored.name))


def rating_set(*, user: User, track: Track, score: int) -> tuple[Rating, bool]:
    if not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5:
        raise ApplicationError("The score must be a whole number from 1 to 5.", fields={"score": ["1..5"]})
    rating, created = Rating.objects.update_or_create(user=user, track=track, defaults={"score": score})
    return rating, created


def rating_delete(*, user: User, track: Track) -> None:
    deleted, _ = Rating.objects.filter(user=user, track=track).delete()
    if not deleted:
        raise ApplicationError("You have not rated this track.", code="not_rated")


def user_register(*, username: str, password: str, email: str = "") -> tuple[User, str]:
    """Create an account and its API token."""
    if User.objects.filter(username__iexact=username).exists():
        raise ConflictError("That username is taken.", fields={"username": ["taken"]})
    user = User(username=username, email=email)
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise ApplicationError(" ".join(exc.messages), code="weak_password", fields={"password": exc.messages}) from exc
    user.set_password(password)
    with transaction.atomic():
        user.save()
        token = Token.objects.create(user=user)
    return user, token.key


# --- Track media: rendered audio and piano rolls (catalog.rendering does the drawing and synthesis) ---


def _media_mark_pending(track_ids: list[int]) -> None:
    """Mark these tracks' audio as pending (a render is about to be queued)."""
    now = timezone.now()
    existing = set(TrackMedia.objects.filter(track_id__in=track_ids).values_list("track_id", flat=True))
    # ignore_conflicts: a render task or another request may create the same row at the same moment.
    TrackMedia.objects.bulk_create(
        [TrackMedia(track_id=t) for t in track_ids if t not in existing], ignore_conflicts=True
    )
    TrackMedia.objects.filter(track_id__in=track_ids).update(
        audio_status=TrackMedia.AudioStatus.PENDING, audio_error="", audio_requested_at=now, updated_at=now
    )


def track_media_schedule(*, track: Track, force: bool = False) -> TrackMedia:
    """Mark the track's audio as pending and enqueue its render (queue cpu) once this transaction commits."""
    _media_mark_pending([track.pk])
    transaction.on_commit(functools.partial(_enqueue, track_render_audio_task, track.pk, force=force))
    media = TrackMedia.objects.get(track=track)
    media.track = track
    return media


RENDER_CHUNK = 32  # tracks per render task when renders are queued in bulk


def media_renders_recover(*, older_than_seconds: float | None = None) -> int:
    """Queue again the renders pending for longer than REFRAIN_AUDIO_PENDING_TIMEOUT: their message
    was lost (a broker outage when the track was stored, a purged queue) or their task gave up (the
    database was down through every retry). Run by beat; a render that is merely slow is skipped as
    current when its duplicate arrives. Returns how many tracks were queued again."""
    limit = settings.REFRAIN_AUDIO_PENDING_TIMEOUT if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=limit)
    stale = list(
        TrackMedia.objects.filter(audio_status=TrackMedia.AudioStatus.PENDING, audio_requested_at__lt=cutoff)
        .order_by("track_id")
        .values_list("track_id", flat=True)
    )
    for start in range(0, len(stale), RENDER_CHUNK):
        chunk = stale[start : start + RENDER_CHUNK]
        TrackMedia.objects.filter(track_id__in=chunk).update(audio_requested_at=timezone.now())
        _enqueue(tracks_render_audio_task, chunk)
    if stale:
        logger.warning("re-queued %d audio renders pending for more than %d s", len(stale), limit)
    return len(stale)


def track_audio_request(*, track: Track) -> TrackMedia:
    """The track's media for the audio endpoint; enqueues a render when there is none yet, when the
    file changed since the last one, or when a pending render looks lost."""
    media = TrackMedia.objects.filter(track=track).first()
    if media is not None:
        media.track = track
        if media.audio_is_current:
            return media
        same_file = media.audio_source_hash == track.content_hash
        if media.audio_status == TrackMedia.AudioStatus.FAILED and same_file:
            return media  # the same bytes would fail again; staff can re-render from the admin
        if (
            media.audio_status == TrackMedia.AudioStatus.PENDING
            and media.audio_requested_at
            and ((timezone.now() - media.audio_requested_at).total_seconds() < settings.REFRAIN_AUDIO_PENDING_TIMEOUT)
        ):
            return media
    return track_media_schedule(track=track)


def track_media_render(*, track: Track, force: bool = False) -> TrackMedia:
    """Render the audio and piano rolls of the track's current file (skipped when already current).

    A MIDI file that cannot be rendered marks the audio failed, with the reason; a missing SoundFont
    or program (a deployment problem) marks it failed and raises as well, so the worker log says so.
    """
    media, _ = TrackMedia.objects.get_or_create(track=track)
    media.track = track
    source_hash = track.content_hash
    with track.midi_file.open("rb") as handle:
        midi_bytes = handle.read()
    try:
        midi = parse_midi(midi_bytes)  # parsed once, for both piano rolls and the audio's length
    except InvalidMidi as exc:
        _update_media(
            media,
            audio_status=TrackMedia.AudioStatus.FAILED,
            audio_error=str(exc)[:2000],
            audio_source_hash=source_hash,
        )
        return media
    if force or not _pianorolls_current(media):
        _store_pianorolls(media, midi)
    if media.audio_is_current and not force:
        return media
    try:
        rendered = rendering.render_audio(
            midi_bytes,
            end_time=float(midi.get_end_time()),
            soundfont=settings.REFRAIN_SOUNDFONT,
            bitrate_kbps=settings.REFRAIN_AUDIO_BITRATE_KBPS,
            sample_rate=settings.REFRAIN_AUDIO_SAMPLE_RATE,
            target_lufs=settings.REFRAIN_AUDIO_TARGET_LUFS,
            peak_ceiling_dbfs=settings.REFRAIN_AUDIO_PEAK_CEILING_DBFS,
        )
    except rendering.AudioRenderError as exc:
        logger.warning("Audio render of track %s failed: %s", track.pk, exc)
        _update_media(
            media,
            audio_status=TrackMedia.AudioStatus.FAILED,
            audio_error=str(exc)[:2000],
            audio_source_hash=source_hash,
        )
        if isinstance(exc, (rendering.SoundFontMissing, rendering.RendererMissing)):
            raise
        return media
    old_name = media.audio_file.name if media.audio_file else ""
    media.audio_source_hash = source_hash
    name = _store_file(media.audio_file, rendered.data)
    _update_media(
        media,
        audio_status=TrackMedia.AudioStatus.READY,
        audio_file=name,
        audio_source_hash=source_hash,
        audio_error="",
        audio_size=len(rendered.data),
        audio_duration_seconds=round(rendered.duration_seconds, 3),
        audio_loudness_lufs=rendered.loudness_lufs,
        render_seconds=round(rendered.render_seconds, 3),
        audio_rendered_at=timezone.now(),
    )
    if old_name and old_name != name:
        media.audio_file.storage.delete(old_name)
    logger.info(
        "Rendered track %s: %.1f s of audio in %.2f s, %d KiB, %.1f LUFS",
        track.pk,
        rendered.duration_seconds,
        rendered.render_seconds,
        len(rendered.data) // 1024,
        rendered.loudness_lufs,
    )
    return media


def tracks_media_render(*, track_ids: list[int]) -> int:
    """Render a batch of tracks one after another; returns how many are current afterwards.

    A track deleted meanwhile is skipped; a file that cannot be rendered is marked failed and the
    batch goes on (a missing renderer, a deployment problem, still raises).
    """
    done = 0
    for track in Track.objects.filter(pk__in=list(track_ids)).order_by("pk"):
        media = track_media_render(track=track)
        done += media.audio_is_current
    return done


def track_pianoroll_ensure(*, track: Track, thumbnail: bool = False):
    """The track's piano-roll PNG (a FieldFile), drawn now if missing or made from an older file."""
    media, _ = TrackMedia.objects.get_or_create(track=track)
    media.track = track
    if not _pianorolls_current(media):
        with track.midi_file.open("rb") as handle:
            _store_pianorolls(media, parse_midi(handle.read()))
    return media.pianoroll_thumb_file if thumbnail else media.pianoroll_file


def _pianorolls_current(media: TrackMedia) -> bool:
    if media.pianoroll_source_hash != media.track.content_hash:
        return False
    files = (media.pianoroll_file, media.pianoroll_thumb_file)
    return all(f and f.name and f.storage.exists(f.name) for f in files)


def _store_pianorolls(media: TrackMedia, midi) -> None:
    old = {f.name for f in (media.pianoroll_file, media.pianoroll_thumb_file) if f and f.name}
    media.pianoroll_source_hash = media.track.content_hash
    full = _store_file(
        media.pianoroll_file, rendering.render_pianoroll(midi, title=media.track.title), filename="pianoroll.png"
    )
    thumb = _store_file(
        media.pianoroll_thumb_file,
        rendering.render_pianoroll(midi, thumbnail=True),
        filename="pianoroll-thumb.png",
    )
    _update_media(
        media, pianoroll_file=full, pianoroll_thumb_file=thumb, pianoroll_source_hash=media.pianoroll_source_hash
    )
    for name in old - {full, thumb}:
        media.pianoroll_file.storage.delete(name)


def _store_file(field_file, data: bytes, filename: str = "") -> str:
    """Write `data` under the field's upload_to name, replacing what is there; returns the name."""
    name = field_file.field.generate_filename(field_file.instance, filename or "file")
    storage = field_file.storage
    if storage.exists(name):
        storage.delete(name)  # storages never overwrite; the content under this name is being replaced
    saved = storage.save(name, ContentFile(data))
    field_file.name = saved
    return saved


def _update_media(media: TrackMedia, **fields) -> None:
    """Write only these columns; if the track was deleted meanwhile, remove the files just written."""
    fields["updated_at"] = timezone.now()
    updated = TrackMedia.objects.filter(pk=media.pk).update(**fields)
    for name, value in fields.items():
        if name in ("audio_file", "pianoroll_file", "pianoroll_thumb_file"):
            getattr(media, name).name = value
        else:
            setattr(media, name, value)
    if not updated:
        for field_file in (media.audio_file, media.pianoroll_file, media.pianoroll_thumb_file):
            if field_file and field_file.name and field_file.name in fields.values():
                field_file.storage.delete(field_file.name)


def media_prune_orphans(*, older_than_seconds: float = 3600, dry_run: bool = False) -> list[str]:
    """Delete files under MEDIA_ROOT/tracks/ that no row refers to.

    They come from a process killed between writing a file and committing its row (the row rolls
    back, the file stays). Only files older than `older_than_seconds` go: a younger one may belong
    to an ingestion that has not committed yet.
    """
    root = Path(settings.MEDIA_ROOT)
    referenced = set(Track.objects.values_list("midi_file", flat=True))
    for field in ("audio_file", "pianoroll_file", "pianoroll_thumb_file"):
        referenced.update(TrackMedia.objects.exclude(**{field: ""}).values_list(field, flat=True))
    cutoff = time.time() - older_than_seconds
    removed = []
    for path in sorted((root / "tracks").rglob("*")) if (root / "tracks").exists() else []:
        name = path.relative_to(root).as_posix()
        if path.is_file() and name not in referenced and path.stat().st_mtime < cutoff:
            removed.append(name)
            if not dry_run:
                os.remove(path)
    if removed:
        logger.warning("%s %d orphan media files", "would remove" if dry_run else "removed", len(removed))
    return removed
