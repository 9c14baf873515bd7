"""Structure statistics of whole tunes (token sequences on the 16th grid), generated or real.

Every function takes the tune's tokens and its chunk length in steps (chunks.chunk_steps of its
meter) and, where bars matter, its bar length in steps.

  repeat_share            share of chunks 2..n equal to an earlier chunk of the same tune
  repeat_share_transposed the same, up to transposition (pitches relative to the chunk's first note)
  self_similarity         for lags of 1, 2, 4 and 8 chunks: how alike each chunk is to the chunk that
                          many back (the share of its steps with the same token), the diagonals of
                          the tune's chunk self-similarity matrix; real folk tunes answer 2 and 4
                          chunks back (a phrase, a half) far more than 1
  phrase_end_long         share of 4-bar (8-bar) boundaries whose last note before the boundary
                          lasts at least a quarter note or is followed by a rest
  degenerate              one note held >= 2 bars, or > 4 bars of silence after the first note, or a
                          span over 3 octaves (36 semitones)
  ends_on_tonic           the last note is the tonic of the tune's key (`key_degrees`: the major
                          scale holding the most sounding time) or of its relative minor
"""

from __future__ import annotations

import numpy as np

from .attributes import notes_of
from .dedup import normalized
from .metrics import DIATONIC, scale_consistency
from .representation import FIRST_NOTE


def chunk_spans(tokens: np.ndarray, steps: int) -> list[np.ndarray]:
    t = np.asarray(tokens)
    return [t[s : s + steps] for s in range(0, len(t) - steps + 1, steps)]


def repeat_share(tokens: np.ndarray, steps: int, transposed: bool = False) -> float:
    spans = chunk_spans(tokens, steps)
    if len(spans) < 2:
        return 0.0
    key = normalized if transposed else (lambda s: np.asarray(s, dtype=np.int16).tobytes())
    seen, hits = set(), 0
    for k, s in enumerate(spans):
        h = key(s)
        if k and h in seen:
            hits += 1
        seen.add(h)
    return hits / (len(spans) - 1)


SIMILARITY_LAGS = (1, 2, 4, 8)


def self_similarity(tokens: np.ndarray, steps: int, lags: tuple[int, ...] = SIMILARITY_LAGS) -> dict[int, float]:
    """{lag: mean over chunks i >= lag of the share of steps where chunk i and chunk i - lag hold the
    same token}, for the lags the tune is long enough for."""
    spans = chunk_spans(tokens, steps)
    return {
        lag: float(np.mean([np.mean(spans[i] == spans[i - lag]) for i in range(lag, len(spans))]))
        for lag in lags
        if len(spans) > lag
    }


def phrase_end_long(tokens: np.ndarray, bar: int, every_bars: int = 4, long_steps: int = 4) -> float | None:
    """Share of boundaries every `every_bars` bars (the tune's end included) that end on a long note."""
    notes = notes_of(tokens)
    period = every_bars * bar
    bounds = list(range(period, len(tokens) + 1, period))
    if not bounds or not notes:
        return None
    onsets = np.array([n[0] for n in notes])
    ends = np.array([n[0] + n[1] for n in notes])
    hits = 0
    for b in bounds:
        k = np.searchsorted(onsets, b, side="left") - 1  # last onset before the boundary
        if k < 0:
            continue
        dur = min(ends[k], b) - onsets[k]
        rest_after = ends[k] < b
        hits += int(dur >= long_steps or rest_after)
    return hits / len(bounds)


def longest_note(tokens: np.ndarray) -> int:
    return max((d for _, d, _ in notes_of(tokens)), default=0)


def longest_silence(tokens: np.ndarray) -> int:
    """Longest run of silent steps after the first note (the tune's own trailing silence included)."""
    notes = notes_of(tokens)
    if not notes:
        return len(tokens)
    sounding = np.zeros(len(tokens), dtype=bool)
    for s, d, _ in notes:
        sounding[s : s + d] = True
    best = run = 0
    for v in sounding[notes[0][0] :]:
        run = 0 if v else run + 1
        best = max(best, run)
    return best


def key_degrees(pitches: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Each note's degree (semitones above the tonic, 0..11) in the major key whose scale holds the
    most sounding time (a minor tune: its relative major)."""
    weight = np.bincount(pitches % 12, weights=durations, minlength=12)
    root = int(np.argmax([weight[(np.array(DIATONIC) + r) % 12].sum() for r in range(12)]))
    return (pitches - root) % 12


def ends_on_tonic(tokens: np.ndarray) -> bool:
    notes = notes_of(tokens)
    if not notes:
        return False
    _, du, pi = (np.array(x) for x in zip(*notes))
    return int(key_degrees(pi, du)[-1]) in (0, 9)


def pitch_span(tokens: np.ndarray) -> int:
    t = np.asarray(tokens)
    p = t[t >= FIRST_NOTE]
    return int(p.max() - p.min()) if len(p) else 0


def degenerate(tokens: np.ndarray, bar: int) -> dict[str, bool]:
    flags = {
        "held_2_bars": longest_note(tokens) >= 2 * bar,
        "silence_4_bars": longest_silence(tokens) > 4 * bar,
        "span_over_3_octaves": pitch_span(tokens) > 36,
    }
    flags["any"] = any(flags.values())
    return flags


def structure_stats(tunes: list[np.ndarray], steps: list[int], bars: list[int]) -> dict[str, float | None]:
    """Means over a set of tunes (each with its chunk and bar lengths)."""
    deg = [degenerate(t, b) for t, b in zip(tunes, bars)]
    p4 = [phrase_end_long(t, b, 4) for t, b in zip(tunes, bars)]
    p8 = [phrase_end_long(t, b, 8) for t, b in zip(tunes, bars)]
    sims = [self_similarity(t, s) for t, s in zip(tunes, steps)]
    lag_means = {
        f"self_similarity_lag{lag}": float(np.mean(v)) if (v := [x[lag] for x in sims if lag in x]) else None
        for lag in SIMILARITY_LAGS
    }
    return {
        "n": len(tunes),
        "repeat_share": float(np.mean([repeat_share(t, s) for t, s in zip(tunes, steps)])),
        "repeat_share_transposed": float(np.mean([repeat_share(t, s, True) for t, s in zip(tunes, steps)])),
        "phrase_end_long_4bar": float(np.mean([v for v in p4 if v is not None] or [0.0])),
        "phrase_end_long_8bar": float(np.mean([v for v in p8 if v is not None] or [0.0])),
        "in_scale": float(np.mean([scale_consistency(t) for t in tunes])),
        "degenerate": float(np.mean([d["any"] for d in deg])),
        "held_2_bars": float(np.mean([d["held_2_bars"] for d in deg])),
        "silence_4_bars": float(np.mean([d["silence_4_bars"] for d in deg])),
        "span_over_3_octaves": float(np.mean([d["span_over_3_octaves"] for d in deg])),
        "notes_per_tune": float(np.mean([len(notes_of(t)) for t in tunes])),
        "ends_on_tonic": float(np.mean([ends_on_tonic(t) for t in tunes])),
        **lag_means,
    }
