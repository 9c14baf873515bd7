"""Validate MIDI bytes with pretty_midi and read the metadata the catalog stores.

Plain Python (no Django): the ingestion service calls it, and so can anything else.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings

import numpy as np
import pretty_midi

from config.errors import ApplicationError

NOTE_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
# Krumhansl-Kessler key profiles, used when a file carries no key signature.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MODES = {
    "": "major",
    "maj": "major",
    "major": "major",
    "ion": "major",
    "ionian": "major",
    "m": "minor",
    "min": "minor",
    "minor": "minor",
    "aeo": "minor",
    "aeolian": "minor",
    "mix": "mixolydian",
    "mixolydian": "mixolydian",
    "dor": "dorian",
    "dorian": "dorian",
    "phr": "phrygian",
    "phrygian": "phrygian",
    "lyd": "lydian",
    "lydian": "lydian",
    "loc": "locrian",
    "locrian": "locrian",
}
_KEY_HINT = re.compile(r"^\s*([A-Ga-g])([#b]?)\s*([A-Za-z]*)")
_METER = re.compile(r"^\s*(\d{1,2})/(\d{1,2})\s*$")


class InvalidMidi(ApplicationError):
    code = "invalid_midi"


@dataclasses.dataclass(frozen=True)
class MidiInfo:
    duration_seconds: float
    tempo_bpm: float
    key: str
    time_signature: str
    note_count: int
    pitch_min: int
    pitch_max: int


def load_midi(data: bytes) -> pretty_midi.PrettyMIDI:
    """Parse bytes, turning every parser failure into one clear InvalidMidi."""
    if not data:
        raise InvalidMidi("The file is empty.", code="empty_file")
    if data[:4] != b"MThd":
        raise InvalidMidi(
            "This is not a Standard MIDI File (it does not start with the 'MThd' header).", code="not_midi"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about odd but legal files
            return pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as exc:  # mido/pretty_midi raise many types (EOFError, KeyError, ValueError, ...)
        raise InvalidMidi(
            f"The MIDI file is corrupt or truncated and could not be read ({type(exc).__name__}).",
            code="corrupt_midi",
        ) from exc


def analyze_midi(data: bytes, *, max_seconds: float, max_notes: int) -> MidiInfo:
    pm = load_midi(data)
    notes = [note for inst in pm.instruments if not inst.is_drum for note in inst.notes]
    if not notes:
        raise InvalidMidi("The MIDI file holds no pitched notes.", code="no_notes")
    if len(notes) > max_notes:
        raise InvalidMidi(f"The MIDI file holds {len(notes)} notes; the limit is {max_notes}.", code="too_many_notes")
    duration = float(max(note.end for note in notes))
    if not np.isfinite(duration) or duration <= 0:
        raise InvalidMidi("The MIDI file's notes have no duration.", code="no_duration")
    if duration > max_seconds:
        raise InvalidMidi(
            f"The MIDI file lasts {duration / 60:.1f} minutes; the limit is {max_seconds / 60:.0f} minutes.",
            code="too_long",
        )
    pitches = [note.pitch for note in notes]
    _, tempi = pm.get_tempo_changes()
    tempo = float(tempi[0]) if len(tempi) else 120.0
    return MidiInfo(
        duration_seconds=round(duration, 3),
        tempo_bpm=round(tempo, 2),
        key=_key_from_signature(pm) or estimate_key(notes),
        time_signature=_time_signature(pm),
        note_count=len(notes),
        pitch_min=min(pitches),
        pitch_max=max(pitches),
    )


def _key_from_signature(pm: pretty_midi.PrettyMIDI) -> str:
    if not pm.key_signature_changes:
        return ""
    number = pm.key_signature_changes[0].key_number
    return f"{NOTE_NAMES[number % 12]} {'major' if number < 12 else 'minor'}"


def _time_signature(pm: pretty_midi.PrettyMIDI) -> str:
    if not pm.time_signature_changes:
        return "4/4"
    ts = pm.time_signature_changes[0]
    return f"{ts.numerator}/{ts.denominator}"


def estimate_key(notes: list[pretty_midi.Note]) -> str:
    """Krumhansl-Schmuckler: correlate the duration-weighted pitch-class profile with each key."""
    histogram = np.zeros(12)
    for note in notes:
        histogram[note.pitch % 12] += note.end - note.start
    if histogram.sum() == 0:
        return ""
    best, best_score = "", -np.inf
    for tonic in range(12):
        for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
            score = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]
            if score > best_score:
                best, best_score = f"{NOTE_NAMES[tonic]} {mode}", score
    return best


def normalize_key(hint: str) -> str:
    """'Dmix' -> 'D mixolydian', 'Am' -> 'A minor', 'F#' -> 'F# major'; '' when unreadable."""
    match = _KEY_HINT.match(hint or "")
    if not match:
        return ""
    letter, accidental, mode = match.groups()
    mode_name = _MODES.get(mode.lower()[:3] if mode.lower()[:3] in _MODES else mode.lower())
    if mode_name is None:
        mode_name = "major" if mode.lower() in ("", "hp", "exp") else None
    if mode_name is None:
        return ""
    return f"{letter.upper()}{accidental} {mode_name}"


def normalize_meter(hint: str) -> str:
    match = _METER.match(hint or "")
    if not match:
        return ""
    numerator, denominator = int(match.group(1)), int(match.group(2))
    if numerator == 0 or denominator not in (1, 2, 4, 8, 16, 32):
        return ""
    return f"{numerator}/{denominator}"
