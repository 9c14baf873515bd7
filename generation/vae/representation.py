"""Monophonic melody <-> tokens on a 16th-note grid.

Token vocabulary (MusicVAE's melody encoding):
    0 HOLD      keep doing what the previous step did (sustain a note, or stay silent)
    1 OFF       end the sounding note (rest starts)
    2 + p - 21  note-on of MIDI pitch p, for p in 21..108 (the piano range)

The grid is fixed at 4 steps per quarter note, so a tokens -> MIDI -> tokens round trip is exact for
every canonical sequence (see `canonicalize`). Real MIDI is quantized to that grid on the way in.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pretty_midi

HOLD = 0
OFF = 1
MIN_PITCH = 21
MAX_PITCH = 108
FIRST_NOTE = 2
VOCAB_SIZE = FIRST_NOTE + MAX_PITCH - MIN_PITCH + 1  # 90
STEPS_PER_QUARTER = 4
DEFAULT_QPM = 120.0


class MelodyError(ValueError):
    """The input is not a usable melody (unreadable MIDI, no pitched notes, bad tokens).

    The platform maps this one class to an HTTP 400.
    """


def pitch_to_token(pitch: int) -> int:
    return FIRST_NOTE + int(pitch) - MIN_PITCH


def token_to_pitch(token: int) -> int:
    return int(token) - FIRST_NOTE + MIN_PITCH


def steps_per_bar(numerator: int, denominator: int) -> int:
    """Sixteenths in one bar: 2/4 -> 8, 3/4 -> 12, 4/4 -> 16, 6/8 -> 12."""
    return max(1, round(numerator * 16 / denominator))


@dataclass
class Melody:
    """A quantized melody: tokens plus the pitch sounding at each step (-1 = silence) and barlines.

    `active` lets a window that starts in the middle of a held note begin with that note's note-on.
    """

    tokens: np.ndarray  # int8 [T]
    active: np.ndarray  # int8 [T], sounding pitch or -1
    downbeats: np.ndarray  # int32, step indices of barlines in the tune's own meter(s)
    meter: tuple[int, int]  # first time signature (numerator, denominator)


def _octave_into_range(pitch: int) -> int:
    while pitch < MIN_PITCH:
        pitch += 12
    while pitch > MAX_PITCH:
        pitch -= 12
    return pitch


def load_midi(source: str | bytes | io.BytesIO | pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """Read MIDI from a path, bytes or file object; any failure becomes MelodyError."""
    if isinstance(source, pretty_midi.PrettyMIDI):
        return source
    try:
        if isinstance(source, (bytes, bytearray)):
            return pretty_midi.PrettyMIDI(io.BytesIO(bytes(source)))
        return pretty_midi.PrettyMIDI(source)
    except Exception as exc:  # pretty_midi/mido raise many kinds (OSError, EOFError, KeyError...)
        raise MelodyError(f"not a readable MIDI file: {exc}") from exc


def extract_melody(source: str | bytes | io.BytesIO | pretty_midi.PrettyMIDI) -> Melody:
    """Quantize every non-drum note to 16ths and keep the highest sounding voice (skyline)."""
    pm = load_midi(source)
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        raise MelodyError("the MIDI file has no pitched (non-drum) notes")
    ticks_per_step = pm.resolution / STEPS_PER_QUARTER

    def to_step(t: float) -> int:
        return int(round(pm.time_to_tick(t) / ticks_per_step))

    spans = []
    for n in notes:
        s = to_step(n.start)
        e = max(s + 1, to_step(n.end))  # every note keeps at least one step
        spans.append((s, e, _octave_into_range(n.pitch)))
    total = max(e for _, e, _ in spans)
    if total > 200_000:
        raise MelodyError("the MIDI file is too long to be a melody (over 200,000 sixteenths)")

    # Skyline: at each step the highest sounding note wins; ties go to the latest onset.
    best_pitch = np.full(total, -1, dtype=np.int16)
    best_start = np.full(total, -1, dtype=np.int64)
    for s, e, p in sorted(spans, key=lambda x: (x[2], x[0])):
        seg_p = best_pitch[s:e]
        seg_s = best_start[s:e]
        win = (p > seg_p) | ((p == seg_p) & (s >= seg_s))
        seg_p[win] = p
        seg_s[win] = s
    tokens = np.zeros(total + 1, dtype=np.int8)  # +1: room for the final note-off
    for t in range(total):
        p = best_pitch[t]
        if p >= 0:
            if t == 0 or best_start[t] != best_start[t - 1] or best_pitch[t - 1] != p or best_start[t] == t:
                tokens[t] = pitch_to_token(p)
        elif t > 0 and best_pitch[t - 1] >= 0:
            tokens[t] = OFF
    tokens[total] = OFF
    active = np.concatenate([best_pitch, [-1]]).astype(np.int8)

    ts = pm.time_signature_changes
    meter = (ts[0].numerator, ts[0].denominator) if ts else (4, 4)
    downbeats = _downbeat_steps(pm, total + 1)
    return Melody(tokens=tokens, active=active, downbeats=downbeats, meter=meter)


def _downbeat_steps(pm: pretty_midi.PrettyMIDI, total: int) -> np.ndarray:
    """Barlines in steps, following every time-signature change; no signature means 4/4."""
    ticks_per_step = pm.resolution / STEPS_PER_QUARTER
    changes = sorted(pm.time_signature_changes, key=lambda x: x.time)
    segs: list[tuple[int, int]] = []  # (start step, bar length)
    if not changes or pm.time_to_tick(changes[0].time) > 0:
        segs.append((0, 16))
    for c in changes:
        segs.append((int(round(pm.time_to_tick(c.time) / ticks_per_step)), steps_per_bar(c.numerator, c.denominator)))
    out: list[int] = []
    for i, (start, length) in enumerate(segs):
        end = segs[i + 1][0] if i + 1 < len(segs) else total
        out.extend(range(start, end, length))
    return np.asarray(sorted({s for s in out if s < total}), dtype=np.int32)


def window(melody: Melody, start: int, length: int) -> np.ndarray:
    """Tokens [start, start+length), padded with silence; a note already sounding is re-attacked."""
    seg = melody.tokens[start : start + length].astype(np.int64)
    if len(seg) < length:
        seg = np.concatenate([seg, np.zeros(length - len(seg), dtype=np.int64)])
    if seg[0] == HOLD and start < len(melody.active) and melody.active[start] >= 0:
        seg[0] = pitch_to_token(int(melody.active[start]))
    return seg


def canonicalize(tokens: np.ndarray | list[int]) -> np.ndarray:
    """The one spelling MIDI can round-trip: an OFF while already silent is the same as HOLD."""
    out = np.asarray(tokens, dtype=np.int64).copy()
    sounding = False
    for i, tok in enumerate(out):
        if tok >= FIRST_NOTE:
            sounding = True
        elif tok == OFF:
            if not sounding:
                out[i] = HOLD
            sounding = False
    return out


def validate_tokens(tokens: np.ndarray | list[int]) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1 or arr.size == 0:
        raise MelodyError("tokens must be a non-empty 1-D sequence")
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= VOCAB_SIZE:
        raise MelodyError(f"tokens must be integers in [0, {VOCAB_SIZE})")
    return arr.astype(np.int64)


def tokens_to_midi(
    tokens: np.ndarray | list[int],
    qpm: float = DEFAULT_QPM,
    meter: tuple[int, int] = (4, 4),
    program: int = 0,
    velocity: int = 90,
) -> pretty_midi.PrettyMIDI:
    """Tokens -> a one-instrument PrettyMIDI; trailing silence is kept as the file's end."""
    arr = validate_tokens(tokens)
    pm = pretty_midi.PrettyMIDI(initial_tempo=qpm, resolution=480)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(meter[0], meter[1], 0.0))
    inst = pretty_midi.Instrument(program=program, name="melody")
    step = 60.0 / qpm / STEPS_PER_QUARTER
    cur_pitch, cur_start = -1, 0
    for i, tok in enumerate(arr.tolist()):
        if tok == HOLD:
            continue
        if cur_pitch >= 0:
            inst.notes.append(pretty_midi.Note(velocity, cur_pitch, cur_start * step, i * step))
            cur_pitch = -1
        if tok >= FIRST_NOTE:
            cur_pitch, cur_start = token_to_pitch(tok), i
    if cur_pitch >= 0:
        inst.notes.append(pretty_midi.Note(velocity, cur_pitch, cur_start * step, len(arr) * step))
    pm.instruments.append(inst)
    return pm


def tokens_to_midi_bytes(tokens: np.ndarray | list[int], **kwargs) -> bytes:
    """What the platform stores as a generated track's file."""
    buf = io.BytesIO()
    tokens_to_midi(tokens, **kwargs).write(buf)
    return buf.getvalue()


def midi_to_tokens(source, length: int | None = None) -> np.ndarray:
    """Whole melody as tokens (from step 0); `length` pads with HOLD or truncates."""
    mel = extract_melody(source)
    toks = mel.tokens.astype(np.int64)
    # A file's own trailing note-off is part of the note, not an extra step, when the melody
    # was written by tokens_to_midi and ended on a sounding note exactly at the end.
    if length is None:
        return toks
    return window(mel, 0, length)
