"""A whole tune <-> a sequence of bar-aligned chunks that the 2-bar VAE encodes one by one.

The 2-bar model reads windows of 32 sixteenths. A chunk is the largest power-of-two number of
whole bars that fits in those 32 steps (phrases in this corpus come in 2, 4 and 8 bars):

    meter   bar (16ths)   bars per chunk   chunk steps   padding to 32
    2/4          8              4               32             0
    4/4, 2/2    16              2               32             0
    3/4, 6/8    12              2               24             8
    3/8          6              4               24             8
    9/8, 12/8   18, 24          1            18, 24        14, 8

So 4/4 and 2/4 fill the window exactly and a 3/4 or 6/8 chunk is its two bars followed by 8 steps
of silence: every chunk starts on a barline and the prior only ever sees whole bars. A bar longer
than 32 steps (rare: 5/2, 9/4) is cut into 32-step chunks that are not bar-aligned.
Chunks start at the tune's first step (its first downbeat); the first time signature decides.

Boundaries. Cut out of its tune, a chunk starts with a note-on even where the previous chunk's last
note is held into it (`representation.window` re-attacks it), so each chunk carries a `tie` flag:
"my first note continues the previous chunk's sounding note". Joining decoded chunks:
  - tie, and the chunk starts with a note-on of the pitch still sounding: that note is held (HOLD),
    not re-struck;
  - the chunk starts silent (HOLD or OFF) while the previous chunk's note still sounds: OFF, so the
    silence the chunk was decoded with is kept;
and the result is canonical (`representation.canonicalize`). A tune -> chunks -> tune round trip
without any model is therefore exact (tests/generation/vae/test_chunks.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.keys import key_correlations

from .representation import FIRST_NOTE, HOLD, MAX_PITCH, MIN_PITCH, OFF, Melody, canonicalize, steps_per_bar

WINDOW = 32  # steps the 2-bar model reads


def chunk_steps(meter: tuple[int, int]) -> int:
    """Steps of one chunk in this meter (see the table in the module docstring)."""
    bar = steps_per_bar(*meter)
    if bar > WINDOW:
        return WINDOW
    bars = 1
    while 2 * bars * bar <= WINDOW:
        bars *= 2
    return bars * bar


def bars_per_chunk(meter: tuple[int, int]) -> float:
    return chunk_steps(meter) / steps_per_bar(*meter)


@dataclass
class TuneChunks:
    """A tune cut into chunks: model inputs [n, 32], tie flags [n], the meter and its chunk length."""

    windows: np.ndarray  # int64 [n, WINDOW]
    ties: np.ndarray  # bool [n]; ties[0] is always False
    meter: tuple[int, int]
    steps: int  # chunk length in steps (<= WINDOW)


def _pad_chunk(seg: np.ndarray) -> np.ndarray:
    """A chunk shorter than the window is followed by silence: an OFF if a note still sounds."""
    if len(seg) >= WINDOW:
        return seg[:WINDOW]
    out = np.zeros(WINDOW, dtype=np.int64)
    out[: len(seg)] = seg
    if _sounding_at_end(seg) >= 0:
        out[len(seg)] = OFF
    return out


def _sounding_at_end(tokens: np.ndarray) -> int:
    """MIDI pitch sounding after the last step of `tokens`, or -1."""
    for tok in tokens[::-1].tolist():
        if tok == OFF:
            return -1
        if tok >= FIRST_NOTE:
            return tok - FIRST_NOTE + MIN_PITCH
    return -1


def melody_chunks(mel: Melody, max_chunks: int | None = None) -> TuneChunks:
    """Cut a melody into chunks (trailing silent chunks dropped; at least one chunk)."""
    steps = chunk_steps(mel.meter)
    toks = mel.tokens.astype(np.int64)
    n_steps = len(toks)
    # up to the last sounding step: the tune's final note-off belongs to its last note, not to a new chunk
    sounding = np.flatnonzero(np.asarray(mel.active) >= 0)
    last_sound = int(sounding.max()) if len(sounding) else 0
    n = max(1, last_sound // steps + 1)
    if max_chunks is not None:
        n = min(n, max_chunks)
    windows = np.zeros((n, WINDOW), dtype=np.int64)
    ties = np.zeros(n, dtype=bool)
    for k in range(n):
        s = k * steps
        seg = toks[s : s + steps].copy()
        if len(seg) < steps:
            seg = np.concatenate([seg, np.zeros(steps - len(seg), dtype=np.int64)])
        held = s < n_steps and seg[0] == HOLD and mel.active[s] >= 0
        if held:
            seg[0] = FIRST_NOTE + int(mel.active[s]) - MIN_PITCH
            ties[k] = k > 0
        windows[k] = _pad_chunk(seg)
    return TuneChunks(windows=windows, ties=ties, meter=tuple(mel.meter), steps=steps)


def join_chunks(chunks: np.ndarray, ties: np.ndarray | None, steps: int) -> np.ndarray:
    """Decoded chunk windows [n, >= steps] -> the whole tune's tokens [n * steps], canonical."""
    chunks = np.asarray(chunks, dtype=np.int64)
    n = len(chunks)
    ties = np.zeros(n, dtype=bool) if ties is None else np.asarray(ties, dtype=bool)
    out = chunks[:, :steps].copy()
    for k in range(1, n):
        sounding = _sounding_at_end(out[k - 1])
        first = int(out[k, 0])
        if sounding < 0:
            continue
        if first >= FIRST_NOTE:
            if ties[k] and first - FIRST_NOTE + MIN_PITCH == sounding:
                out[k, 0] = HOLD
        else:
            out[k, 0] = OFF
    return canonicalize(out.reshape(-1))


def melody_tokens(mel: Melody, n_chunks: int) -> np.ndarray:
    """The tune's own tokens over its first `n_chunks` chunks, canonical (the round-trip target)."""
    steps = chunk_steps(mel.meter)
    total = n_chunks * steps
    toks = mel.tokens[:total].astype(np.int64)
    if len(toks) < total:
        toks = np.concatenate([toks, np.zeros(total - len(toks), dtype=np.int64)])
    return canonicalize(toks)


def transpose_melody(mel: Melody, shift: int) -> Melody | None:
    """The melody `shift` semitones up (down if negative); None if it would leave the piano range."""
    if shift == 0:
        return mel
    notes = mel.tokens >= FIRST_NOTE
    if notes.any():
        lo = int(mel.tokens[notes].min()) - FIRST_NOTE + MIN_PITCH
        hi = int(mel.tokens[notes].max()) - FIRST_NOTE + MIN_PITCH
        if lo + shift < MIN_PITCH or hi + shift > MAX_PITCH:
            return None
    toks = mel.tokens.astype(np.int64)
    toks = np.where(toks >= FIRST_NOTE, toks + shift, toks)
    active = mel.active.astype(np.int64)
    active = np.where(active >= 0, active + shift, active)
    return Melody(tokens=toks.astype(np.int8), active=active.astype(np.int8), downbeats=mel.downbeats, meter=mel.meter)


def tonic_shift(mel: Melody) -> int:
    """Semitones that move the tune's relative-major tonic to C (in -6..5), by Krumhansl-Kessler key
    profiles over duration-weighted pitch classes; an octave is added or removed where the shifted
    tune would leave the piano range. 0 for a tune without notes."""
    from .attributes import notes_of

    notes = notes_of(mel.tokens)
    if not notes:
        return 0
    hist = np.zeros(12)
    for _, d, p in notes:
        hist[p % 12] += d
    major, minor = key_correlations(hist)  # the one Krumhansl-Kessler key finder (theory.keys)
    tonic = int(major.argmax()) if major.max() >= minor.max() else (int(minor.argmax()) + 3) % 12
    shift = -tonic if tonic <= 6 else 12 - tonic  # -6..5
    for s in (shift, shift + 12, shift - 12):
        if transpose_melody(mel, s) is not None:
            return s
    return 0


def tune_register(windows: np.ndarray) -> int:
    """A tune's register: the mean pitch of the notes of its chunk windows [n, steps], rounded (60 for
    a tune without notes). Per window, so a note tied across a boundary counts in both chunks."""
    from .attributes import notes_of

    pitches = [p for w in windows for _, _, p in notes_of(np.asarray(w, dtype=np.int64))]
    return round(float(np.mean(pitches))) if pitches else 60
