"""Everything that writes to the catalog. One ingestion path for every source of MIDI."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from catalog.midi import InvalidMidi, analyze_midi, normalize_key, normalize_meter
from catalog.models import Rating, Track, User
from config.errors import ApplicationError, ConflictError

logger = logging.getLogger(__name__)

EDITABLE_TRACK_FIELDS = ("title", "composer", "collection", "region", "key", "time_signature")


@dataclasses.dataclass(frozen=True)
class IngestResult:
    track: Track
    created: bool


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
) -> IngestResult:
    """Validate MIDI bytes, read their metadata and store a Track with its file.

    Rejects (InvalidMidi, a 400) and stores nothing when the bytes are not MIDI, are corrupt,
    hold no notes or exceed the configured limits. The same bytes twice give the same track.
    """
    if len(midi_bytes) > settings.REFRAIN_MIDI_MAX_BYTES:
        raise InvalidMidi(
            f"The file is {len(midi_bytes) / 1024:.0f} KiB; the limit is "
            f"{settings.REFRAIN_MIDI_MAX_BYTES / 1024:.0f} KiB.",
            code="file_too_large",
        )
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
    track.midi_file.save(f"{content_hash}.mid", ContentFile(midi_bytes), save=False)
    try:
        with transaction.atomic():
            track.save()
    except IntegrityError:
        track.midi_file.delete(save=False)
        winner = Track.objects.filter(content_hash=content_hash).first()
        if winner is None:
            raise
        return IngestResult(winner, created=False)  # a concurrent upload of the same bytes won
    except BaseException:
        track.midi_file.delete(save=False)
        raise
    return IngestResult(track, created=True)


def track_refresh_metadata(*, track: Track) -> Track:
    """Recompute the metadata read from the file; titles and other edited fields are kept."""
    with track.midi_file.open("rb") as handle:
        data = handle.read()
    info = analyze_midi(data, max_seconds=float("inf"), max_notes=10**9)  # stored files stay stored
    for field in ("duration_seconds", "tempo_bpm", "note_count", "pitch_min", "pitch_max"):
        setattr(track, field, getattr(info, field))
    track.file_size = len(data)
    track.save(update_fields=["duration_seconds", "tempo_bpm", "note_count", "pitch_min", "pitch_max",
                              "file_size", "updated_at"])
    return track


def track_update(*, track: Track, **fields) -> Track:
    unknown = set(fields) - set(EDITABLE_TRACK_FIELDS)
    if unknown:
        raise ApplicationError(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    if "key" in fields and fields["key"]:
        key = normalize_key(fields["key"])
        if not key:
            raise ApplicationError("Key must look like 'D major', 'A minor' or 'G mixolydian'.", fields={"key": ["invalid key"]})
        fields["key"] = key
    if "time_signature" in fields:
        meter = normalize_meter(fields["time_signature"])
        if not meter:
            raise ApplicationError("Time signature must look like '3/4' or '6/8'.", fields={"time_signature": ["invalid"]})
        fields["time_signature"] = meter
    if "title" in fields and not str(fields["title"]).strip():
        raise ApplicationError("The title cannot be empty.", fields={"title": ["required"]})
    for name, value in fields.items():
        setattr(track, name, value.strip() if isinstance(value, str) else value)
    track.save(update_fields=[*fields, "updated_at"])
    return track


def track_delete(*, track: Track) -> None:
    """Delete the row, then its file once the deletion is committed."""
    midi_file = track.midi_file
    with transaction.atomic():
        track.delete()
        transaction.on_commit(lambda: midi_file.storage.delete(midi_file.name))


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
        raise ApplicationError(" ".join(exc.messages), code="weak_password", fields={"password": exc.messages})
    user.set_password(password)
    with transaction.atomic():
        user.save()
        token = Token.objects.create(user=user)
    return user, token.key
